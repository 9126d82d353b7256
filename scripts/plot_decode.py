"""Plot translation time against batch size and against source length, for every system of
scripts/bench_decode.py (same checkpoint, exports, search settings and batching rules).

Left: seconds per sentence for the first `--limit` test sentences at each batch size (sorted
by length, `--sizes` sentences per batch; median of `--repeats` passes). Right: from the run at
`--length-batch` sentences per batch, each batch's seconds per sentence against its mean
source length (batches hold sentences of about the same length, since they are sorted).

  python scripts/plot_decode.py --checkpoint runs/multi30k/checkpoints/last.ckpt
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import torch
from bench_decode import (
    DEFAULT_SYSTEMS,
    build_systems,
    plan_batches,
    timed_pass,
)

from transformer_mt.data.corpus import default_data_dir
from transformer_mt.inference.loaded_model import load_for_inference
from transformer_mt.textio import read_lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", metavar="CKPT", help="required unless --replot")
    parser.add_argument("--source", default=None,
                        help="source text (default: DATA/multi30k/test2016.en.xz)")
    parser.add_argument("--limit", type=int, default=200, help="first N sentences")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16, 64, 200],
                        help="batch sizes in sentences")
    parser.add_argument("--length-batch", type=int, default=16,
                        help="batch size of the time-against-length panel (one of --sizes)")
    parser.add_argument("--beam", type=int, default=4)
    parser.add_argument("--length-penalty", type=float, default=0.6)
    parser.add_argument("--systems", default=None,
                        help="comma-separated (default: bench_decode's for the device)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--export-dir", default="runs/bench/exports")
    parser.add_argument("--out", default="docs/decode_speed.png")
    parser.add_argument("--json", default="runs/bench/plot_decode.json",
                        help="the measured points, also written")
    parser.add_argument("--replot", action="store_true",
                        help="draw --json again without measuring (--checkpoint is ignored)")
    args = parser.parse_args(argv)
    if args.length_batch not in args.sizes:
        parser.error("--length-batch must be one of --sizes")
    if not args.replot and not args.checkpoint:
        parser.error("--checkpoint is required (unless --replot)")
    args.systems = args.systems or DEFAULT_SYSTEMS[args.device]
    return args


def measure(args: argparse.Namespace) -> dict:
    """{system: {"by_size": {size: s/sentence}, "by_length": [[mean length, s/sentence]]}}."""
    torch.set_num_threads(args.threads)
    source = args.source or str(default_data_dir() / "multi30k" / "test2016.en.xz")
    lines = read_lines(source)[: args.limit]
    loaded = load_for_inference(args.checkpoint, args.device)
    systems = build_systems(args, loaded)
    lengths = [len(ids) + 1 for ids in loaded.tokenizer.encode(lines)]
    points: dict = {s.name: {"by_size": {}, "by_length": []} for s in systems}
    for size in args.sizes:
        batches = plan_batches(lengths, 0, size)
        for system in systems:  # warm-up
            system.translate([lines[i] for i in batches[0]], args.beam)
        passes: dict[str, list] = {s.name: [] for s in systems}
        for _ in range(args.repeats):
            for system in systems:
                passes[system.name].append(timed_pass(system, lines, batches, args.beam))
        for name, runs in passes.items():
            points[name]["by_size"][size] = statistics.median(
                p["seconds"] for p in runs) / len(lines)
            if size == args.length_batch:
                run = sorted(runs, key=lambda p: p["seconds"])[len(runs) // 2]
                points[name]["by_length"] = [
                    [statistics.fmean(lengths[i] for i in batch), seconds / n]
                    for batch, (n, seconds) in zip(batches, run["per_batch"], strict=True)
                ]
        print(f"batch {size}: " + ", ".join(
            f"{name} {1 / points[name]['by_size'][size]:.1f} sent/s" for name in points),
            file=sys.stderr)
    return {"points": points, "load_avg": os.getloadavg(), "args": vars(args),
            "n_sentences": len(lines), "torch": torch.__version__}


def plot(data: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    args = data["args"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4), dpi=100)
    for name, series in data["points"].items():
        sizes = sorted(series["by_size"], key=int)
        left.plot([int(s) for s in sizes], [1e3 * series["by_size"][s] for s in sizes],
                  marker="o", label=name)
        by_length = sorted(series["by_length"])
        right.plot([x for x, _ in by_length], [1e3 * y for _, y in by_length], marker=".",
                   linewidth=1, label=name)
    left.set(xscale="log", yscale="log", xlabel="batch size (sentences)",
             ylabel="ms per sentence",
             title=f"beam {args['beam']}, {data['n_sentences']} sentences")
    right.set(yscale="log", xlabel="source length (tokens, batch mean)",
              ylabel="ms per sentence", title=f"batches of {args['length_batch']} sentences")
    left.set_xticks(sorted(int(s) for s in next(iter(data["points"].values()))["by_size"]))
    for axis in (left, right):
        axis.grid(True, which="both", alpha=0.3)
        for ax in (axis.xaxis, axis.yaxis):
            if ax.get_scale() == "log":
                if ax is axis.yaxis:
                    ax.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
                ax.set_major_formatter(ScalarFormatter())
                ax.set_minor_formatter(NullFormatter())
    left.legend(fontsize=8)
    fig.suptitle(f"{args['threads']} CPU threads, load average {data['load_avg'][0]:.2f}",
                 fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.replot:
        data = json.loads(Path(args.json).read_text())
    else:
        data = measure(args)
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(data, indent=1) + "\n")
    plot(data, Path(args.out))
    print(f"plot_decode: wrote {args.out}" + ("" if args.replot else f" and {args.json}"),
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
