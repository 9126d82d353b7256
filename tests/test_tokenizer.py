"""The joint sentencepiece vocabulary: special ids, round trips, byte fallback, caching."""

from __future__ import annotations

from pathlib import Path

import pytest

from transformer_mt.data.tokenizer import Tokenizer, train_tokenizer

TEXT = [
    "Die Straße ist groß, und die Bäume sind grün.",
    "Der Mann liest ein Buch über Füchse und Bären.",
    "The man reads a book about foxes and bears.",
    "The street is wide, and the trees are green.",
    "„Guten Morgen“, sagte sie. ‚Schön!‘",
    '"Good morning," she said. \'Lovely!\'',
] + [f"Satz {i}: {w} {v} {i * 7} Wörter, sentence {i} with {w} {v}." for i in range(300)
       for w, v in [("Häuser", "bauen"), ("houses", "build"), ("Flüsse", "fließen")]]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    return train_tokenizer(TEXT, vocab_size=400, cache_dir=tmp_path_factory.mktemp("spm"))


def test_special_ids(tokenizer: Tokenizer) -> None:
    sp = tokenizer.sp
    assert (sp.pad_id(), sp.unk_id(), sp.bos_id(), sp.eos_id()) == (0, 1, 2, 3)
    assert tokenizer.vocab_size == 400


@pytest.mark.parametrize("text", [
    "Grüße aus Köln: Das Mädchen aß süße Äpfel, Öl und Maß – ß!",
    "„Anführungszeichen“ and “curly quotes” and 'single' and «guillemets»",
    "Emoji 😀🇩🇪 and unseen letters: Ωμέγα, 漢字, עברית",
])
def test_round_trip(tokenizer: Tokenizer, text: str) -> None:
    ids = tokenizer.encode([text])
    assert 1 not in ids[0], "byte_fallback: no character may become <unk>"
    assert tokenizer.decode(ids) == [text]


def test_cache_by_content(tmp_path: Path) -> None:
    first = train_tokenizer(TEXT, vocab_size=350, cache_dir=tmp_path)
    models = list(tmp_path.glob("spm-*.model"))
    assert len(models) == 1
    second = train_tokenizer(TEXT, vocab_size=350, cache_dir=tmp_path)
    assert second.model_proto == first.model_proto
    assert list(tmp_path.glob("spm-*.model")) == models  # reused, not retrained
    train_tokenizer(TEXT + ["ein neuer Satz"], vocab_size=350, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("spm-*.model"))) == 2  # changed text -> new model
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".model", ".model"]  # no tmp*/


def test_decode_drops_special_ids(tokenizer: Tokenizer) -> None:
    ids = tokenizer.encode(["Die Straße"])[0]
    assert tokenizer.decode([[2, *ids, 3, 0, 0]]) == ["Die Straße"]
