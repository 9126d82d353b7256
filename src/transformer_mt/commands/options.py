"""Argument helpers shared by several commands: the model options of every command that
translates, search options as the command line spells them, and optional extras."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence
from dataclasses import fields, replace
from typing import get_type_hints

from transformer_mt.errors import UserError
from transformer_mt.inference.search import SearchOptions
from transformer_mt.model.cpu_gemm import CPU_GEMMS
from transformer_mt.model.quantize import QUANTIZATIONS


def add_model_arguments(group: argparse._ActionsContainer) -> None:
    """--device, --quantize and --cpu-gemm: how `Translator.from_checkpoint` sets the model
    up, for every command that translates with it (translate, serve)."""
    group.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                       help="auto = cuda when available")
    group.add_argument("--quantize", choices=QUANTIZATIONS, default=None,
                       help="CPU only: int8 weights for every linear layer (dynamic "
                       "quantization), faster; translations may change slightly")
    group.add_argument("--cpu-gemm", choices=CPU_GEMMS, default="auto",
                       help="float32 CPU matrix products: auto = oneDNN on non-Intel CPUs "
                       "(MKL is slow there), torch's default (MKL) on Intel")


def cli_name(field: str) -> str:
    """A search option as the command line spells it (`beam_size` -> `--beam-size`)."""
    return "--" + field.replace("_", "-")


# SearchOptions field -> (metavar, help). The options' names, types and defaults are the
# dataclass's own, as in the server's /v1 body, so the command line and the API never drift.
SEARCH_HELP = {
    "beam_size": ("K", "beam width; 1 = greedy"),
    "length_penalty": ("ALPHA", "GNMT alpha: score = log-prob / ((5 + len) / 6) ** alpha"),
    "max_len_a": ("A", "max output tokens = a * source tokens + b"),
    "max_len_b": ("B", "see --max-len-a"),
    "nbest": ("K", "print the K best hypotheses per line (format below)"),
    "sampling": (None, "sample translations; --nbest K draws K samples per line"),
    "temperature": ("T", "softmax temperature, > 0"),
    "top_k": ("K", "sample among the K most probable tokens; 0 = all"),
    "top_p": ("P", "nucleus sampling: smallest token set with this mass, in (0, 1]"),
}
SAMPLING_FIELDS = ("sampling", "temperature", "top_k", "top_p")


def add_search_arguments(parser: argparse.ArgumentParser, names: Sequence[str] | None = None,
                         defaults_from: str | None = None) -> None:
    """A `search` group holding the SearchOptions fields `names` (all by default), and a
    `sampling` group with --seed when any sampling field is among them. With `defaults_from`
    (e.g. "the checkpoint's predict settings"), an option left out is None, taken from there."""
    groups = {False: parser.add_argument_group("search"),
              True: parser.add_argument_group("sampling (instead of beam search)")}
    types = get_type_hints(SearchOptions)
    wanted = [field for field in fields(SearchOptions) if names is None or field.name in names]
    for field in wanted:
        group = groups[field.name in SAMPLING_FIELDS]
        metavar, help_text = SEARCH_HELP[field.name]
        if types[field.name] is bool:
            group.add_argument(cli_name(field.name), action="store_true", help=help_text)
        else:
            default = field.default if defaults_from is None else None
            if defaults_from is not None:
                help_text += f" (default: {defaults_from})"
            group.add_argument(cli_name(field.name), type=types[field.name],
                               default=default, metavar=metavar, help=help_text)
    if any(field.name in SAMPLING_FIELDS for field in wanted):
        groups[True].add_argument("--seed", type=int, default=None, metavar="N",
                                  help="random seed for reproducible samples; unseeded when "
                                  "not given")


def search_options(args: argparse.Namespace, base: SearchOptions | None = None) -> SearchOptions:
    """The search options of the command line, checked by the one validator; fields the command
    has no option for, or that were left at None, are `base`'s (default: SearchOptions')."""
    given = {field.name: getattr(args, field.name) for field in fields(SearchOptions)
             if getattr(args, field.name, None) is not None}
    try:
        return replace(base or SearchOptions(), **given).check(cli_name)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def require_extra(module: str, extra: str) -> None:
    """Import an optional dependency now, or say which extra to install."""
    try:
        importlib.import_module(module)
    except ImportError:
        raise UserError(
            f"this command needs the '{extra}' extra ({module} is not installed): "
            f"pip install 'transformer-mt[{extra}]'"
        ) from None
