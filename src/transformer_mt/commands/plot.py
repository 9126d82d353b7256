"""`transformer-mt plot`: a run's training curves (training and validation loss, validation
BLEU, learning rate) as one PNG, from the CSV log `fit` writes; the drawing is
`training.curves`. matplotlib is the optional 'viz' extra."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from transformer_mt.commands.options import require_extra
from transformer_mt.errors import UserError
from transformer_mt.textio import write_bytes
from transformer_mt.training.curves import draw, find_metrics, png_bytes, read_metrics

PICTURE_NAME = "curves.png"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `transformer-mt plot`."""
    parser.add_argument("run_dir", nargs="?", metavar="RUN_DIR",
                        help="a run folder (trainer.default_root_dir, e.g. runs/multi30k): its "
                        "newest logs/*/metrics.csv")
    parser.add_argument("--metrics", metavar="FILE", help="a CSV log instead of a run folder")
    parser.add_argument("--out", metavar="PNG",
                        help=f"where to write (default: RUN_DIR/{PICTURE_NAME}, or beside FILE)")


def run(args: argparse.Namespace) -> int:
    if (args.run_dir is None) == (args.metrics is None):
        raise UserError("plot: give a run folder or --metrics FILE (one of them)")
    if args.metrics:
        metrics = Path(args.metrics)
        if not metrics.is_file():
            raise UserError(f"{metrics}: no such file")
        out = Path(args.out) if args.out else metrics.with_name(PICTURE_NAME)
    else:
        metrics = find_metrics(Path(args.run_dir))
        out = Path(args.out) if args.out else Path(args.run_dir) / PICTURE_NAME
    require_extra("matplotlib", "viz")
    curves = read_metrics(metrics)
    picture = png_bytes(draw(curves, str(metrics)))
    write_bytes(out, picture)
    last = max((step for series in (curves.train_loss, curves.val_loss, curves.lr)
                for step, _ in series), default=0)
    print(f"transformer-mt: wrote {out} (training curves of {metrics}: {len(curves.val_bleu)} "
          f"validation BLEU points, up to step {last:,})", file=sys.stderr)
    return 0
