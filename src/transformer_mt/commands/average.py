"""`transformer-mt average`: average the weights of several checkpoints (paper §6.1).

The rules are `training.averaging`'s. torch is imported inside `run`: the command line imports
this module to build its parser, and other commands must not pay for loading torch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from transformer_mt.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `transformer-mt average`."""
    inputs = parser.add_mutually_exclusive_group(required=True)
    inputs.add_argument(
        "--inputs", nargs="+", metavar="CKPT",
        help="checkpoints to average; the last one is the template for everything but weights",
    )
    inputs.add_argument(
        "--run-dir", metavar="DIR",
        help="average the --last N distinct global_steps under DIR, one file each, the "
        "newest state (last.ckpt, interrupted.ckpt) included (recursive; symlinks, earlier "
        "averages and the output are skipped)",
    )
    parser.add_argument(
        "--last", type=int, metavar="N",
        help="how many checkpoints to take from --run-dir (the paper: 5 for base, 20 for big)",
    )
    parser.add_argument(
        "--output", required=True, metavar="OUT.ckpt",
        help="where to write the averaged checkpoint (written atomically)",
    )


def run(args: argparse.Namespace) -> int:
    """Resolve the inputs, average them, write the output atomically."""
    import torch

    from transformer_mt.textio import atomic_write, check_readable
    from transformer_mt.training.averaging import average_checkpoints, find_recent_checkpoints

    output = Path(args.output).resolve()
    if args.run_dir is not None:
        if args.last is None:
            raise UserError("--run-dir needs --last N, the number of checkpoints to average")
        if args.last < 1:
            raise UserError(f"--last must be at least 1, got {args.last}")
        paths = find_recent_checkpoints(Path(args.run_dir), args.last, output)
    else:
        if args.last is not None:
            raise UserError("--last only applies to --run-dir; with --inputs list the files")
        paths = [check_readable(p) for p in args.inputs]
        resolved = [p.resolve() for p in paths]
        for i, p in enumerate(resolved):
            if p in resolved[:i]:
                raise UserError(f"{paths[i]}: listed twice; each checkpoint may be averaged once")
            if p == output:
                raise UserError(f"{paths[i]}: is also the --output; write to a new file")

    print(f"averaging {len(paths)} checkpoint(s):", file=sys.stderr)
    result = average_checkpoints(paths)
    with atomic_write(args.output, "wb") as handle:
        torch.save(result, handle)
    print(f"wrote {args.output} (average of {len(paths)}; optimizer state dropped)",
          file=sys.stderr)
    return 0
