"""Corpus readers on real files: Multi30k, compressed text, TSV, JSONL, Hugging Face datasets."""

from __future__ import annotations

import gzip
import json
import lzma
from pathlib import Path

import pytest

from transformer_mt.data.corpus import read_corpus
from transformer_mt.errors import UserError


def test_reads_real_multi30k(shared_data: Path) -> None:
    text = read_corpus("multi30k/train.{lang}.xz", "en", "de", shared_data)
    assert len(text) == 29000
    assert text.src[0].startswith("Two young, White males")
    assert text.tgt[0].startswith("Zwei junge weiße Männer")
    valid = read_corpus("multi30k/val.{lang}.xz", "en", "de", shared_data)
    assert len(valid) == 1014 and all(valid.src) and all(valid.tgt)


def test_text_pair_gz_and_mismatch(tmp_path: Path) -> None:
    with gzip.open(tmp_path / "c.en.gz", "wt", encoding="utf-8") as f:
        f.write("a house\r\nthe tree\n")
    with gzip.open(tmp_path / "c.de.gz", "wt", encoding="utf-8") as f:
        f.write("ein Haus\nder Baum\n")
    text = read_corpus("c.{lang}.gz", "en", "de", tmp_path)
    assert (text.src, text.tgt) == (["a house", "the tree"], ["ein Haus", "der Baum"])
    (tmp_path / "d.en").write_text("one\ntwo\nthree\n")
    (tmp_path / "d.de").write_text("eins\nzwei\n")
    with pytest.raises(UserError, match="d.en has 3 lines, .*d.de has 2"):
        read_corpus("d.{lang}", "en", "de", tmp_path)


def test_tsv_and_jsonl(tmp_path: Path) -> None:
    with lzma.open(tmp_path / "p.tsv.xz", "wt", encoding="utf-8") as f:
        f.write("good day\tguten Tag\nthanks\tdanke\n")
    assert read_corpus("p.tsv.xz", "en", "de", tmp_path).tgt == ["guten Tag", "danke"]
    (tmp_path / "bad.tsv").write_text("only one field\n")
    with pytest.raises(UserError, match="line 1: expected 2 tab-separated fields"):
        read_corpus("bad.tsv", "en", "de", tmp_path)
    rows = [{"translation": {"de": "Hallo", "en": "Hello"}}, {"de": "Welt", "en": "world"}]
    (tmp_path / "p.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    text = read_corpus("p.jsonl", "en", "de", tmp_path)
    assert (text.src, text.tgt) == (["Hello", "world"], ["Hallo", "Welt"])
    (tmp_path / "q.jsonl").write_text('{"translation": {"fr": "Bonjour"}}\n')
    with pytest.raises(UserError, match="line 1: expected a 'translation' object"):
        read_corpus("q.jsonl", "en", "de", tmp_path)


def test_hugging_face_datasets_from_local_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The `hf:` path runs datasets.load_dataset for real, on a local folder (no hub here)."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    folder = tmp_path / "my_wmt"
    folder.mkdir()
    for split, n in (("train", 5), ("validation", 2)):
        with open(folder / f"{split}.jsonl", "w", encoding="utf-8") as f:
            for i in range(n):
                f.write(json.dumps({"translation": {"de": f"Satz {i}", "en": f"sentence {i}"}})
                        + "\n")
    text = read_corpus(f"hf:{folder}:train", "en", "de", tmp_path)
    assert text.src == [f"sentence {i}" for i in range(5)]
    assert text.tgt == [f"Satz {i}" for i in range(5)]
    assert len(read_corpus(f"hf:{folder}:validation", "en", "de", tmp_path)) == 2
    with pytest.raises(UserError, match="could not load with datasets.load_dataset"):
        # the WMT configs' dataset, with no hub and not in any cache (`datasets` reads HF_HOME
        # once per process, so a local folder named wmt14 loaded by another test would be found
        # under the name "wmt14")
        read_corpus("hf:wmt/wmt14:de-en:train", "en", "de", tmp_path)
    with pytest.raises(UserError, match="expected hf:NAME:CONFIG:SPLIT"):
        read_corpus("hf:wmt14", "en", "de", tmp_path)


def test_unknown_form_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unknown corpus form"):
        read_corpus("corpus.txt", "en", "de", tmp_path)
    with pytest.raises(UserError, match="no such file"):
        read_corpus("missing.{lang}", "en", "de", tmp_path)
