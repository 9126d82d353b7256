"""Where a decoding step's time goes: per operator (torch.profiler) and outside torch.

Two cases, both beam search with the options of `transformer-mt translate`:
  one       sentences one at a time (what a one-request-at-a-time server runs)
  batch     batches of `--batch` sentences (what the server's batches of 32 requests run)

For each case the script first times the search without the profiler, counting
`Transformer.decode_step` calls, and splits the wall time into the model's steps
(`decode_step`: embeddings, layers, output projection) and everything else (the encoder once
per batch, log-softmax, top-k and the beam bookkeeping of `inference.search`). The fixed cost
of a step is the wall time per step of the `one` case. Then it runs the same search under
`torch.profiler` and prints the operators by self CPU time, per step; what the profiler does
not attribute to any operator ("outside torch ops": Python, module calls, argument parsing of
the dispatcher) is the wall time minus the sum of the operators' self times. The profiler
adds its own cost to every operator, so the profiled times are larger than the plain ones:
read its shares, not its milliseconds.

  python scripts/profile_decode.py --checkpoint /work/models/multi30k_d256.ckpt
  python scripts/profile_decode.py --checkpoint CKPT --quantize int8 --json runs/bench/prof.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from transformer_mt.data.corpus import default_data_dir
from transformer_mt.inference.loaded_model import LoadedModel, load_for_inference
from transformer_mt.inference.search import translate_lines
from transformer_mt.model.cpu_gemm import CPU_GEMMS, apply_cpu_gemm
from transformer_mt.model.quantize import quantize
from transformer_mt.textio import read_lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, metavar="CKPT")
    parser.add_argument("--one", type=int, default=50,
                        help="sentences of the one-at-a-time case")
    parser.add_argument("--source", help="sentences to translate, one per line (default: "
                        "the Multi30k test2016 English side)")
    parser.add_argument("--batch", type=int, default=32, help="sentences per batch")
    parser.add_argument("--batches", type=int, default=4, help="batches of the batch case")
    parser.add_argument("--beam", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quantize", choices=["int8"], default=None)
    parser.add_argument("--cpu-gemm", choices=CPU_GEMMS, default="auto")
    parser.add_argument("--top", type=int, default=15, help="operators listed per case")
    parser.add_argument("--json", default=None, metavar="FILE")
    return parser.parse_args(argv)


class StepClock:
    """Wraps `model.decode_step` to count the steps and the wall time spent inside them."""

    def __init__(self, loaded: LoadedModel) -> None:
        self.model = loaded.model
        self.steps, self.seconds = 0, 0.0
        inner = type(self.model).decode_step

        def timed(tokens: torch.Tensor, state: Any) -> torch.Tensor:
            start = time.perf_counter()
            out = inner(self.model, tokens, state)
            self.seconds += time.perf_counter() - start
            self.steps += 1
            return out

        self.model.decode_step = timed  # instance attribute: the class stays untouched

    def reset(self) -> None:
        self.steps, self.seconds = 0, 0.0


def run_case(loaded: LoadedModel, slices: list[list[str]], beam: int) -> Callable[[], None]:
    def go() -> None:
        for lines in slices:
            translate_lines(loaded, lines, batch_tokens=sys.maxsize, beam_size=beam)
    return go


def timing(go: Callable[[], None], clock: StepClock, repeats: int = 3) -> dict[str, float]:
    """Median of `repeats` runs: wall ms, steps, ms per step in and out of `decode_step`."""
    runs = []
    for _ in range(repeats):
        clock.reset()
        start = time.perf_counter()
        go()
        wall = time.perf_counter() - start
        runs.append({"wall_ms": wall * 1e3, "steps": clock.steps,
                     "step_ms": wall * 1e3 / clock.steps,
                     "model_ms_per_step": clock.seconds * 1e3 / clock.steps,
                     "search_ms_per_step": (wall - clock.seconds) * 1e3 / clock.steps})
    return sorted(runs, key=lambda r: r["wall_ms"])[len(runs) // 2]


def op_table(go: Callable[[], None], steps: int, top: int) -> dict[str, Any]:
    """Self CPU time per operator under torch.profiler, per decoding step."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        go()
        wall_us = (time.perf_counter() - start) * 1e6
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    total_ops = sum(e.self_cpu_time_total for e in events)
    rows = [{"op": e.key, "calls_per_step": e.count / steps,
             "us_per_step": e.self_cpu_time_total / steps,
             "share": e.self_cpu_time_total / wall_us} for e in events]
    return {"wall_us_per_step": wall_us / steps, "ops_us_per_step": total_ops / steps,
            "outside_us_per_step": (wall_us - total_ops) / steps,
            "op_calls_per_step": sum(e.count for e in events) / steps,
            "top": rows[:top], "rest_us_per_step": sum(r["us_per_step"] for r in rows[top:])}


def print_case(name: str, plain: dict[str, float], prof: dict[str, Any]) -> None:
    print(f"\n{name}: {plain['steps']} steps, {plain['wall_ms']:.0f} ms, "
          f"{plain['step_ms']:.3f} ms per step (model {plain['model_ms_per_step']:.3f}, "
          f"search and encoder {plain['search_ms_per_step']:.3f})")
    print(f"  under the profiler: {prof['wall_us_per_step']:.0f} us per step, "
          f"{prof['op_calls_per_step']:.0f} operator calls per step")
    print(f"  {'operator':<40} {'calls/step':>10} {'us/step':>9} {'share':>6}")
    for row in prof["top"]:
        print(f"  {row['op'][:40]:<40} {row['calls_per_step']:10.1f} "
              f"{row['us_per_step']:9.1f} {row['share']:6.1%}")
    print(f"  {'other operators':<40} {'':>10} {prof['rest_us_per_step']:9.1f} "
          f"{prof['rest_us_per_step'] / prof['wall_us_per_step']:6.1%}")
    print(f"  {'outside torch ops (Python, dispatch)':<40} {'':>10} "
          f"{prof['outside_us_per_step']:9.1f} "
          f"{prof['outside_us_per_step'] / prof['wall_us_per_step']:6.1%}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    source = args.source or str(default_data_dir() / "multi30k" / "test2016.en.xz")
    lines = read_lines(source)
    loaded = load_for_inference(args.checkpoint, "cpu")
    kernel = "int8"
    if args.quantize:
        quantize(loaded.model, args.quantize)
    else:
        kernel = apply_cpu_gemm(loaded.model, args.cpu_gemm)
    clock = StepClock(loaded)
    cases = {
        "one": [[line] for line in lines[: args.one]],
        "batch": [lines[i * args.batch : (i + 1) * args.batch] for i in range(args.batches)],
    }
    c = loaded.model.config
    load = os.getloadavg()[0]
    print(f"profile_decode: {args.checkpoint} (d_model {c.d_model}, {c.n_encoder_layers}+"
          f"{c.n_decoder_layers} layers, vocab {c.vocab_size}), beam {args.beam}, "
          f"{args.threads} threads, products {kernel}, torch {torch.__version__}; "
          f"load average {load:.2f}")
    results: dict[str, Any] = {"args": vars(args), "load_start": load, "kernel": kernel}
    for name, slices in cases.items():
        go = run_case(loaded, slices, args.beam)
        go()  # warm-up
        plain = timing(go, clock)
        prof = op_table(go, plain["steps"], args.top)
        label = (f"one sentence at a time ({len(slices)} sentences)" if name == "one" else
                 f"{len(slices)} batches of {args.batch} sentences")
        print_case(f"{label}, beam {args.beam}", plain, prof)
        results[name] = {"plain": plain, "profile": prof}
    results["load_end"] = os.getloadavg()[0]
    print(f"\n  load average {load:.2f} at start, {results['load_end']:.2f} at end")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
