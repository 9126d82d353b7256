"""Parallel corpus readers: plain-text file pairs, TSV, JSONL, and Hugging Face `datasets`.

A corpus is named by one string so that it fits in a YAML list:
- ``train.{lang}`` (also ``.gz``/``.xz``/``.bz2``): two line-aligned files, ``{lang}`` replaced by
  the source and target language codes;
- ``pairs.tsv``: one ``source<TAB>target`` pair per line;
- ``pairs.jsonl``: one ``{"translation": {"en": ..., "de": ...}}`` object per line (the layout of
  the Hugging Face translation datasets; flat ``{"en": ..., "de": ...}`` works too);
- ``hf:NAME:CONFIG:SPLIT`` or ``hf:NAME:SPLIT``:
  ``datasets.load_dataset(NAME, CONFIG, split=SPLIT)``, e.g. ``hf:wmt14:de-en:train``;
  NAME may be a local dataset folder.
Relative file paths are resolved against the data directory.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformer_mt.errors import UserError
from transformer_mt.textio import check_same_length, read_lines

DATA_ENV = "TRANSFORMER_MT_DATA"
DEFAULT_SHARED_DATA = "../shared/data"


@dataclass
class ParallelText:
    """Raw, untokenized sentence pairs, index-aligned."""

    src: list[str]
    tgt: list[str]

    def __len__(self) -> int:
        return len(self.src)

    def extend(self, other: ParallelText) -> None:
        self.src.extend(other.src)
        self.tgt.extend(other.tgt)


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


def _pair_from_record(record: dict[str, Any], src_lang: str, tgt_lang: str, where: str):
    pair = record.get("translation", record)
    if not isinstance(pair, dict) or src_lang not in pair or tgt_lang not in pair:
        raise UserError(
            f"{where}: expected a 'translation' object with keys {src_lang!r} and {tgt_lang!r}"
        )
    return str(pair[src_lang]), str(pair[tgt_lang])


def read_text_pair(pattern: str, src_lang: str, tgt_lang: str, data_dir: Path) -> ParallelText:
    src_path = _resolve(pattern.replace("{lang}", src_lang), data_dir)
    tgt_path = _resolve(pattern.replace("{lang}", tgt_lang), data_dir)
    src, tgt = read_lines(src_path), read_lines(tgt_path)
    check_same_length(src, tgt, str(src_path), str(tgt_path))
    return ParallelText(src, tgt)


def read_tsv(path: Path) -> ParallelText:
    src, tgt = [], []
    for lineno, line in enumerate(read_lines(path), start=1):
        fields = line.split("\t")
        if len(fields) != 2:
            raise UserError(
                f"{path}: line {lineno}: expected 2 tab-separated fields, found {len(fields)}"
            )
        src.append(fields[0])
        tgt.append(fields[1])
    return ParallelText(src, tgt)


def read_jsonl(path: Path, src_lang: str, tgt_lang: str) -> ParallelText:
    src, tgt = [], []
    for lineno, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}: line {lineno}: invalid JSON ({exc.msg})") from None
        s, t = _pair_from_record(record, src_lang, tgt_lang, f"{path}: line {lineno}")
        src.append(s)
        tgt.append(t)
    return ParallelText(src, tgt)


def read_hf_dataset(spec: str, src_lang: str, tgt_lang: str) -> ParallelText:
    """`hf:NAME[:CONFIG]:SPLIT` via `datasets.load_dataset` (the hub, its cache, or a folder)."""
    parts = spec[len("hf:"):].split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise UserError(f"{spec}: expected hf:NAME:CONFIG:SPLIT or hf:NAME:SPLIT")
    name, config, split = (parts[0], None, parts[1]) if len(parts) == 2 else parts
    import datasets  # heavy: only when a Hugging Face corpus is used

    try:
        dataset = datasets.load_dataset(name, config, split=split)
    except Exception as exc:  # the hub, the network and the cache all fail differently
        raise UserError(
            f"{spec}: could not load with datasets.load_dataset ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200] if str(exc) else ''})"
        ) from None
    src, tgt = [], []
    for i, record in enumerate(dataset):
        s, t = _pair_from_record(record, src_lang, tgt_lang, f"{spec}: row {i}")
        src.append(s)
        tgt.append(t)
    return ParallelText(src, tgt)


def read_corpus(spec: str, src_lang: str, tgt_lang: str, data_dir: Path) -> ParallelText:
    """Read one corpus named by `spec` (see the module docstring for the forms)."""
    if spec.startswith("hf:"):
        return read_hf_dataset(spec, src_lang, tgt_lang)
    if "{lang}" in spec:
        return read_text_pair(spec, src_lang, tgt_lang, data_dir)
    name = _compression_stripped(spec)
    if name.endswith(".tsv"):
        return read_tsv(_resolve(spec, data_dir))
    if name.endswith((".jsonl", ".json")):
        return read_jsonl(_resolve(spec, data_dir), src_lang, tgt_lang)
    raise UserError(
        f"{spec}: unknown corpus form; use 'path.{{lang}}', a .tsv or .jsonl file, "
        "or hf:NAME:CONFIG:SPLIT"
    )


def read_corpora(
    specs: list[str], src_lang: str, tgt_lang: str, data_dir: Path
) -> ParallelText:
    """Concatenate several corpora (e.g. Europarl + Common Crawl + News Commentary)."""
    text = ParallelText([], [])
    for spec in specs:
        text.extend(read_corpus(spec, src_lang, tgt_lang, data_dir))
    return text
