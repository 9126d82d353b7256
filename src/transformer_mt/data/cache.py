"""The prepare step: vocabulary and token arrays built once per machine, then memory-mapped.

WMT14 en-de is 4.5M pairs. Reading it into Python lists in every training process (and again
in each of 8 ranks) takes minutes and most of a machine's memory, so, as fairseq-preprocess
does, the corpus is tokenized once into flat binary arrays that every later run maps:

    CACHE/vocab-<key>/   spm.model, manifest.json
    CACHE/split-<key>/   src.tokens, src.offsets, tgt.tokens, tgt.offsets, manifest.json

A vocabulary folder's key hashes the training corpora's fingerprints (paths, sizes,
modification times, or the `datasets` fingerprint) and the vocabulary options; a split
folder's key hashes its corpora, the sentencepiece model and `max_len`. A changed corpus or
option therefore lands in a new folder; an unchanged one is reused without reading the corpus.
Token ids are uint16 where the vocabulary fits (else int32); offsets are int64, one more than
the pairs. Each manifest records the inputs (with a content hash taken while streaming), the
options, pair counts, the pairs dropped by `max_len`, and the size and sha256 of every file,
which are checked whenever a folder is used: a truncated or corrupt folder is rebuilt.

Concurrency: a folder is built under an exclusive file lock (`<folder>.lock`) into a
temporary folder that is renamed into place when complete, so any number of processes
(Lightning DDP ranks, torchrun or SLURM tasks, two runs started at once) build it once; the
others wait for the lock and then map the finished files.

The vocabulary is trained on a bounded random sample of the training lines (reservoir sampling
while streaming, seeded, both languages pooled; `sample_sentences`, 2M by default) with all
cores. Tokenization runs in worker processes, one chunk of pairs at a time, so memory stays
bounded by a few chunks whatever the corpus size.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import itertools
import json
import logging
import multiprocessing
import os
import shutil
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from transformer_mt.data.batching import SIDES, EncodedPairs, token_dtype
from transformer_mt.data.corpus import Pair, fingerprint, iter_pairs
from transformer_mt.data.encode_worker import encode_chunk, init_worker
from transformer_mt.data.tokenizer import Tokenizer, train_sentencepiece
from transformer_mt.errors import UserError

log = logging.getLogger(__name__)

FORMAT = 1  # bump when the folder layout changes: old folders are then simply not found
CHUNK_PAIRS = 20_000  # pairs per tokenization task: ~6 MB of text, a few ms of pickling
MANIFEST = "manifest.json"


@dataclass(frozen=True, kw_only=True)
class VocabOptions:
    """What a joint sentencepiece vocabulary depends on, besides its training text."""

    vocab_size: int
    model_type: str = "unigram"
    character_coverage: float = 1.0
    sample_sentences: int = 2_000_000
    seed: int = 1234


# ---------------------------------------------------------------------------- build once
def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps([FORMAT, *parts], sort_keys=True).encode()).hexdigest()[:16]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 23):
            digest.update(block)
    return digest.hexdigest()


def _problem(folder: Path) -> str | None:
    """Why a finished folder cannot be used (None if it can): every file the manifest lists
    must exist with its recorded size and sha256."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        for name, info in manifest["files"].items():
            path = folder / name
            if not path.is_file():
                return f"{name} is missing"
            if path.stat().st_size != info["size"]:
                return f"{name} is truncated ({path.stat().st_size} of {info['size']} bytes)"
            if file_sha256(path) != info["sha256"]:
                return f"{name} is corrupt (sha256 differs from the manifest)"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"{MANIFEST} is unreadable ({type(exc).__name__})"
    return None


def read_manifest(folder: Path) -> dict[str, Any]:
    return json.loads((folder / MANIFEST).read_text(encoding="utf-8"))


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """An exclusive lock on `lock_path` for the block; says so when it has to wait."""
    with open(lock_path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"transformer-mt: waiting for another process preparing {lock_path.stem}",
                  file=sys.stderr)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _os_error(exc: OSError, where: Path) -> UserError:
    if exc.errno == errno.ENOSPC:
        return UserError(f"{where}: no space left on the device while preparing the data; "
                         "free some space or point data.cache_dir elsewhere")
    return UserError(f"{where}: cannot write the data cache ({exc.strerror or exc}); "
                     "set data.cache_dir to a writable folder")


def build_once(folder: Path, build: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """The manifest of `folder`, building it first with `build(tmp_folder)` unless a complete,
    intact copy exists. `build` writes its files and returns the manifest's other entries."""
    if folder.is_dir() and _problem(folder) is None:
        return read_manifest(folder)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        lock = folder.parent / f"{folder.name}.lock"
        with _locked(lock):
            if folder.is_dir():
                problem = _problem(folder)
                if problem is None:  # another process finished it while this one waited
                    return read_manifest(folder)
                log.warning("%s: %s; rebuilding it", folder, problem)
                print(f"transformer-mt: warning: {folder}: {problem}; rebuilding it",
                      file=sys.stderr)
                shutil.rmtree(folder)
            tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            try:
                manifest = build(tmp)
                manifest["files"] = {
                    p.name: {"size": p.stat().st_size, "sha256": file_sha256(p)}
                    for p in sorted(tmp.iterdir())
                }
                (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
                os.rename(tmp, folder)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    except OSError as exc:
        raise _os_error(exc, folder) from None
    return manifest


# ---------------------------------------------------------------------------- streaming
class _HashedInputs:
    """Streams the pairs of several corpora and records, per corpus, its fingerprint, a sha256
    of its content (both sides, as read) and its pair count: the manifest's `inputs`."""

    def __init__(self, specs: list[str], src_lang: str, tgt_lang: str, data_dir: Path) -> None:
        self.specs, self.langs, self.data_dir = specs, (src_lang, tgt_lang), data_dir
        self.fingerprints = [fingerprint(s, src_lang, tgt_lang, data_dir) for s in specs]
        self.records: list[dict[str, Any]] = []

    def __iter__(self) -> Iterator[Pair]:
        self.records = []
        for spec, print_ in zip(self.specs, self.fingerprints, strict=True):
            digest, count = hashlib.sha256(), 0
            for src, tgt in iter_pairs(spec, *self.langs, self.data_dir):
                digest.update(f"{src}\t{tgt}\n".encode())
                count += 1
                yield src, tgt
            self.records.append({**print_, "sha256": digest.hexdigest(), "pairs": count})


def _chunks(pairs: Iterable[Pair], size: int) -> Iterator[tuple[list[str], list[str]]]:
    src: list[str] = []
    tgt: list[str] = []
    for s, t in pairs:
        src.append(s)
        tgt.append(t)
        if len(src) == size:
            yield src, tgt
            src, tgt = [], []
    if src:
        yield src, tgt


def _progress(desc: str, total: int | None = None):
    from tqdm import tqdm

    return tqdm(desc=desc, total=total, unit=" pairs", unit_scale=True, file=sys.stderr,
                disable=None, mininterval=1.0)


# ---------------------------------------------------------------------------- vocabulary
class _Reservoir:
    """A uniform random sample of at most `size` lines of a stream (Vitter's algorithm R, in
    numpy per chunk), seeded, so the same corpus gives the same sample."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seen, self.lines = size, 0, []
        self.rng = np.random.default_rng(seed)

    def add(self, lines: list[str]) -> None:
        lines = [line for line in lines if line.strip()]
        fill = min(len(lines), self.size - len(self.lines))
        self.lines.extend(lines[:fill])
        rest = lines[fill:]
        if rest:
            seen = self.seen + fill + np.arange(len(rest))
            slots = self.rng.integers(0, seen + 1)
            for position in np.flatnonzero(slots < self.size).tolist():
                self.lines[int(slots[position])] = rest[position]
        self.seen += len(lines)


def prepare_vocabulary(
    specs: list[str], src_lang: str, tgt_lang: str, data_dir: Path, cache_dir: Path,
    options: VocabOptions,
) -> Tokenizer:
    """The joint sentencepiece model of the training corpora, trained once and cached."""
    if not specs:
        raise UserError("data.train is empty: give at least one training corpus")
    inputs = _HashedInputs(specs, src_lang, tgt_lang, data_dir)
    folder = cache_dir / f"vocab-{_key(inputs.fingerprints, asdict(options))}"

    def build(tmp: Path) -> dict[str, Any]:
        start = time.perf_counter()
        reservoir = _Reservoir(options.sample_sentences, options.seed)
        with _progress("vocabulary: reading") as bar:
            for src, tgt in _chunks(inputs, CHUNK_PAIRS):
                reservoir.add(src)
                reservoir.add(tgt)
                bar.update(len(src))
        if not reservoir.lines:
            raise UserError(f"{', '.join(specs)}: no text to build a vocabulary from")
        sample = tmp / "sample.txt"
        sample.write_text("".join(line.strip() + "\n" for line in reservoir.lines),
                          encoding="utf-8")
        sampled, seen = len(reservoir.lines), reservoir.seen
        del reservoir
        print(f"transformer-mt: training sentencepiece ({options.model_type}, "
              f"{options.vocab_size} pieces) on {sampled:,} of {seen:,} lines",
              file=sys.stderr)
        train_sentencepiece(sample, tmp / "spm.model", options.vocab_size, options.model_type,
                            options.character_coverage, options.sample_sentences,
                            num_threads=os.cpu_count() or 1)
        sample.unlink()
        return {"kind": "vocabulary", "inputs": inputs.records, "options": asdict(options),
                "lines_seen": seen, "lines_sampled": sampled,
                "spm_sha256": file_sha256(tmp / "spm.model"),
                "seconds": round(time.perf_counter() - start, 1)}

    build_once(folder, build)
    return Tokenizer.from_file(folder / "spm.model")


# ---------------------------------------------------------------------------- token arrays
def _encoded(chunks: Iterator[tuple[list[str], list[str]]], model_proto: bytes,
             max_len: int | None, dtype: np.dtype) -> Iterator[tuple]:
    """Encode chunks in order: in this process for a corpus of one chunk, else in a pool of
    worker processes (one per core) with a bounded number of chunks in flight."""
    first = next(chunks, None)
    if first is None:
        return
    second = next(chunks, None)
    if second is None:
        init_worker(model_proto)
        yield encode_chunk(first, max_len, dtype)
        return
    workers = os.cpu_count() or 1
    context = multiprocessing.get_context("spawn")  # safe beside torch's threads and CUDA
    with context.Pool(workers, initializer=init_worker, initargs=(model_proto,)) as pool:
        pending: deque = deque()
        for chunk in itertools.chain((first, second), chunks):
            pending.append(pool.apply_async(encode_chunk, (chunk, max_len, dtype)))
            if len(pending) >= 2 * workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


def prepare_split(
    name: str, specs: list[str], src_lang: str, tgt_lang: str, data_dir: Path,
    cache_dir: Path, tokenizer: Tokenizer, max_len: int | None,
) -> EncodedPairs:
    """The token arrays of one split, built once and memory-mapped. With `max_len`
    (training) pairs with an empty side or over `max_len` subwords are dropped and counted."""
    inputs = _HashedInputs(specs, src_lang, tgt_lang, data_dir)
    spm_sha = hashlib.sha256(tokenizer.model_proto).hexdigest()
    folder = cache_dir / f"split-{_key(inputs.fingerprints, spm_sha, max_len)}"
    dtype = token_dtype(tokenizer.vocab_size)

    def build(tmp: Path) -> dict[str, Any]:
        start = time.perf_counter()
        lengths: dict[str, list[np.ndarray]] = {side: [] for side in SIDES}
        with contextlib.ExitStack() as files, _progress(f"{name}: tokenizing") as bar:
            out = {side: files.enter_context(open(tmp / f"{side}.tokens", "wb"))
                   for side in SIDES}
            for src_tok, src_len, tgt_tok, tgt_len in _encoded(
                    _counted(_chunks(inputs, CHUNK_PAIRS), bar), tokenizer.model_proto,
                    max_len, dtype):
                src_tok.tofile(out["src"])
                tgt_tok.tofile(out["tgt"])
                lengths["src"].append(src_len)
                lengths["tgt"].append(tgt_len)
        read = sum(record["pairs"] for record in inputs.records)
        kept = 0
        for side in SIDES:
            lens = np.concatenate(lengths[side]) if lengths[side] else np.zeros(0, np.int32)
            offsets = np.zeros(len(lens) + 1, dtype=np.int64)
            np.cumsum(lens, out=offsets[1:])
            offsets.tofile(tmp / f"{side}.offsets")
            kept = len(lens)
        if max_len is not None and kept == 0:
            raise UserError(f"{name}: no training pairs left after filtering "
                            f"(empty side or over max_len={max_len} subwords)")
        seconds = time.perf_counter() - start
        print(f"transformer-mt: {name}: {kept:,} pairs tokenized ({read - kept:,} dropped) "
              f"in {seconds:.0f} s ({read / max(seconds, 1e-9):,.0f} pairs/s) -> {folder}",
              file=sys.stderr)
        return {"kind": "split", "name": name, "inputs": inputs.records, "max_len": max_len,
                "spm_sha256": spm_sha, "dtype": dtype.name, "pairs": kept,
                "pairs_read": read, "pairs_dropped": read - kept,
                "tokens": {side: int(sum(int(x.sum()) for x in lengths[side]))
                           for side in SIDES},
                "seconds": round(seconds, 1)}

    manifest = build_once(folder, build)
    if manifest["pairs_dropped"]:
        log.warning("%s: dropped %d of %d pairs (empty side or over max_len=%s subwords)",
                    name, manifest["pairs_dropped"], manifest["pairs_read"], max_len)
    return EncodedPairs.open(folder, np.dtype(manifest["dtype"]))


def _counted(chunks: Iterator[tuple[list[str], list[str]]], bar: Any
             ) -> Iterator[tuple[list[str], list[str]]]:
    for chunk in chunks:
        bar.update(len(chunk[0]))
        yield chunk
