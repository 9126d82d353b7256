"""`transformer-mt prepare --config CONFIG`: build a config's vocabulary and token arrays.

It reads the same YAML as `fit` (only its `data:` section matters; `--data.*` overrides work)
and fills `data.cache_dir`, so that every later `fit` (on 1, 8 or 16 GPUs) only maps the
prepared files. `fit` does the same work itself when the cache is missing.
"""

from __future__ import annotations

import sys
from typing import Any

from jsonargparse import ActionConfigFile

from transformer_mt.commands.train import OneLineLightningParser
from transformer_mt.data.cache import read_manifest
from transformer_mt.data.datamodule import TranslationDataModule

# The other top-level sections of a training config, accepted and ignored here.
_OTHER_SECTIONS = ("model", "trainer", "checkpoint", "optimizer", "lr_scheduler")


def build_parser() -> OneLineLightningParser:
    parser = OneLineLightningParser(
        prog="transformer-mt prepare", default_env=False,
        description="Build the joint vocabulary and the memory-mapped token arrays of a "
        "training config once, before `fit`.")
    parser.add_argument("--config", action=ActionConfigFile, help="a `fit` YAML config")
    parser.add_class_arguments(TranslationDataModule, "data")
    for section in _OTHER_SECTIONS:
        parser.add_argument(f"--{section}", type=dict | None, default=None,
                            help="ignored (a `fit` section)")
    parser.add_argument("--seed_everything", type=Any, default=None, help="ignored")
    parser.add_argument("--ckpt_path", type=str | None, default=None, help="ignored")
    return parser


def run_prepare(argv: list[str]) -> int:
    parser = build_parser()
    config = parser.parse_args(argv)
    data: TranslationDataModule = parser.instantiate_classes(config).data
    for split in ("train", "valid", "test"):
        if getattr(data.hparams, split):
            data.split(split)
    parts = [f"vocabulary {data.vocab_size:,} pieces"]
    for name, dataset in data.datasets.items():
        manifest = read_manifest(dataset.folder)
        dropped = f", {manifest['pairs_dropped']:,} dropped" if manifest["pairs_dropped"] else ""
        parts.append(f"{name} {manifest['pairs']:,} pairs{dropped}")
    print(f"transformer-mt: prepared {'; '.join(parts)} in {data.cache_dir}", file=sys.stderr)
    return 0
