"""Time of one validation step's loss, as Lightning's validation loop runs it.

`TranslationModel.validation_step` under `torch.inference_mode()` with `val_bleu_sentences=0`
(no decoding), on the `configs/multi30k.yaml` model (d_model 256, 3+3 layers, 4 heads, d_ff
1024, vocabulary 8k) and a batch of random ids, 128 sentences x 16 tokens per side. What it
shows: whether validation does gradient work it does not need (issue 17, item 1), since the
output projection's weight is a Parameter that requires grad.

Prints the median wall time and the median CPU time of the process (both threads) per step,
and the 1-minute load average at the start and the end: on a shared machine the CPU time is
the steadier of the two.

  python scripts/bench_validation.py
  PYTHONPATH=/path/to/other/checkout/src python scripts/bench_validation.py   # another version
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from transformer_mt.training.translation_model import TranslationModel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="measured steps")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured steps first")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    load_start = os.getloadavg()[0]
    model = TranslationModel(preset="base", vocab_size=8000, d_model=256, n_heads=4, d_ff=1024,
                             n_encoder_layers=3, n_decoder_layers=3,
                             val_bleu_sentences=0).eval()
    src, tgt = torch.randint(4, 8000, (2, 128, 16))
    batch = {"src": src, "tgt_in": tgt, "tgt_out": tgt, "index": torch.arange(128)}
    model.on_validation_epoch_start()
    wall, cpu = [], []
    with torch.inference_mode():  # what Lightning's validation loop runs under
        for step in range(args.warmup + args.steps):
            started, cpu_started = time.perf_counter(), time.process_time()
            model.validation_step(batch, step)
            wall.append(time.perf_counter() - started)
            cpu.append(time.process_time() - cpu_started)
    print(f"validation_step, 2,048 target tokens, median of {args.steps} steps: "
          f"wall {1e3 * statistics.median(wall[args.warmup:]):.0f} ms, "
          f"CPU {1e3 * statistics.median(cpu[args.warmup:]):.0f} ms; "
          f"{args.threads} threads; load average {load_start:.2f} -> {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
