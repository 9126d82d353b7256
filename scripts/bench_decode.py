"""Translation speed of one checkpoint in our `translate` path, `transformers` and CTranslate2.

The checkpoint is exported once with `transformer-mt export` (its parity checks included) to a
Marian model for `transformers` and a CTranslate2 model, so all systems run the SAME weights:

  ours          inference.search.translate_lines (what `transformer-mt translate` runs), with its
                `--cpu-gemm` choice (auto: oneDNN products on non-Intel CPUs)
  ours-int8     the same after `--quantize int8` (dynamic int8 nn.Linear; CPU only)
  transformers  MarianMTModel.generate on the export, MarianTokenizer in and out
  ct2-float32   ctranslate2.Translator(compute_type="float32"), sentencepiece pieces in and out
  ct2-int8      the same with compute_type="int8" (weights quantized when loaded)
  ct2-bfloat16  compute_type="bfloat16", for GPU runs (ours and transformers autocast to bf16)

Batching is identical for all: the sentences are sorted by source length and cut into the
batches our `translate` would make (`--batch-tokens`, padded source tokens), or into batches
of `--batch-size` sentences; every system gets the same batches in the same order, one call
each (CTranslate2 with max_batch_size=0, so it does not re-batch). Times are text in, text out
(tokenization included, model loading excluded), after one warm-up batch per system, and
systems alternate within each of `--repeats` passes so that load on a shared machine spreads
over all of them; the reported figure is the median pass, and with it the median time of one
batch in that pass ("p50 ms": with `--batch-size 1`, the latency of one sentence).

Search settings are aligned as docs/export.md describes: beam `--beam`, early stopping at K
finished hypotheses, PAD and BOS never generated, length limit floor(src_len + 50) tokens
(transformers/CTranslate2 take one limit per batch: its longest sentence's). The length
penalty has the same alpha everywhere but not the same form (ours GNMT, theirs len^alpha), so
beam outputs may differ on a few sentences; greedy outputs must be identical.

  python scripts/bench_decode.py --checkpoint runs/multi30k/checkpoints/last.ckpt
  python scripts/bench_decode.py --checkpoint CKPT --limit 100 --beam 1 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from transformer_mt.commands import export
from transformer_mt.data.corpus import default_data_dir
from transformer_mt.inference.loaded_model import LoadedModel, load_for_inference
from transformer_mt.inference.search import _token_batches, translate_lines
from transformer_mt.model.cpu_gemm import CPU_GEMMS, apply_cpu_gemm, cpu_vendor
from transformer_mt.textio import read_lines

ALL_SYSTEMS = ("ours", "ours-int8", "transformers", "ct2-float32", "ct2-int8", "ct2-bfloat16")
DEFAULT_SYSTEMS = {"cpu": "ours,ours-int8,transformers,ct2-float32,ct2-int8",
                   "cuda": "ours,transformers,ct2-float32,ct2-bfloat16,ct2-int8"}
MAX_LEN_A, MAX_LEN_B = 1.0, 50  # our `translate` defaults


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, metavar="CKPT")
    parser.add_argument("--source", default=None,
                        help="source text (default: DATA/multi30k/test2016.en.xz)")
    parser.add_argument("--reference", default=None,
                        help="reference translations for BLEU (default with the default "
                        "source: DATA/multi30k/test2016.de.xz; none otherwise)")
    parser.add_argument("--limit", type=int, default=None, help="first N sentences only")
    parser.add_argument("--beam", type=int, nargs="+", default=[4, 1],
                        help="beam sizes to measure (1 = greedy)")
    parser.add_argument("--length-penalty", type=float, default=0.6)
    parser.add_argument("--systems", default=None,
                        help=f"comma-separated, from {','.join(ALL_SYSTEMS)} (default: "
                        f"{DEFAULT_SYSTEMS['cpu']}; on CUDA {DEFAULT_SYSTEMS['cuda']})")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--batch-tokens", type=int, default=4096,
                      help="padded source tokens per batch (our translate's default)")
    size.add_argument("--batch-size", type=int, default=None, help="sentences per batch")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per system")
    parser.add_argument("--threads", type=int, default=2,
                        help="torch threads and CTranslate2 intra_threads")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--cpu-gemm", choices=CPU_GEMMS, default="auto",
                        help="ours in float32 on CPU: as `translate --cpu-gemm`")
    parser.add_argument("--export-dir", default="runs/bench/exports",
                        help="exports are cached here, keyed by checkpoint name and mtime")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write results here")
    args = parser.parse_args(argv)
    args.systems = args.systems or DEFAULT_SYSTEMS[args.device]
    unknown = set(args.systems.split(",")) - set(ALL_SYSTEMS)
    if unknown:
        parser.error(f"unknown systems {sorted(unknown)}; choose from {ALL_SYSTEMS}")
    if args.device == "cuda" and "ours-int8" in args.systems.split(","):
        parser.error("ours-int8 (dynamic int8 quantization) runs on the CPU only")
    if args.repeats < 1 or min(args.beam) < 1:
        parser.error("--repeats and --beam must be >= 1")
    return args


def ctranslate2_missing(device: str) -> str | None:
    """Why CTranslate2 cannot run on `device` here (not installed, or a build without CUDA),
    or None when it can: its systems are then left out with that note, not faked."""
    try:
        import ctranslate2
    except ImportError as exc:
        return f"ctranslate2 is not installed ({exc})"
    if device == "cuda" and ctranslate2.get_cuda_device_count() == 0:
        return f"ctranslate2 {ctranslate2.__version__} sees no CUDA device"
    return None


def exports_for(checkpoint: Path, root: Path, targets: Sequence[str] = ("hf", "ctranslate2")
                ) -> tuple[Path, Path]:
    """The checkpoint's Hugging Face and CTranslate2 exports (those of `targets`), made (and
    checked by `export` against the checkpoint's own logits) when not already cached."""
    stat = checkpoint.stat()
    base = root / f"{checkpoint.stem}-{stat.st_size}-{int(stat.st_mtime)}"
    base.mkdir(parents=True, exist_ok=True)
    dirs = (base / "hf", base / "ct2")
    for target, out in zip(("hf", "ctranslate2"), dirs, strict=True):
        if target in targets and not (out / "config.json").is_file():
            export.run(argparse.Namespace(checkpoint=str(checkpoint), to=target, out=str(out),
                                          force=True, quantization=None))
    return dirs


def length_limit(n_source_tokens: int, max_positions: int) -> int:
    """Our per-sentence limit (inference.search.max_lengths) for a source of this many ids,
    EOS included."""
    return min(math.floor(MAX_LEN_A * n_source_tokens + MAX_LEN_B), max_positions - 1)


def plan_batches(lengths: Sequence[int], batch_tokens: int, batch_size: int | None
                 ) -> list[list[int]]:
    """Our translate's batches (longest first, padded tokens <= budget), or fixed-size batches
    in the same length order."""
    if batch_size is None:
        return _token_batches(lengths, batch_tokens)
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


@dataclass
class Output:
    texts: list[str]
    ids: list[list[int]]  # generated target ids, EOS and specials excluded

    @property
    def tokens(self) -> int:
        return sum(map(len, self.ids))


@dataclass
class System:
    """A translator of one batch of raw lines, with a label for the tables."""

    name: str
    translate: Callable[[list[str], int], Output]  # (lines, beam) -> output
    results: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # beam -> passes


def ours(loaded: LoadedModel, name: str, length_penalty: float, device: str) -> System:
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda"
                else nullcontext())

    def run(lines: list[str], beam: int) -> Output:
        with autocast:
            result = translate_lines(loaded, lines, batch_tokens=sys.maxsize, beam_size=beam,
                                     length_penalty=length_penalty, max_len_a=MAX_LEN_A,
                                     max_len_b=MAX_LEN_B)
        best = [h[0].tokens for h in result.hypotheses]
        return Output(loaded.tokenizer.decode(best), best)

    return System(name, run)


def hugging_face(hf_dir: Path, length_penalty: float, device: str) -> System:
    from transformers import MarianMTModel, MarianTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # no per-call notes on max_new_tokens vs max_length
    hf_logging.disable_progress_bar()
    model = MarianMTModel.from_pretrained(hf_dir).to(device).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sacremoses is recommended but unused
        tokenizer = MarianTokenizer.from_pretrained(hf_dir)
    max_positions = model.config.max_position_embeddings
    special = set(tokenizer.all_special_ids)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda"
                else nullcontext())

    def run(lines: list[str], beam: int) -> Output:
        batch = tokenizer(lines, return_tensors="pt", padding=True).to(device)
        longest = int(batch["attention_mask"].sum(1).max())
        # Beam options only with a beam: greedy search warns that it ignores them.
        search = ({"num_beams": beam, "length_penalty": length_penalty, "early_stopping": True}
                  if beam > 1 else {"num_beams": 1})
        with torch.inference_mode(), autocast:
            out = model.generate(**batch, **search, do_sample=False,
                                 max_new_tokens=length_limit(longest, max_positions) + 1)
        ids = [[t for t in row if t not in special] for row in out.tolist()]
        return Output(tokenizer.batch_decode(out, skip_special_tokens=True), ids)

    return System("transformers", run)


def ctranslate2_system(ct2_dir: Path, loaded: LoadedModel, compute_type: str,
                       length_penalty: float, threads: int, device: str) -> System:
    import ctranslate2

    translator = ctranslate2.Translator(str(ct2_dir), device=device, compute_type=compute_type,
                                        intra_threads=threads, inter_threads=1)
    sp = loaded.tokenizer.sp
    max_positions = loaded.model.config.max_positions

    def run(lines: list[str], beam: int) -> Output:
        pieces = sp.encode(lines, out_type=str)
        longest = max(map(len, pieces)) + 1  # the model appends EOS
        results = translator.translate_batch(
            pieces, beam_size=beam, length_penalty=length_penalty, max_batch_size=0,
            max_decoding_length=length_limit(longest, max_positions),
            suppress_sequences=[["<pad>"], ["<s>"]],  # as ours (docs/export.md)
            min_decoding_length=0,  # CTranslate2's default, 1, forbids an empty translation
        )
        hyps = [r.hypotheses[0] for r in results]
        return Output([sp.decode_pieces(h) for h in hyps],
                      [[sp.piece_to_id(p) for p in h] for h in hyps])

    return System(f"ct2-{compute_type}", run)


def build_systems(args: argparse.Namespace, loaded: LoadedModel) -> list[System]:
    wanted = args.systems.split(",")
    if any(name.startswith("ct2-") for name in wanted) and (
            why := ctranslate2_missing(args.device)):
        print(f"bench_decode: CTranslate2 left out: {why}", file=sys.stderr)
        wanted = [name for name in wanted if not name.startswith("ct2-")]
    targets = ["hf"] + (["ctranslate2"] if any(n.startswith("ct2-") for n in wanted) else [])
    systems = []
    hf_dir, ct2_dir = exports_for(Path(args.checkpoint), Path(args.export_dir), targets)
    for name in wanted:
        if name == "ours":
            systems.append(ours(loaded, name, args.length_penalty, args.device))
        elif name == "ours-int8":
            from transformer_mt.model.quantize import quantize

            quantized = load_for_inference(args.checkpoint, args.device)
            quantize(quantized.model, "int8")
            systems.append(ours(quantized, name, args.length_penalty, args.device))
        elif name == "transformers":
            systems.append(hugging_face(hf_dir, args.length_penalty, args.device))
        else:
            systems.append(ctranslate2_system(ct2_dir, loaded, name.removeprefix("ct2-"),
                                              args.length_penalty, args.threads, args.device))
    return systems


def timed_pass(system: System, lines: list[str], batches: list[list[int]], beam: int
               ) -> dict[str, Any]:
    """Translate every batch once; per-batch (source length, sentences, seconds) kept for
    plots, outputs in input order."""
    texts: list[str] = [""] * len(lines)
    ids: list[list[int]] = [[] for _ in lines]
    tokens, per_batch = 0, []
    start = time.perf_counter()
    for batch in batches:
        batch_start = time.perf_counter()
        out = system.translate([lines[i] for i in batch], beam)
        per_batch.append([len(batch), time.perf_counter() - batch_start])
        tokens += out.tokens
        for i, text, hyp in zip(batch, out.texts, out.ids, strict=True):
            texts[i], ids[i] = text, hyp
    return {"seconds": time.perf_counter() - start, "tokens": tokens, "texts": texts, "ids": ids,
            "per_batch": per_batch, "load": os.getloadavg()[0]}


def measure(systems: list[System], lines: list[str], batches: list[list[int]], beam: int,
            repeats: int) -> None:
    """Warm up every system on the first (longest) batch, then alternate timed passes."""
    for system in systems:
        system.translate([lines[i] for i in batches[0]], beam)
    for _ in range(repeats):
        for system in systems:
            system.results.setdefault(beam, []).append(timed_pass(system, lines, batches, beam))


def median_pass(passes: list[dict[str, Any]]) -> dict[str, Any]:
    return sorted(passes, key=lambda p: p["seconds"])[len(passes) // 2]


def report(systems: list[System], beam: int, limits: list[int], references: list[str] | None
           ) -> dict[str, Any]:
    """Print one table for a beam size; returns its figures.

    Agreement is counted twice: identical texts, and identical ids within our per-sentence
    length limit (`limits`): transformers and CTranslate2 take one limit per batch, so a
    sentence that runs into the limit (a degenerate repetition) stops later there."""
    n_lines = len(limits)
    from transformer_mt.scoring.metrics import score

    rows: dict[str, Any] = {}
    for system in systems:
        best = median_pass(system.results[beam])
        rows[system.name] = {
            "seconds": best["seconds"], "sent_per_s": n_lines / best["seconds"],
            "tok_per_s": best["tokens"] / best["seconds"],
            "all_seconds": [p["seconds"] for p in system.results[beam]],
            "batch_ms_p50": 1e3 * statistics.median(t for _, t in best["per_batch"]),
            "load": [p["load"] for p in system.results[beam]],
            "texts": best["texts"], "ids": best["ids"],
        }
        if references is not None:
            bleu = score(best["texts"], [references], metrics=("bleu",))["bleu"]
            rows[system.name]["bleu"], rows[system.name]["bleu_signature"] = \
                bleu["score"], bleu["signature"]
    title = "greedy" if beam == 1 else f"beam {beam}"
    print(f"\n{title}: {n_lines} sentences, median of {len(systems[0].results[beam])} passes")
    print(f"  {'system':<13} {'sent/s':>8} {'tok/s':>8} {'seconds':>8} {'p50 ms':>7}  "
          f"{'vs transformers':>15} {'vs ct2-float32':>14}  {'BLEU':>5}  "
          "identical to transformers, to ours (within length limit)")
    for name, row in rows.items():
        ratios = []
        for other in ("transformers", "ct2-float32"):
            ratios.append(f"{row['sent_per_s'] / rows[other]['sent_per_s']:.2f}x"
                          if other in rows else "-")
        same = []
        for other in ("transformers", "ours"):
            if other in rows:
                n = sum(a == b for a, b in zip(row["texts"], rows[other]["texts"], strict=True))
                within = sum(a[:lim] == b[:lim] for a, b, lim in zip(
                    row["ids"], rows[other]["ids"], limits, strict=True))
                same.append(f"{n:>4} ({within:>4})")
                row[f"identical_to_{other}"] = n
                row[f"identical_within_limit_to_{other}"] = within
            else:
                same.append("-")
        bleu = f"{row['bleu']:5.2f}" if "bleu" in row else "    -"
        print(f"  {name:<13} {row['sent_per_s']:8.1f} {row['tok_per_s']:8.0f} "
              f"{row['seconds']:8.2f} {row['batch_ms_p50']:7.1f}  {ratios[0]:>15} "
              f"{ratios[1]:>14}  {bleu}  {', '.join(same)}")
    if references is not None:
        print(f"  BLEU: {next(iter(rows.values()))['bleu_signature']}")
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_decode: --device cuda but no CUDA device is available", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    source = args.source or str(default_data_dir() / "multi30k" / "test2016.en.xz")
    lines = read_lines(source)[: args.limit]
    reference = args.reference or (None if args.source else
                                   str(default_data_dir() / "multi30k" / "test2016.de.xz"))
    references = read_lines(reference)[: args.limit] if reference else None
    loaded = load_for_inference(args.checkpoint, args.device)
    cpu_gemm = apply_cpu_gemm(loaded.model, args.cpu_gemm) if args.device == "cpu" else "default"
    vendor = cpu_vendor() or "unknown"
    systems = build_systems(args, loaded)
    lengths = [len(ids) + 1 for ids in loaded.tokenizer.encode(lines)]
    batches = plan_batches(lengths, args.batch_tokens, args.batch_size)

    import transformers

    load_start = os.getloadavg()
    results: dict[str, Any] = {}
    for beam in args.beam:
        measure(systems, lines, batches, beam, args.repeats)
    load_end = os.getloadavg()
    c = loaded.model.config
    size = (f"{args.batch_size} sentences" if args.batch_size else
            f"{args.batch_tokens} padded source tokens")
    print(f"bench_decode: {args.checkpoint} (d_model {c.d_model}, {c.n_encoder_layers}+"
          f"{c.n_decoder_layers} layers, vocab {c.vocab_size}), {len(lines)} sentences of "
          f"{source}, {len(batches)} batches of <= {size}, device {args.device}, "
          f"{args.threads} threads")
    ct2_version = "not used"
    if not ctranslate2_missing(args.device):
        import ctranslate2

        ct2_version = ctranslate2.__version__
    print(f"  torch {torch.__version__}, transformers {transformers.__version__}, ctranslate2 "
          f"{ct2_version}; length penalty {args.length_penalty}; ours' CPU GEMM "
          f"{cpu_gemm} (CPU vendor {vendor})")
    limits = [length_limit(n, c.max_positions) for n in lengths]
    for beam in args.beam:
        results[str(beam)] = report(systems, beam, limits, references)
    print(f"\n  load average {load_start[0]:.2f} at start, {load_end[0]:.2f} at end")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "args": vars(args), "results": results, "load_avg": [load_start, load_end],
            "lengths": [[lengths[i] for i in b] for b in batches],
            "per_batch": {s.name: {b: [p["per_batch"] for p in s.results[int(b)]]
                                   for b in map(str, args.beam)} for s in systems},
            "platform": platform.platform(), "cpu_vendor": vendor, "cpu_gemm": cpu_gemm,
        }, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
