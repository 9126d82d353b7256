"""`transformer-mt translate`: raw text in, detokenized translations out, one line per line.

Everything the command needs comes from the checkpoint (weights, config, sentencepiece model).
Lines are batched by token count in length order and written back in input order; `--stream`
instead translates each line as soon as it arrives, for interactive use behind a slow pipe.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import TextIO

import torch
from tqdm import tqdm

from transformer_mt.checkpoint import LoadedModel, load_for_inference
from transformer_mt.decoding import Hypothesis, translate_lines
from transformer_mt.errors import UserError
from transformer_mt.model.cpu_gemm import CPU_GEMMS, apply_cpu_gemm
from transformer_mt.model.quantize import QUANTIZATIONS, quantize
from transformer_mt.textio import atomic_write, check_readable, iter_lines, read_lines

# Control characters (tab excepted) and the Unicode line/paragraph separators become spaces in
# a translation, as textio does for input: this covers every character `str.splitlines` breaks
# on, so no reader sees more than one line per input line.
_CONTROLS = str.maketrans(dict.fromkeys(
    [chr(i) for i in range(32) if chr(i) != "\t"] + ["\x7f", "\x85", "\u2028", "\u2029"], " "
))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Output: one line per input line, in input order; an empty input line gives an empty "
        "output line. With --nbest K > 1: K lines per input line, each "
        "'INDEX<TAB>SCORE<TAB>TEXT', where INDEX is the 0-based input line number and SCORE "
        "the length-penalised log-probability (best first); when fewer than K hypotheses "
        "exist (e.g. an empty input line) the rest are filled with empty texts scored -inf."
    )
    parser.add_argument("--checkpoint", required=True, metavar="CKPT",
                        help="model checkpoint (.ckpt)")
    parser.add_argument("--input", default="-", metavar="FILE",
                        help="input text file (.gz/.xz/.bz2 ok); - = stdin")
    parser.add_argument("--output", default=None, metavar="FILE",
                        help="output file, written atomically; stdout when not given")
    search = parser.add_argument_group("search")
    search.add_argument("--beam-size", type=int, default=4, metavar="K",
                        help="beam width; 1 = greedy")
    search.add_argument("--length-penalty", type=float, default=0.6, metavar="ALPHA",
                        help="GNMT alpha: score = log-prob / ((5 + len) / 6) ** alpha")
    search.add_argument("--max-len-a", type=float, default=1.0, metavar="A",
                        help="max output tokens = a * source tokens + b")
    search.add_argument("--max-len-b", type=int, default=50, metavar="B",
                        help="see --max-len-a")
    search.add_argument("--nbest", type=int, default=1, metavar="K",
                        help="print the K best hypotheses per line (format below)")
    sampling = parser.add_argument_group("sampling (instead of beam search)")
    sampling.add_argument("--sampling", action="store_true",
                          help="sample translations; --nbest K draws K samples per line")
    sampling.add_argument("--temperature", type=float, default=1.0, metavar="T",
                          help="softmax temperature, > 0")
    sampling.add_argument("--top-k", type=int, default=0, metavar="K",
                          help="sample among the K most probable tokens; 0 = all")
    sampling.add_argument("--top-p", type=float, default=1.0, metavar="P",
                          help="nucleus sampling: smallest token set with this mass, in (0, 1]")
    sampling.add_argument("--seed", type=int, default=None, metavar="N",
                          help="random seed for reproducible samples; unseeded when not given")
    run_group = parser.add_argument_group("execution")
    run_group.add_argument("--batch-tokens", type=int, default=4096, metavar="N",
                           help="max padded source tokens per batch")
    run_group.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                           help="auto = cuda when available")
    run_group.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                           help="bf16 autocast (CUDA only; ignored with a warning on CPU)")
    run_group.add_argument("--quantize", choices=QUANTIZATIONS, default=None,
                           help="CPU only: int8 weights for every linear layer (dynamic "
                           "quantization), faster; translations may change slightly")
    run_group.add_argument("--cpu-gemm", choices=CPU_GEMMS, default="auto",
                           help="float32 CPU matrix products: auto = oneDNN on non-Intel CPUs "
                           "(MKL is slow there), torch's default (MKL) on Intel")
    run_group.add_argument("--stream", action="store_true",
                           help="translate and write each line as soon as it is read (for "
                           "pipes; an --output file still appears only when complete)")
    run_group.add_argument("--quiet", action="store_true", help="no progress bar")


def _validate(args: argparse.Namespace) -> None:
    """Reject impossible values before the (slow) checkpoint load."""
    if args.beam_size < 1:
        raise UserError(f"--beam-size must be >= 1, got {args.beam_size}")
    if args.nbest < 1:
        raise UserError(f"--nbest must be >= 1, got {args.nbest}")
    if not args.sampling and args.nbest > args.beam_size:
        raise UserError(
            f"--nbest {args.nbest} exceeds --beam-size {args.beam_size}; beam search can only "
            "return as many hypotheses as its beam holds"
        )
    if not args.temperature > 0:
        raise UserError(f"--temperature must be > 0, got {args.temperature}")
    if args.top_k < 0:
        raise UserError(f"--top-k must be >= 0 (0 = off), got {args.top_k}")
    if not 0 < args.top_p <= 1:
        raise UserError(f"--top-p must be in (0, 1], got {args.top_p}")
    if args.max_len_a < 0 or args.max_len_b < 0:
        raise UserError(
            f"--max-len-a and --max-len-b must be >= 0, got {args.max_len_a}, {args.max_len_b}"
        )
    if args.batch_tokens < 1:
        raise UserError(f"--batch-tokens must be >= 1, got {args.batch_tokens}")
    if args.input != "-":
        check_readable(args.input)


def _device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available (use --device cpu)")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def clean_text(text: str) -> str:
    """A translation as one clean line: a byte-fallback model can emit any byte, newline and
    other control characters included; they become spaces."""
    return text.translate(_CONTROLS)


def format_results(
    loaded: LoadedModel, hypotheses: list[list[Hypothesis]], first_index: int, nbest: int
) -> list[str]:
    """Output lines (without newline) for consecutive inputs starting at `first_index`."""
    if nbest == 1:
        return [clean_text(t) for t in loaded.tokenizer.decode([h[0].tokens for h in hypotheses])]
    lines = []
    for offset, hyps in enumerate(hypotheses):
        texts = loaded.tokenizer.decode([h.tokens for h in hyps])
        scored = [(h.score, t) for h, t in zip(hyps, texts, strict=True)]
        scored += [(float("-inf"), "")] * (nbest - len(scored))
        lines += [f"{first_index + offset}\t{s:.4f}\t{clean_text(t)}" for s, t in scored[:nbest]]
    return lines


@contextmanager
def _open_output(path: str | None) -> Iterator[TextIO]:
    """The output file (atomic: it appears only when complete) or stdout, always UTF-8 with
    '\\n' line ends whatever the locale, so Chinese or emoji output never fails to encode."""
    if path is not None and path != "-":
        with atomic_write(path) as handle:
            yield handle
        return
    if not hasattr(sys.stdout, "buffer"):  # replaced by a text-only stream (e.g. a notebook)
        yield sys.stdout
        return
    sys.stdout.flush()
    stream = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="\n")
    try:
        yield stream
    finally:
        stream.flush()
        stream.detach()  # leave sys.stdout usable (closing the wrapper would close it)


def run(args: argparse.Namespace) -> int:
    """Translate `--input` to `--output`; 0 on success (user errors raise UserError)."""
    _validate(args)
    device = _device(args.device)
    if args.quantize is not None and device.type != "cpu":
        raise UserError(f"--quantize {args.quantize} runs on the CPU only; add --device cpu")
    if args.cpu_gemm == "onednn" and (device.type != "cpu" or args.quantize is not None):
        raise UserError("--cpu-gemm onednn is for float32 on the CPU; drop it with "
                        "--quantize or a CUDA device")
    loaded = load_for_inference(args.checkpoint, device)
    if args.quantize is not None:
        quantize(loaded.model, args.quantize)
    elif device.type == "cpu":
        try:
            apply_cpu_gemm(loaded.model, args.cpu_gemm)
        except ValueError as exc:
            raise UserError(f"--cpu-gemm onednn: {exc}; use --cpu-gemm default") from None
    autocast = nullcontext()
    if args.precision == "bf16":
        if device.type == "cuda":
            autocast = torch.autocast("cuda", dtype=torch.bfloat16)
        else:
            print("transformer-mt: warning: --precision bf16 applies to CUDA only; "
                  "running fp32 on CPU", file=sys.stderr)
    generator = None
    if args.sampling and args.seed is not None:
        generator = torch.Generator(device=device).manual_seed(args.seed)
    options = dict(
        batch_tokens=args.batch_tokens, beam_size=args.beam_size,
        length_penalty=args.length_penalty, max_len_a=args.max_len_a, max_len_b=args.max_len_b,
        nbest=args.nbest, sampling=args.sampling, temperature=args.temperature,
        top_k=args.top_k, top_p=args.top_p, generator=generator,
    )
    # Read everything first (a bad input fails before any output exists), except in stream
    # mode, where lines are read lazily as the pipe delivers them.
    lines = None if args.stream else read_lines(args.input, allow_empty=True)
    bar = tqdm(total=None if lines is None else len(lines), unit="line", file=sys.stderr,
               disable=args.quiet or not sys.stderr.isatty(), dynamic_ncols=True)
    truncated = 0
    with bar, autocast, torch.inference_mode(), _open_output(args.output) as out:
        if lines is None:
            for index, line in enumerate(iter_lines(args.input)):
                result = translate_lines(loaded, [line], **options)
                truncated += result.truncated
                for text in format_results(loaded, result.hypotheses, index, args.nbest):
                    out.write(text + "\n")
                out.flush()
                bar.update(1)
        else:
            result = translate_lines(loaded, lines, progress=bar.update, **options)
            truncated = result.truncated
            for text in format_results(loaded, result.hypotheses, 0, args.nbest):
                out.write(text + "\n")
    if truncated:
        limit = loaded.model.config.max_positions - 1
        print(f"transformer-mt: warning: {truncated} input line(s) longer than {limit} tokens "
              "were truncated to fit the model", file=sys.stderr)
    return 0
