"""`transformer-mt export`: a checkpoint as a Hugging Face Marian model or a CTranslate2 model.

How each difference between the runtimes and our model is handled is `transformer_mt.exporters`'
business (and docs/export.md's); this module is the command line. The export is checked against
our own forward pass before it is moved into place.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from transformer_mt.commands.options import require_extra
from transformer_mt.errors import UserError
from transformer_mt.exporters.ct2 import CT2_QUANTIZATIONS

FORMATS = ("hf", "ctranslate2")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `transformer-mt export`."""
    parser.add_argument("--checkpoint", required=True, metavar="CKPT", help="checkpoint to export")
    parser.add_argument(
        "--to", required=True, choices=FORMATS,
        help="hf: a directory for transformers.MarianMTModel/MarianTokenizer.from_pretrained; "
        "ctranslate2: a directory for ctranslate2.Translator",
    )
    parser.add_argument(
        "--out", required=True, metavar="DIR",
        help="output directory; written beside it, checked, then moved into place",
    )
    parser.add_argument(
        "--force", action="store_true", help="replace DIR if it exists and is not empty",
    )
    parser.add_argument(
        "--quantization", choices=CT2_QUANTIZATIONS, default=None,
        help="CTranslate2 only: store the weights in this type (None: float32). Quantized "
        "exports are not compared with the checkpoint's logits, only float32 ones are",
    )


def run(args: argparse.Namespace) -> int:
    """Export, verify against our own forward pass, then move the directory into place."""
    if args.quantization is not None and args.to != "ctranslate2":
        raise UserError("--quantization applies to --to ctranslate2 only")
    modules = ("transformers", "safetensors") if args.to == "hf" else ("ctranslate2",)
    for name in modules:
        require_extra(name, "export")

    from transformer_mt.exporters.ct2 import export_ctranslate2, verify_ctranslate2
    from transformer_mt.exporters.marian import export_hf, verify_hf
    from transformer_mt.exporters.staging import check_exportable, staged_directory
    from transformer_mt.inference.loaded_model import load_for_inference

    if args.to == "hf":
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # our one summary line is the progress report
    loaded = load_for_inference(args.checkpoint)
    check_exportable(loaded.model.config, args.to)
    out = Path(args.out)
    with staged_directory(out, args.force) as stage:
        if args.to == "hf":
            export_hf(loaded, stage)
            report = f"max |logit difference| {verify_hf(loaded, stage):.2e}"
        else:
            export_ctranslate2(loaded, stage, args.quantization)
            if args.quantization in (None, "float32"):
                report = f"max |log-prob difference| {verify_ctranslate2(loaded, stage):.2e}"
            else:
                report = f"{args.quantization} weights, not compared with the checkpoint"
    print(f"transformer-mt: exported {args.checkpoint} to {out} ({args.to}; {report})",
          file=sys.stderr)
    return 0
