"""Float32 CPU matrix-product speed: torch's default `F.linear` (MKL) against oneDNN.

`translate --cpu-gemm auto` uses oneDNN on non-Intel CPUs (model/cpu_gemm.py); this measures
why, on the shapes of decoding a d_model-256 model: rows = sentences x beams in a batch, and
the attention, feed-forward and 8k-vocabulary output projections. Prints GFLOP/s per shape
(median of --repeats timings of --calls calls each) and the ratio.

  python scripts/bench_gemm.py --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from transformer_mt.model.cpu_gemm import cpu_vendor, onednn_linear

# (rows, in_features, out_features)
SHAPES = [(400, 256, 768), (400, 256, 256), (400, 256, 1024), (400, 1024, 256),
          (400, 256, 8000), (40, 256, 1024), (40, 256, 8000)]


def seconds_per_call(fn: Callable[..., torch.Tensor], inputs: tuple[torch.Tensor, ...],
                     calls: int, repeats: int) -> float:
    fn(*inputs)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn(*inputs)
        times.append((time.perf_counter() - start) / calls)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if not torch.backends.mkldnn.is_available():
        print("bench_gemm: this torch build has no oneDNN", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    print(f"bench_gemm: torch {torch.__version__}, CPU vendor {cpu_vendor() or 'unknown'}, "
          f"{args.threads} thread(s), median of {args.repeats} x {args.calls} calls")
    print(f"  {'rows x in x out':>18}  {'default GF/s':>12}  {'oneDNN GF/s':>11}  ratio")
    for rows, d_in, d_out in SHAPES:
        inputs = (torch.randn(rows, d_in), torch.randn(d_out, d_in), torch.randn(d_out))
        torch.testing.assert_close(onednn_linear(*inputs), F.linear(*inputs),
                                   rtol=1e-4, atol=1e-3)
        flops = 2 * rows * d_in * d_out
        default = flops / seconds_per_call(F.linear, inputs, args.calls, args.repeats)
        fast = flops / seconds_per_call(onednn_linear, inputs, args.calls, args.repeats)
        print(f"  {f'{rows} x {d_in} x {d_out}':>18}  {default / 1e9:12.1f}  {fast / 1e9:11.1f}"
              f"  {fast / default:5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
