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
from contextlib import contextmanager
from typing import TextIO

import torch
from tqdm import tqdm

from transformer_mt.commands.options import (
    add_model_arguments,
    add_search_arguments,
    search_options,
)
from transformer_mt.errors import UserError
from transformer_mt.inference.search import Hypothesis
from transformer_mt.inference.translator import Scored, Translator
from transformer_mt.textio import atomic_write, check_readable, iter_lines, read_lines


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
    add_search_arguments(parser)
    run_group = parser.add_argument_group("execution")
    run_group.add_argument("--batch-tokens", type=int, default=4096, metavar="N",
                           help="max padded source tokens per batch")
    add_model_arguments(run_group)
    run_group.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                           help="bf16 autocast (CUDA only; ignored with a warning on CPU)")
    run_group.add_argument("--stream", action="store_true",
                           help="translate and write each line as soon as it is read (for "
                           "pipes; an --output file still appears only when complete)")
    run_group.add_argument("--split-sentences", action="store_true",
                           help="translate each sentence of a line on its own and put the "
                           "translations back in the line (still one output line per input "
                           "line); for paragraphs, e-mails, subtitles")
    run_group.add_argument("--quiet", action="store_true", help="no progress bar")


def format_results(
    translator: Translator, hypotheses: list[list[Hypothesis]], first_index: int, nbest: int
) -> list[str]:
    """Output lines (without newline) for consecutive inputs starting at `first_index`."""
    if nbest == 1:
        return translator.texts([h[0] for h in hypotheses])
    return format_scored([translator.scored(hyps) for hyps in hypotheses], first_index, nbest)


def format_scored(lists: list[list[Scored]], first_index: int, nbest: int) -> list[str]:
    """Output lines of n-best lists of texts (one line per input line when nbest is 1)."""
    if nbest == 1:
        return [hyps[0].text for hyps in lists]
    lines = []
    for offset, hyps in enumerate(lists):
        scored = [(s.score, s.text) for s in hyps] + [(float("-inf"), "")] * (nbest - len(hyps))
        lines += [f"{first_index + offset}\t{s:.4f}\t{t}" for s, t in scored[:nbest]]
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
    options = search_options(args)  # before the (slow) checkpoint load
    if args.batch_tokens < 1:
        raise UserError(f"--batch-tokens must be >= 1, got {args.batch_tokens}")
    if args.input != "-":
        check_readable(args.input)
    translator = Translator.from_checkpoint(args.checkpoint, device=args.device,
                                            quantize=args.quantize, cpu_gemm=args.cpu_gemm,
                                            precision=args.precision)
    generator = None
    if args.sampling and args.seed is not None:
        generator = torch.Generator(device=translator.device).manual_seed(args.seed)
    # Read everything first (a bad input fails before any output exists), except in stream
    # mode, where lines are read lazily as the pipe delivers them.
    lines = None if args.stream else read_lines(args.input, allow_empty=True)
    bar = tqdm(total=None if lines is None else len(lines), unit="line", file=sys.stderr,
               disable=args.quiet or not sys.stderr.isatty(), dynamic_ncols=True)
    truncated = 0
    with bar, _open_output(args.output) as out:
        chunks = ([line] for line in iter_lines(args.input)) if lines is None else [lines]
        index = 0
        for chunk in chunks:
            if args.split_sentences:
                lists, cut = translator.search_sentences(
                    chunk, options, batch_tokens=args.batch_tokens, generator=generator)
                bar.update(len(chunk))
                texts = format_scored(lists, index, args.nbest)
            else:
                result = translator.search(chunk, options, batch_tokens=args.batch_tokens,
                                           generator=generator, progress=bar.update)
                cut = result.truncated
                texts = format_results(translator, result.hypotheses, index, args.nbest)
            truncated += cut
            for text in texts:
                out.write(text + "\n")
            out.flush()
            index += len(chunk)
    if truncated:
        limit = translator.loaded.model.config.max_positions - 1
        unit = "sentence" if args.split_sentences else "input line"
        print(f"transformer-mt: warning: {truncated} {unit}(s) longer than {limit} tokens "
              "were truncated to fit the model", file=sys.stderr)
    return 0
