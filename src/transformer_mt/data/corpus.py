"""Parallel corpus readers: plain-text file pairs, TSV, JSONL, and Hugging Face `datasets`.

A corpus is named by one string so that it fits in a YAML list:
- ``train.{lang}`` (also ``.gz``/``.xz``/``.bz2``): two line-aligned files, ``{lang}`` replaced by
  the source and target language codes;
- ``pairs.tsv``: one ``source<TAB>target`` pair per line;
- ``pairs.jsonl``: one ``{"translation": {"en": ..., "de": ...}}`` object per line (the layout of
  the Hugging Face translation datasets; flat ``{"en": ..., "de": ...}`` works too);
- ``hf:NAME:CONFIG:SPLIT`` or ``hf:NAME:SPLIT``:
  ``datasets.load_dataset(NAME, CONFIG, split=SPLIT)``, e.g. ``hf:wmt/wmt14:de-en:train``;
  NAME may be a local dataset folder.
Relative file paths are resolved against the data directory.

Every reader streams pairs (`iter_pairs`): a WMT-sized corpus (4.5M pairs, ~1.3 GB of text) is
never held as Python lists; `read_corpus` collects one into lists for small evaluation sets.
`fingerprint` identifies a corpus cheaply (paths, sizes, modification times; the `datasets`
fingerprint), so a prepared cache can be found without reading the corpus again.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path
from typing import Any

from transformer_mt.errors import UserError
from transformer_mt.textio import check_readable, iter_lines

DATA_ENV = "TRANSFORMER_MT_DATA"
DEFAULT_SHARED_DATA = "../shared/data"

Pair = tuple[str, str]


@dataclass(kw_only=True)
class ParallelText:
    """Raw, untokenized sentence pairs, index-aligned."""

    src: list[str]
    tgt: list[str]

    def __len__(self) -> int:
        return len(self.src)


def default_data_dir() -> Path:
    """$TRANSFORMER_MT_DATA, else ../shared/data (the corpora beside a checkout)."""
    return Path(os.environ.get(DATA_ENV, DEFAULT_SHARED_DATA))


def _resolve(path: str, data_dir: Path) -> Path:
    p = Path(os.path.expanduser(path))
    return p if p.is_absolute() else data_dir / p


def _compression_stripped(name: str) -> str:
    for suffix in (".gz", ".xz", ".bz2"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _pair_from_record(record: dict[str, Any], src_lang: str, tgt_lang: str, where: str) -> Pair:
    pair = record.get("translation", record)
    if not isinstance(pair, dict) or src_lang not in pair or tgt_lang not in pair:
        raise UserError(
            f"{where}: expected a 'translation' object with keys {src_lang!r} and {tgt_lang!r}"
        )
    return str(pair[src_lang]), str(pair[tgt_lang])


def _hf_parts(spec: str) -> tuple[str, str | None, str]:
    parts = spec[len("hf:"):].split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise UserError(f"{spec}: expected hf:NAME:CONFIG:SPLIT or hf:NAME:SPLIT")
    return (parts[0], None, parts[1]) if len(parts) == 2 else (parts[0], parts[1], parts[2])


@functools.cache
def load_hf_dataset(spec: str) -> Any:
    """`hf:NAME[:CONFIG]:SPLIT` via `datasets.load_dataset` (the hub, its cache, or a folder).

    The result is an Arrow-backed, memory-mapped table: rows are read in batches from it, never
    copied into Python lists as a whole. Loaded once per process: the prepare step asks for its
    fingerprint and then for its rows, for the vocabulary and again for the token arrays.
    """
    name, config, split = _hf_parts(spec)
    import datasets  # heavy: only when a Hugging Face corpus is used

    try:
        return datasets.load_dataset(name, config, split=split)
    except Exception as exc:  # the hub, the network and the cache all fail differently
        raise UserError(
            f"{spec}: could not load with datasets.load_dataset ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200] if str(exc) else ''})"
        ) from None


def _iter_hf(spec: str, src_lang: str, tgt_lang: str, batch_size: int = 10_000
             ) -> Iterator[Pair]:
    dataset = load_hf_dataset(spec)
    if "translation" not in dataset.column_names:
        dataset = dataset.select_columns([c for c in (src_lang, tgt_lang)
                                          if c in dataset.column_names])
    row = 0
    for batch in dataset.iter(batch_size=batch_size):
        records = batch.get("translation") or [dict(zip(batch, values, strict=True))
                                               for values in zip(*batch.values(), strict=True)]
        for record in records:
            yield _pair_from_record(record, src_lang, tgt_lang, f"{spec}: row {row}")
            row += 1


def _iter_text_pair(pattern: str, src_lang: str, tgt_lang: str, data_dir: Path
                    ) -> Iterator[Pair]:
    src_path = _resolve(pattern.replace("{lang}", src_lang), data_dir)
    tgt_path = _resolve(pattern.replace("{lang}", tgt_lang), data_dir)
    check_readable(tgt_path)  # fail before reading a whole source file
    for src, tgt in zip_longest(iter_lines(src_path), iter_lines(tgt_path)):
        if src is None or tgt is None:  # one file ended first: count both for the message
            raise UserError(
                f"line counts differ: {src_path} has {_count_lines(src_path)} lines, "
                f"{tgt_path} has {_count_lines(tgt_path)}; the files must be parallel, "
                "line by line"
            )
        yield src, tgt


def _count_lines(path: Path) -> int:
    return sum(1 for _ in iter_lines(path))


def _iter_tsv(path: Path) -> Iterator[Pair]:
    for lineno, line in enumerate(iter_lines(path), start=1):
        fields = line.split("\t")
        if len(fields) != 2:
            raise UserError(
                f"{path}: line {lineno}: expected 2 tab-separated fields, found {len(fields)}"
            )
        yield fields[0], fields[1]


def _iter_jsonl(path: Path, src_lang: str, tgt_lang: str) -> Iterator[Pair]:
    for lineno, line in enumerate(iter_lines(path), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}: line {lineno}: invalid JSON ({exc.msg})") from None
        yield _pair_from_record(record, src_lang, tgt_lang, f"{path}: line {lineno}")


def _files(spec: str, src_lang: str, tgt_lang: str, data_dir: Path) -> list[Path]:
    """The files a (non-`hf:`) corpus spec reads; a UserError for an unknown form."""
    if "{lang}" in spec:
        return [_resolve(spec.replace("{lang}", lang), data_dir) for lang in (src_lang, tgt_lang)]
    name = _compression_stripped(spec)
    if name.endswith((".tsv", ".jsonl", ".json")):
        return [_resolve(spec, data_dir)]
    raise UserError(
        f"{spec}: unknown corpus form; use 'path.{{lang}}', a .tsv or .jsonl file, "
        "or hf:NAME:CONFIG:SPLIT"
    )


def iter_pairs(spec: str, src_lang: str, tgt_lang: str, data_dir: Path) -> Iterator[Pair]:
    """Stream the (source, target) pairs of one corpus named by `spec` (see the module
    docstring for the forms)."""
    if spec.startswith("hf:"):
        return _iter_hf(spec, src_lang, tgt_lang)
    if "{lang}" in spec:
        return _iter_text_pair(spec, src_lang, tgt_lang, data_dir)
    files = _files(spec, src_lang, tgt_lang, data_dir)  # a UserError for an unknown form
    if _compression_stripped(spec).endswith(".tsv"):
        return _iter_tsv(files[0])
    return _iter_jsonl(files[0], src_lang, tgt_lang)


def fingerprint(spec: str, src_lang: str, tgt_lang: str, data_dir: Path) -> dict[str, Any]:
    """What identifies a corpus without reading it: resolved paths with size and modification
    time, or for `hf:` the dataset's own fingerprint (which changes with its files)."""
    if spec.startswith("hf:"):
        dataset = load_hf_dataset(spec)
        return {"spec": spec, "langs": [src_lang, tgt_lang],
                "hf_fingerprint": dataset._fingerprint, "rows": len(dataset)}
    files = []
    for path in _files(spec, src_lang, tgt_lang, data_dir):
        stat = check_readable(path).stat()
        files.append({"path": str(path.resolve()), "size": stat.st_size,
                      "mtime_ns": stat.st_mtime_ns})
    return {"spec": spec, "langs": [src_lang, tgt_lang], "files": files}


def read_corpus(spec: str, src_lang: str, tgt_lang: str, data_dir: Path) -> ParallelText:
    """Read one (small) corpus into lists: evaluation sets and their references."""
    text = ParallelText(src=[], tgt=[])
    for src, tgt in iter_pairs(spec, src_lang, tgt_lang, data_dir):
        text.src.append(src)
        text.tgt.append(tgt)
    return text


def read_corpora(specs: list[str], src_lang: str, tgt_lang: str, data_dir: Path
                 ) -> ParallelText:
    """Concatenate several small corpora into lists (evaluation sets)."""
    text = ParallelText(src=[], tgt=[])
    for spec in specs:
        part = read_corpus(spec, src_lang, tgt_lang, data_dir)
        text.src.extend(part.src)
        text.tgt.extend(part.tgt)
    return text
