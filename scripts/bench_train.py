"""Training throughput of our Transformer and of `transformers`' MarianMTModel, side by side.

Both models get the same dimensions (the `base` or `big` preset with a 32k shared vocabulary),
the same dropout, the same batches (real Multi30k sentence lengths, ~`--max-tokens` padded
tokens per side, bucketed as our trainer buckets them) and the same optimiser (fused Adam(0.9,
0.98, 1e-9) with the paper's schedule, exactly what `transformer-mt fit` builds). Each trains
with label smoothing eps 0.1 the way its toolkit does it:

  ours             `lit.TranslationModel._loss`, i.e. what `fit` runs minus Lightning's loop:
                   the output projection fused with the loss (`optim.label_smoothed_loss`)
  transformers     MarianMTModel logits + `LabelSmoother`, what Seq2SeqTrainer runs with
                   `label_smoothing_factor=0.1`
  transformers-ce  MarianMTModel logits + torch's `F.cross_entropy(label_smoothing=0.1)`, the
                   fastest loss a `transformers` user gets without writing one

Each model is measured in a fresh child process, so the peak memory (CPU: RSS high-water mark
from getrusage; CUDA: torch.cuda.max_memory_allocated) is that model's alone and neither run
inherits the other's allocator caches. `--rounds R` alternates ours / transformers R times,
which spreads the noise of a shared machine over both.

Figures: target tokens/s = non-padding target tokens of a step / that step's wall time,
median over the measured steps (after `--warmup` unmeasured ones).

MFU (CUDA only) = achieved FLOP/s / the GPU's dense bf16 peak (`PEAK_BF16_TFLOPS`), where the
FLOPs of a step count multiply-adds as 2 FLOPs, forward + backward = 3x forward:
  6 * (P_enc * S + (P_dec + d * V) * T)                    parameter matmuls
  + 12 * d * (L_enc * sum s^2 + L_dec * sum (t^2 + t * s))  attention scores and weighted sums
with S, T the real (non-padding) source and target tokens of the batch, s, t per-sentence
lengths, P_enc / P_dec the encoder / decoder parameters without embeddings (LayerNorms and
biases included, negligible), d * V the output projection (the tied embedding matrix, a real
matmul per target token). Causal self-attention is counted as a full square, as usual.

  python scripts/bench_train.py                       # CPU, 2 threads, quick (few steps)
  python scripts/bench_train.py --steps 20 --rounds 1 # a reportable CPU figure
  python scripts/bench_train.py --device cuda --precision bf16-mixed --max-tokens 25000
  python scripts/bench_train.py --device cuda --precision bf16-mixed --max-tokens 25000 \
      --synthetic --preset big --systems ours,transformers --profile-top 15

`--synthetic` draws the batches without a corpus or a tokenizer: random ids, with sentence
lengths of WMT14 en-de's shape under a 32k-37k BPE vocabulary (log-normal, median 25
subwords, capped at 128; targets 0.9-1.3x their source), bucketed as real ones are.
`--profile-top N` also runs two more steps of `ours` under torch.profiler and prints (and
writes to --json) its N most expensive operators by self device (CUDA) or CPU time.

`--precision bf16-mixed` autocasts both models to bfloat16 (on CPU too, where AMX or
AVX512-BF16 makes it worthwhile); the loss is computed in float32 either way.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from transformer_mt.config import PAD_ID, TransformerConfig
from transformer_mt.data.batching import EncodedPairs, collate, make_batches
from transformer_mt.data.corpus import default_data_dir, read_corpora
from transformer_mt.data.tokenizer import train_tokenizer

# Dense (no sparsity) bf16 tensor-core peaks from NVIDIA's data sheets, TFLOP/s; matched
# against torch.cuda.get_device_name in this order (the more specific names first).
PEAK_BF16_TFLOPS: list[tuple[str, float]] = [
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.4),  # SXM
    ("H200", 989.4),
    ("GH200", 989.4),
    ("A100", 312.0),
]
# transformers: Seq2SeqTrainer's label smoothing (LabelSmoother); transformers-ce: the same
# model with torch's F.cross_entropy(label_smoothing=0.1), the fastest stock loss.
SYSTEMS = ("ours", "transformers", "transformers-ce")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=["tiny", "base", "big"], default="base",
                        help="tiny: for dry runs of the script")
    parser.add_argument("--vocab-size", type=int, default=32000,
                        help="shared vocabulary (embedding rows and softmax width)")
    parser.add_argument("--steps", type=int, default=6, help="measured steps per model and round")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured steps first")
    parser.add_argument("--rounds", type=int, default=1,
                        help="alternate ours/transformers this many times")
    parser.add_argument("--max-tokens", type=int, default=4000,
                        help="padded tokens per batch (the longer side), as data.max_tokens")
    parser.add_argument("--corpus", default="multi30k/train.{lang}.xz",
                        help="where the sentence lengths come from (relative to the data dir)")
    parser.add_argument("--data-dir", default=None,
                        help="default $TRANSFORMER_MT_DATA or ../shared/data")
    parser.add_argument("--spm-cache", default=".cache/transformer-mt",
                        help="sentencepiece cache (shared with `fit`)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--precision", choices=["32-true", "bf16-mixed"], default="32-true")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--systems", default=",".join(SYSTEMS),
                        help=f"comma-separated, from {','.join(SYSTEMS)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--synthetic", action="store_true",
                        help="WMT-length batches of random ids instead of --corpus")
    parser.add_argument("--profile-top", type=int, default=0, metavar="N",
                        help="also profile two steps of ours and list the top N operators")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write results here")
    args = parser.parse_args(argv)
    args.systems = args.systems.split(",")
    if not set(args.systems) <= set(SYSTEMS):
        parser.error(f"unknown systems {sorted(set(args.systems) - set(SYSTEMS))}")
    if args.steps < 1 or args.warmup < 0 or args.rounds < 1:
        parser.error("--steps and --rounds must be >= 1, --warmup >= 0")
    return args


def model_config(preset: str, vocab_size: int) -> TransformerConfig:
    return TransformerConfig.preset(preset, vocab_size=vocab_size)


def synthetic_pairs(args: argparse.Namespace, rng: np.random.Generator) -> EncodedPairs:
    """Random ids with sentence lengths of WMT14 en-de's shape (module docstring)."""
    n = max(4000, 4 * (args.warmup + args.steps) * args.max_tokens // 25)
    src_len = np.clip(np.rint(np.exp(rng.normal(np.log(25), 0.6, n))), 1, 128).astype(int)
    tgt_len = np.clip(np.rint(src_len * rng.uniform(0.9, 1.3, n)), 1, 128).astype(int)
    ids = rng.integers(4, args.vocab_size, int(src_len.sum() + tgt_len.sum()))
    cuts = np.cumsum(np.concatenate([src_len, tgt_len]))[:-1]
    pieces = [p.tolist() for p in np.split(ids, cuts)]
    return EncodedPairs.from_lists(pieces[:n], pieces[n:])


def make_step_batches(args: argparse.Namespace) -> list[dict[str, torch.Tensor]]:
    """warmup + steps batches of real (or `--synthetic`) sentences, bucketed by length as
    training does, drawn at random (seeded) from all the corpus' batches, so short and long
    buckets both occur."""
    rng = np.random.default_rng(args.seed)
    if args.synthetic:
        pairs = synthetic_pairs(args, rng)
    else:
        data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
        text = read_corpora([args.corpus], "en", "de", data_dir)
        tokenizer = train_tokenizer((line for side in (text.src, text.tgt) for line in side),
                                    vocab_size=8000, cache_dir=args.spm_cache)
        pairs = EncodedPairs.from_lists(tokenizer.encode(text.src), tokenizer.encode(text.tgt))
    batches = make_batches(pairs.src_lengths, pairs.tgt_lengths, args.max_tokens, rng)
    chosen = rng.choice(len(batches), size=args.warmup + args.steps, replace=False)
    return [collate(pairs.batch(batches[b])) for b in chosen]


def flops_per_step(config: TransformerConfig, batch: dict[str, torch.Tensor],
                   p_enc: int, p_dec: int) -> float:
    """Training FLOPs of one step (module docstring)."""
    s = batch["src"].ne(PAD_ID).sum(1).double()
    t = batch["tgt_out"].ne(PAD_ID).sum(1).double()
    d, vocab = config.d_model, config.vocab_size
    params = 6 * (p_enc * s.sum() + (p_dec + d * vocab) * t.sum())
    attention = 12 * d * (config.n_encoder_layers * (s * s).sum()
                          + config.n_decoder_layers * (t * t + t * s).sum())
    return float(params + attention)


def peak_tflops(device_name: str) -> float | None:
    for key, value in PEAK_BF16_TFLOPS:
        if key in device_name:
            return value
    return None


def rss_mib() -> float:
    """Current resident set size (Linux /proc), MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Trainee:
    """A model, its loss function (batch -> loss_sum, nll_sum, n_tokens), and the encoder /
    decoder parameter counts the FLOP formula needs."""

    model: torch.nn.Module
    loss: Any
    p_enc: int
    p_dec: int


def build(system: str, preset: str, config: TransformerConfig, device: torch.device
          ) -> Trainee:
    """Our LightningModule's model and loss, or a MarianMTModel of the same shape with the same
    loss. Both are initialised from the same seed (the values do not matter for speed)."""
    torch.manual_seed(0)
    if system == "ours":
        from transformer_mt.training.translation_model import TranslationModel

        lit = TranslationModel(preset=preset, vocab_size=config.vocab_size)
        assert lit.config == config, (lit.config, config)
        lit.to(device).train()
        model = lit.model
        p_enc = sum(p.numel() for p in model.encoder_layers.parameters())
        p_dec = sum(p.numel() for p in model.decoder_layers.parameters())
        return Trainee(lit, lit._loss, p_enc, p_dec)

    from transformers import MarianConfig, MarianMTModel
    from transformers.trainer_pt_utils import LabelSmoother

    from transformer_mt.exporters.marian import marian_config_kwargs

    hf = MarianMTModel(MarianConfig(**marian_config_kwargs(config))).to(device).train()
    # What Seq2SeqTrainer(label_smoothing_factor=0.1) computes; its mean times the token count
    # is the same sum as ours.
    smoother = LabelSmoother(epsilon=0.1, ignore_index=PAD_ID)

    def loss(batch: dict[str, torch.Tensor]):
        logits = hf(input_ids=batch["src"], attention_mask=batch["src"].ne(PAD_ID),
                    decoder_input_ids=batch["tgt_in"]).logits
        target = batch["tgt_out"]
        n_tokens = target.ne(PAD_ID).sum()
        if system == "transformers-ce":
            return F.cross_entropy(logits.flatten(0, 1).float(), target.flatten(),
                                   ignore_index=PAD_ID, label_smoothing=0.1,
                                   reduction="sum"), None, n_tokens
        return smoother({"logits": logits}, target) * n_tokens, None, n_tokens

    p_enc = sum(p.numel() for p in hf.model.encoder.layers.parameters())
    p_dec = sum(p.numel() for p in hf.model.decoder.layers.parameters())
    return Trainee(hf, loss, p_enc, p_dec)


def train_step(loss: Any, batches: list[dict[str, torch.Tensor]], optimizer: torch.optim.Optimizer,
               scheduler: Any, autocast: Any) -> int:
    """One optimizer step as `fit` computes it, without Lightning: the loss of each
    micro-batch, backward of its sum over the step's target tokens, the Adam update, the LR
    schedule, zero_grad. Returns the step's target tokens (`scripts/bench_fit.py` runs it
    too)."""
    tokens = sum(int(b["tgt_out"].ne(PAD_ID).sum()) for b in batches)
    for batch in batches:
        with autocast:
            loss_sum, _, _ = loss(batch)
        (loss_sum / tokens).backward()
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return tokens


def measure(system: str, args: argparse.Namespace, batches: list[dict[str, torch.Tensor]]
            ) -> dict[str, Any]:
    """Runs in a child process: build, warm up, time `args.steps` training steps."""
    from transformer_mt.training.optimizer import make_optimizer

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    config = model_config(args.preset, args.vocab_size)
    batches = [{k: v.to(device) for k, v in b.items()} for b in batches]
    rss_before = rss_mib()
    trainee = build(system, args.preset, config, device)
    optimizer, scheduler = make_optimizer(
        trainee.model.parameters(), config.d_model, warmup_steps=4000,
        fused=True,  # as TranslationModel.configure_optimizers on CPU and CUDA
    )
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16)
                if args.precision == "bf16-mixed" else nullcontext())
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times, tokens, flops = [], [], []
    for i, batch in enumerate(batches):
        if i == args.warmup and device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        sync()
        start = time.perf_counter()
        n_tokens = train_step(trainee.loss, [batch], optimizer, scheduler, autocast)
        sync()
        elapsed = time.perf_counter() - start
        if i >= args.warmup:
            times.append(elapsed)
            tokens.append(n_tokens)
            flops.append(flops_per_step(config, batch, trainee.p_enc, trainee.p_dec))
    result: dict[str, Any] = {
        "system": system,
        "params": sum(p.numel() for p in trainee.model.parameters()),
        "step_s": times, "tgt_tokens": tokens, "flops": flops,
        "attn_implementation": getattr(getattr(trainee.model, "config", None),
                                       "_attn_implementation", "sdpa (ours)"),
    }
    if args.profile_top and system == "ours":
        def last_two() -> list[int]:
            return [train_step(trainee.loss, [b], optimizer, scheduler, autocast)
                    for b in batches[-2:]]
        result["profile"] = profile_table(last_two, device, args.profile_top)
    if device.type == "cuda":
        result["peak_mem_mib"] = torch.cuda.max_memory_allocated() / 2**20
        result["device_name"] = torch.cuda.get_device_name()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        result["peak_mem_mib"] = peak
        result["peak_mem_over_start_mib"] = peak - rss_before
        result["device_name"] = platform.processor() or "cpu"
    return result


def profile_table(run: Any, device: torch.device, top: int) -> str:
    """torch.profiler's table of the `top` operators by self time on `device` over `run()`."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        run()
        if device.type == "cuda":
            torch.cuda.synchronize()
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=sort, row_limit=top, max_name_column_width=50)


def tokens_per_s(run: dict[str, Any]) -> float:
    """Median over the run's measured steps of target tokens / step time."""
    return statistics.median(n / t for n, t in zip(run["tgt_tokens"], run["step_s"],
                                                   strict=True))


def summarise(runs: list[dict[str, Any]], device: str) -> dict[str, Any]:
    """One system: the median of its rounds' medians (a round = one fresh process)."""
    summary = {
        "tokens_per_s": statistics.median(tokens_per_s(run) for run in runs),
        "rounds_tokens_per_s": [tokens_per_s(run) for run in runs],
        "step_s_median": statistics.median(t for run in runs for t in run["step_s"]),
        "peak_mem_mib": max(run["peak_mem_mib"] for run in runs),
        "params": runs[0]["params"],
        "attn_implementation": runs[0]["attn_implementation"],
    }
    if device == "cuda":
        tflops = [f / t / 1e12 for run in runs for f, t in zip(run["flops"], run["step_s"],
                                                                 strict=True)]
        summary["tflops_median"] = statistics.median(tflops)
        peak = peak_tflops(runs[0]["device_name"])
        summary["mfu"] = summary["tflops_median"] / peak if peak else None
        summary["device_name"] = runs[0]["device_name"]
    else:
        summary["peak_mem_over_start_mib"] = max(r["peak_mem_over_start_mib"] for r in runs)
    return summary


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_train: --device cuda but no CUDA device is available", file=sys.stderr)
        return 2
    import transformers

    batches = make_step_batches(args)
    load_start = os.getloadavg()
    systems = args.systems
    context = multiprocessing.get_context("spawn")  # a clean process (and RSS) per run
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in systems}
    wall = time.perf_counter()
    for round_ in range(args.rounds):
        for system in systems:
            # An executor, not a Pool: if the child dies (killed, out of memory), result()
            # raises BrokenProcessPool instead of waiting forever.
            with ProcessPoolExecutor(1, mp_context=context) as executor:
                load = os.getloadavg()[0]
                run = executor.submit(measure, system, args, batches).result()
            run["load"] = [load, os.getloadavg()[0]]
            runs[system].append(run)
            print(f"  round {round_ + 1} {system}: {tokens_per_s(run):.1f} tgt tok/s, load "
                  f"{run['load'][0]:.2f} -> {run['load'][1]:.2f}", file=sys.stderr, flush=True)
    wall = time.perf_counter() - wall
    load_end = os.getloadavg()

    measured = batches[args.warmup:]
    real_src = sum(int(b["src"].ne(PAD_ID).sum()) for b in measured)
    padded_src = sum(b["src"].numel() for b in measured)
    real_tgt = sum(int(b["tgt_out"].ne(PAD_ID).sum()) for b in measured)
    threads = f" ({args.threads} threads)" if args.device == "cpu" else ""
    print(f"bench_train: preset {args.preset}, vocab {args.vocab_size}, device {args.device}"
          f"{threads}, precision {args.precision}")
    print(f"  torch {torch.__version__}, transformers {transformers.__version__}, "
          f"python {platform.python_version()}")
    print(f"  {args.steps} measured steps x {args.rounds} round(s) after {args.warmup} warm-up; "
          f"batches: {real_tgt / len(measured):.0f} target / {real_src / len(measured):.0f} "
          f"source tokens on average ({padded_src / len(measured):.0f} padded source)")
    summary = {s: summarise(runs[s], args.device) for s in systems}
    for system in systems:
        s = summary[system]
        line = (f"  {system:<15} {s['tokens_per_s']:8.1f} tgt tok/s (rounds: "
                f"{', '.join(f'{x:.0f}' for x in s['rounds_tokens_per_s'])})  step "
                f"{s['step_s_median']:.3f} s  peak mem {s['peak_mem_mib']:.0f} MiB")
        if args.device == "cpu":
            line += f" (+{s['peak_mem_over_start_mib']:.0f} over start)"
        else:
            mfu = f"{100 * s['mfu']:.1f}%" if s["mfu"] is not None else "n/a (unknown GPU)"
            line += f"  {s['tflops_median']:.1f} TFLOP/s  MFU {mfu} ({s['device_name']})"
        line += f"  [{s['params'] / 1e6:.1f}M params, attention {s['attn_implementation']}]"
        print(line)
    if "profile" in runs.get("ours", [{}])[-1]:
        print(f"  ours under torch.profiler, two steps:\n{runs['ours'][-1]['profile']}")
    for other in [s for s in systems if s != "ours"] if "ours" in systems else []:
        ratio = summary["ours"]["tokens_per_s"] / summary[other]["tokens_per_s"]
        rounds = [a / b for a, b in zip(summary["ours"]["rounds_tokens_per_s"],
                                        summary[other]["rounds_tokens_per_s"], strict=True)]
        summary[f"ratio_{other}"] = {"median": ratio, "rounds": rounds}
        print(f"  ratio ours / {other}: {ratio:.2f}x (per round: "
              f"{', '.join(f'{r:.2f}' for r in rounds)})")
    print(f"  load average {load_start[0]:.2f} at start, {load_end[0]:.2f} at end; "
          f"wall {wall:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"args": vars(args), "summary": summary, "runs": runs,
             "load_avg": [load_start, load_end]}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
