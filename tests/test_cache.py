"""The prepare step: memory-mapped token arrays equal to plain encoding, a cache that is reused
and rebuilt when it should be, one build among racing processes, damaged caches rebuilt,
one-line errors for unwritable caches, `hf:` corpora, and the `prepare` command."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO
from transformer_mt.commands.main import main
from transformer_mt.data import cache as prepare
from transformer_mt.data.batching import EncodedPairs
from transformer_mt.data.cache import VocabOptions, prepare_split, prepare_vocabulary
from transformer_mt.data.corpus import ParallelText, read_corpus
from transformer_mt.data.tokenizer import Tokenizer
from transformer_mt.errors import UserError

SPEC = "train.{lang}"
OPTIONS = VocabOptions(vocab_size=500, model_type="bpe")


@pytest.fixture(scope="module")
def multi30k(shared_data: Path) -> ParallelText:
    return read_corpus("multi30k/train.{lang}.xz", "en", "de", shared_data)


def write_corpus(text: ParallelText, folder: Path, pairs: int = 300, offset: int = 0) -> None:
    """A small English-German corpus (the first Multi30k training pairs) as plain text."""
    folder.mkdir(parents=True, exist_ok=True)
    for lang, side in (("en", text.src), ("de", text.tgt)):
        lines = side[offset : offset + pairs]
        (folder / f"train.{lang}").write_text("".join(f"{line}\n" for line in lines))


def build(folder: Path, cache: Path, max_len: int | None = 64,
          options: VocabOptions = OPTIONS) -> tuple[Tokenizer, EncodedPairs]:
    tokenizer = prepare_vocabulary([SPEC], "en", "de", folder, cache, options)
    return tokenizer, prepare_split("train", [SPEC], "en", "de", folder, cache, tokenizer,
                                    max_len)


def cache_folders(cache: Path) -> list[str]:
    return sorted(p.name.split("-")[0] for p in cache.iterdir() if p.is_dir())


def test_mapped_arrays_hold_exactly_the_plain_encoding(multi30k: ParallelText,
                                                       tmp_path: Path) -> None:
    write_corpus(multi30k, tmp_path)
    tokenizer, dataset = build(tmp_path, tmp_path / "cache", max_len=None)
    text = read_corpus(SPEC, "en", "de", tmp_path)
    assert len(dataset) == len(text) == 300
    # a plain ndarray view of a memory map (`batching._map`): the ids stay on disk
    assert isinstance(dataset._arrays["src_tokens"].base, np.memmap)
    assert dataset._arrays["src_tokens"].dtype == np.uint16  # a 500-piece vocabulary fits
    src, tgt = tokenizer.encode(text.src), tokenizer.encode(text.tgt)
    for i in range(len(dataset)):
        index, s, t = dataset[i]
        assert (index, s.tolist(), t.tolist()) == (i, src[i], tgt[i])
    np.testing.assert_array_equal(dataset.src_lengths, [len(ids) + 1 for ids in src])


def test_max_len_drops_and_counts_pairs(multi30k: ParallelText, tmp_path: Path) -> None:
    write_corpus(multi30k, tmp_path)
    tokenizer, full = build(tmp_path, tmp_path / "cache", max_len=None)
    limit = int(np.median(full.src_lengths))
    _, dataset = build(tmp_path, tmp_path / "cache", max_len=limit)
    kept = [i for i in range(len(full)) if 0 < len(full[i][1]) <= limit
            and 0 < len(full[i][2]) <= limit]
    assert 0 < len(dataset) == len(kept) < len(full)
    assert [dataset[j][1].tolist() for j in range(len(dataset))] \
        == [full[i][1].tolist() for i in kept]
    manifest = prepare.read_manifest(dataset.folder)
    assert (manifest["pairs"], manifest["pairs_dropped"]) == (len(kept), len(full) - len(kept))
    assert manifest["max_len"] == limit and manifest["inputs"][0]["pairs"] == len(full)


def test_cache_is_reused_and_rebuilt_on_changes(multi30k: ParallelText, tmp_path: Path,
                                                capfd: pytest.CaptureFixture) -> None:
    cache = tmp_path / "cache"
    write_corpus(multi30k, tmp_path)
    _, first = build(tmp_path, cache)
    assert "tokenized" in capfd.readouterr().err
    _, again = build(tmp_path, cache)
    assert again.folder == first.folder
    assert "tokenized" not in capfd.readouterr().err  # reused: nothing re-tokenized
    _, longer = build(tmp_path, cache, max_len=32)  # another max_len: new arrays, same vocab
    assert longer.folder != first.folder
    assert cache_folders(cache) == ["split", "split", "vocab"]
    build(tmp_path, cache, options=VocabOptions(vocab_size=520, model_type="bpe"))
    assert cache_folders(cache).count("vocab") == 2
    write_corpus(multi30k, tmp_path, offset=1)  # the corpus changes: new vocabulary and arrays
    _, changed = build(tmp_path, cache)
    assert changed.folder not in (first.folder, longer.folder)
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no temporary folders


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_cache_is_detected_and_rebuilt(multi30k: ParallelText, tmp_path: Path,
                                               damage: str,
                                               capfd: pytest.CaptureFixture) -> None:
    write_corpus(multi30k, tmp_path)
    _, dataset = build(tmp_path, tmp_path / "cache")
    expected = [dataset[i][1].tolist() for i in range(len(dataset))]
    tokens = dataset.folder / "src.tokens"
    data = bytearray(tokens.read_bytes())
    del dataset
    capfd.readouterr()
    tokens.write_bytes(data[:-2] if damage == "truncate" else bytes([data[0] ^ 1]) + data[1:])
    _, rebuilt = build(tmp_path, tmp_path / "cache")
    err = capfd.readouterr().err
    assert "warning" in err and "src.tokens is " + ("truncated" if damage == "truncate"
                                                     else "corrupt") in err
    assert [rebuilt[i][1].tolist() for i in range(len(rebuilt))] == expected


def test_racing_processes_build_one_cache(multi30k: ParallelText, tmp_path: Path) -> None:
    write_corpus(multi30k, tmp_path, pairs=600)
    script = textwrap.dedent(f"""
        from pathlib import Path
        import hashlib
        from transformer_mt.data.cache import VocabOptions, prepare_split, prepare_vocabulary
        folder, cache = Path({str(tmp_path)!r}), Path({str(tmp_path / "cache")!r})
        options = VocabOptions(vocab_size=500, model_type="bpe")
        tok = prepare_vocabulary(["train.{{lang}}"], "en", "de", folder, cache, options)
        data = prepare_split("train", ["train.{{lang}}"], "en", "de", folder, cache, tok, 64)
        print(data.folder, hashlib.sha256(tok.model_proto).hexdigest())
    """)
    processes = [subprocess.Popen([sys.executable, "-c", script], cwd=REPO, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    assert len({out for out, _ in outputs}) == 1  # same folder, same vocabulary
    assert sum(err.count("training sentencepiece") for _, err in outputs) == 1
    assert sum(err.count("pairs tokenized") for _, err in outputs) == 1
    assert cache_folders(tmp_path / "cache") == ["split", "vocab"]


def test_a_process_that_finds_the_lock_held_says_it_waits(tmp_path: Path) -> None:
    """A forced race: this test holds a folder's build lock; a second process asked for the
    same folder reports that it waits, builds nothing while the lock is held, and, once it
    is released, builds the folder itself (the holder built none)."""
    import fcntl
    import time

    folder = tmp_path / "cache" / "split-x"
    folder.parent.mkdir()
    script = textwrap.dedent(f"""
        from pathlib import Path
        from transformer_mt.data.cache import build_once
        def build(tmp):
            (tmp / "data.bin").write_bytes(b"x")
            return {{"built_by": "second"}}
        print(build_once(Path({str(folder)!r}), build)["built_by"])
    """)
    with open(folder.parent / "split-x.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        second = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(3.0)  # time to start and reach the lock
        assert second.poll() is None and not folder.exists()  # it waits for the lock
        fcntl.flock(lock, fcntl.LOCK_UN)
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    assert "transformer-mt: waiting for another process preparing split-x" in err
    assert out.strip() == "second" and (folder / "data.bin").read_bytes() == b"x"


def test_unwritable_cache_and_full_disk_are_one_line_errors(multi30k: ParallelText,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    write_corpus(multi30k, tmp_path)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.raises(UserError, match="cannot write the data cache .*set data.cache_dir"):
        build(tmp_path, blocker / "cache")
    tokenizer = prepare_vocabulary([SPEC], "en", "de", tmp_path, tmp_path / "cache", OPTIONS)

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(prepare, "_encoded", disk_full)
    with pytest.raises(UserError, match="no space left on the device"):
        prepare_split("train", [SPEC], "en", "de", tmp_path, tmp_path / "cache", tokenizer, 64)
    assert cache_folders(tmp_path / "cache") == ["vocab"]  # nothing half-written left
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")]
    # through the command line: one line, status 2
    config = tmp_path / "c.yaml"
    config.write_text(f"data:\n  data_dir: {tmp_path}\n  train: ['{SPEC}']\n  valid: []\n"
                      f"  vocab_size: 500\n  cache_dir: {blocker / 'cache'}\n")
    capsys.readouterr()
    assert main(["prepare", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write the data cache" in err


def write_hub_like_wmt14(folder: Path, text_src: list[str], text_tgt: list[str]) -> None:
    """A local dataset folder laid out like the hub's parquet `wmt/wmt14`: a `de-en` config
    with a `translation` column of {"de": ..., "en": ...} rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (folder / "de-en").mkdir(parents=True)
    rows = [{"de": t, "en": s} for s, t in zip(text_src, text_tgt, strict=True)]
    half = len(rows) // 2
    for part, chunk in enumerate((rows[:half], rows[half:])):
        pq.write_table(pa.table({"translation": chunk}),
                       folder / "de-en" / f"train-{part:05d}-of-00002.parquet")
    (folder / "README.md").write_text(textwrap.dedent("""\
        ---
        configs:
        - config_name: de-en
          data_files:
          - split: train
            path: de-en/train-*
        ---
        """))


def test_hf_dataset_shaped_like_wmt14_goes_straight_to_arrays(multi30k: ParallelText,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setattr(prepare, "CHUNK_PAIRS", 100)  # several chunks: the worker pool runs
    write_corpus(multi30k, tmp_path, pairs=450)
    text = read_corpus(SPEC, "en", "de", tmp_path)
    write_hub_like_wmt14(tmp_path / "wmt14", text.src, text.tgt)
    spec = f"hf:{tmp_path / 'wmt14'}:de-en:train"
    cache = tmp_path / "cache"
    tokenizer = prepare_vocabulary([spec], "en", "de", tmp_path, cache, OPTIONS)
    dataset = prepare_split("train", [spec], "en", "de", tmp_path, cache, tokenizer, None)
    src, tgt = tokenizer.encode(text.src), tokenizer.encode(text.tgt)
    assert [dataset[i][1].tolist() for i in range(len(dataset))] == src
    assert [dataset[i][2].tolist() for i in range(len(dataset))] == tgt
    # the same pairs as local files give the same pieces (the protos differ in file paths)
    same = prepare_vocabulary([SPEC], "en", "de", tmp_path, tmp_path / "c2", OPTIONS)
    assert [same.sp.id_to_piece(i) for i in range(same.vocab_size)] \
        == [tokenizer.sp.id_to_piece(i) for i in range(tokenizer.vocab_size)]


def test_prepare_command_then_fit_maps_without_rebuilding(
        tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    from tests._tiny_fit import tiny_fit_args

    run = tmp_path / "run"
    args = tiny_fit_args(run, tmp_path / "cache", "--trainer.max_steps", "2")
    assert main(["prepare", *args[1:]]) == 0
    err = capfd.readouterr().err
    assert "training sentencepiece" in err and "prepared vocabulary" in err
    summary = err.strip().splitlines()[-1]
    assert "train " in summary and "valid " in summary and "test " in summary
    assert main(args) == 0
    err = capfd.readouterr().err
    assert "training sentencepiece" not in err and "tokenized" not in err
    manifest = json.loads(next((tmp_path / "cache").glob("vocab-*/manifest.json")).read_text())
    assert manifest["lines_sampled"] == manifest["lines_seen"] > 0
