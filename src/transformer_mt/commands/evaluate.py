"""`transformer-mt evaluate`: sacreBLEU and chrF of hypotheses against references.

The scores come from `scoring.metrics` (sacreBLEU's own metric objects, with signatures). Text
is read with `textio.read_lines`, which strips LF or CRLF line ends alike and names the file and
line of bad UTF-8.

With `--checkpoint`, the source is first translated by `Translator` (the one implementation
behind `translate`, `predict` and `serve`), and the translations are scored.
"""

from __future__ import annotations

import argparse
import json

from transformer_mt.errors import UserError
from transformer_mt.scoring.metrics import METRICS, format_text, make_metric, score
from transformer_mt.textio import check_same_length, read_lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `transformer-mt evaluate`."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--hyp", metavar="FILE",
        help="detokenized hypotheses, one per line ('-' = stdin; .gz/.xz/.bz2 are read as such)",
    )
    source.add_argument(
        "--checkpoint", metavar="CKPT",
        help="translate --src with this checkpoint first, then score the translations",
    )
    parser.add_argument(
        "--ref", metavar="FILE", action="append", required=True,
        help="raw reference file, line-parallel to the hypotheses; repeat for several references",
    )
    parser.add_argument(
        "--src", metavar="FILE", help="source text to translate (required with --checkpoint)",
    )
    parser.add_argument(
        "--metrics", nargs="+", choices=METRICS, default=list(METRICS),
        help="metrics to compute, in this order",
    )
    parser.add_argument(
        "--chrf-word-order", type=int, choices=(0, 2), default=0,
        help="word n-gram order of chrF: 0 = chrF2, 2 = chrF++",
    )
    parser.add_argument(
        "--tokenize", default="13a",
        help="sacreBLEU tokenizer for BLEU (13a, intl, zh, char, none, ...); 13a is the WMT norm",
    )
    parser.add_argument(
        "--lowercase", action="store_true",
        help="case-insensitive scores (both sides lowercased); the default is mixed case",
    )
    parser.add_argument(
        "--json", action="store_true",
        help="print one JSON object instead: per metric its name, unrounded score, signature "
        "and verbose detail, plus n_sentences",
    )
    parser.add_argument(
        "--beam-size", type=int, default=4, metavar="N",
        help="beam size for --checkpoint translation",
    )
    parser.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default="auto",
        help="device for --checkpoint translation (auto = cuda when available)",
    )


def _translate(args: argparse.Namespace, sources: list[str]) -> list[str]:
    """Hypotheses for `--src` from the checkpoint, exactly as `transformer-mt translate` with
    the same beam size would write them."""
    from transformer_mt.inference.translator import Translator

    translator = Translator.from_checkpoint(args.checkpoint, device=args.device)
    return translator.translate(sources, beam_size=args.beam_size)


def run(args: argparse.Namespace) -> int:
    """Read (or produce) hypotheses, check every file is line-parallel, score, print."""
    inputs = [args.hyp, args.src, *args.ref]
    if sum(1 for path in inputs if path == "-") > 1:
        raise UserError("only one input can be read from stdin ('-')")
    if args.checkpoint is not None and args.src is None:
        raise UserError("--checkpoint needs --src, the source text to translate")
    if args.hyp is not None and args.src is not None:
        raise UserError("--src is only used with --checkpoint; with --hyp give just --ref")
    if args.checkpoint is not None:
        from transformer_mt.commands.options import cli_name
        from transformer_mt.inference.search import SearchOptions

        try:  # the one validator of search options, before a possibly long translation
            SearchOptions(beam_size=args.beam_size).check(cli_name)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    # Check the tokenizer before a possibly long translation.
    for name in args.metrics:
        make_metric(name, args.chrf_word_order, args.tokenize, args.lowercase)

    refs = [read_lines(path) for path in args.ref]
    if args.checkpoint is not None:
        src = read_lines(args.src)
        for path, ref in zip(args.ref, refs, strict=True):
            check_same_length(src, ref, args.src, path)
        hyps = _translate(args, src)
        hyp_name = f"translations of {args.src}"
    else:
        hyps = read_lines(args.hyp)
        hyp_name = args.hyp
    for path, ref in zip(args.ref, refs, strict=True):
        check_same_length(hyps, ref, hyp_name, path)

    result = score(
        hyps, refs, metrics=args.metrics, chrf_word_order=args.chrf_word_order,
        tokenize=args.tokenize, lowercase=args.lowercase,
    )
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=1))
    else:
        print(format_text(result))
    return 0
