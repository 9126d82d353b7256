"""Sentence splitting with the layout kept (`inference.sentences`), through the library
(`Translator.translate(..., split_sentences=True)`) and the command line (`translate
--split-sentences`), and the paragraph check of issue 24 on test2016."""

from __future__ import annotations

import lzma
from pathlib import Path

import pytest

from transformer_mt import Translator
from transformer_mt.commands import main as cli
from transformer_mt.inference.sentences import split_sentences, whole

LAYOUTS = [
    "  Hello there.  How are you?\r\n\r\n\tFine, thanks!  \nNo final punctuation\n",
    "Dr. Smith went to Washington. He arrived at 3.30 p.m. on Monday.",
    "One line only",
    "",
    " \n\n ",
    "First paragraph. Second sentence.\n\nSecond paragraph!\n",
]


@pytest.mark.parametrize("text", LAYOUTS)
def test_the_gaps_and_sentences_rebuild_the_text_exactly(text: str) -> None:
    part = split_sentences(text, "en")
    assert part.join(part.sentences) == text
    assert all(s == s.strip() and s and "\n" not in s and "\r" not in s for s in part.sentences)
    assert len(part.gaps) == len(part.sentences) + 1
    assert whole(text).join(whole(text).sentences) == text


def test_sentences_and_line_breaks_are_where_a_reader_sees_them() -> None:
    part = split_sentences(LAYOUTS[0], "en")
    assert part.sentences == ["Hello there.", "How are you?", "Fine, thanks!",
                              "No final punctuation"]
    assert part.gaps == ["  ", "  ", "\r\n\r\n\t", "  \n", "\n"]
    assert split_sentences(LAYOUTS[1], "en").sentences == [
        "Dr. Smith went to Washington.", "He arrived at 3.30 p.m. on Monday."]
    assert part.join(["A", "B", "C", "D"]) == "  A  B\r\n\r\n\tC  \nD\n"
    with pytest.raises(ValueError, match="3 translations for 4 sentences"):
        part.join(["A", "B", "C"])


@pytest.fixture(scope="module")
def translator(tiny_checkpoint: Path) -> Translator:
    return Translator.from_checkpoint(tiny_checkpoint, device="cpu")


def test_translator_translates_each_sentence_in_place(translator: Translator) -> None:
    text = "the cat sleeps.  a dog runs!\n\n\tthe big house"
    alone = translator.translate(["the cat sleeps.", "a dog runs!", "the big house"])
    assert translator.translate(text, split_sentences=True) == (
        f"{alone[0]}  {alone[1]}\n\n\t{alone[2]}")
    nbest = translator.translate(text, split_sentences=True, nbest=2)
    per_sentence = translator.translate(["the cat sleeps.", "a dog runs!", "the big house"],
                                        nbest=2)
    assert nbest[0].text == f"{alone[0]}  {alone[1]}\n\n\t{alone[2]}"
    assert nbest[0].score == pytest.approx(sum(h[0].score for h in per_sentence))
    assert nbest[1].text == "  ".join(h[1].text for h in per_sentence[:2]) + (
        f"\n\n\t{per_sentence[2][1].text}")
    assert translator.translate(["", "  "], split_sentences=True) == ["", "  "]


def test_translate_split_sentences_keeps_one_line_per_line(
        tiny_checkpoint: Path, tmp_path: Path, translator: Translator) -> None:
    source = tmp_path / "in.txt"
    source.write_text("the cat sleeps. a dog runs.\n\nthe big house\n", encoding="utf-8")
    out = tmp_path / "out.txt"
    assert cli.main(["translate", "--checkpoint", str(tiny_checkpoint), "--input",
                     str(source), "--output", str(out), "--device", "cpu", "--quiet",
                     "--split-sentences"]) == 0
    alone = translator.translate(["the cat sleeps.", "a dog runs.", "the big house"])
    assert out.read_text(encoding="utf-8").split("\n") == [
        f"{alone[0]} {alone[1]}", "", alone[2], ""]
    plain = tmp_path / "plain.txt"
    assert cli.main(["translate", "--checkpoint", str(tiny_checkpoint), "--input",
                     str(source), "--output", str(plain), "--device", "cpu", "--quiet"]) == 0
    assert plain.read_text(encoding="utf-8").splitlines()[0] == translator.translate(
        "the cat sleeps. a dog runs.")  # by default a line is one input


def test_test2016_paragraphs_translate_as_their_sentences(
        shared_data: Path, translator: Translator) -> None:
    """Issue 24's check: 300 test2016 sentences joined 3 to a paragraph. The segmenter must
    split >= 97 % of the paragraphs whose sentences end in . ! or ? (a sentence without final
    punctuation cannot be told from the next one by anyone), and every paragraph it splits
    correctly must translate exactly as its sentences do alone, joined the same way. Short
    searches keep the random model's 300 translations cheap."""
    with lzma.open(shared_data / "multi30k" / "test2016.en.xz", "rt", encoding="utf-8") as f:
        pool = [line.strip() for line in f]
    sentences = pool[:300]
    paragraphs = [sentences[i:i + 3] for i in range(0, 300, 3)]
    split = [split_sentences(" ".join(p), "en").sentences == p for p in paragraphs]
    punctuated = [all(s[-1] in ".!?" for s in p[:2]) for p in paragraphs]
    splittable = sum(ok for ok, p in zip(split, punctuated, strict=True) if p)
    assert splittable >= 0.97 * sum(punctuated), (splittable, sum(punctuated))
    options = {"beam_size": 2, "max_len_b": 4}
    alone = translator.translate(sentences, **options)
    together = translator.translate([" ".join(p) for p in paragraphs], split_sentences=True,
                                    **options)
    for i, ok in enumerate(split):
        if ok:
            assert together[i] == " ".join(alone[3 * i:3 * i + 3])
