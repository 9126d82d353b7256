"""`transformer-mt evaluate`: sacreBLEU and chrF of hypotheses against references.

Scores go through sacreBLEU's own metric objects, never a reimplementation, so a number printed
here is the number sacreBLEU prints for the same files, and it always comes with sacreBLEU's
signature (tokenizer, case, smoothing, version) so it can be compared across papers. Text is read
with `textio.read_lines`, which strips LF or CRLF line ends alike and names the file and line of
bad UTF-8. sacreBLEU is imported lazily: `cli.py` imports this module to build its parser, and every
command would otherwise pay for the import.

With `--checkpoint`, the source is first translated by `Translator` (the one implementation
behind `translate`, `predict` and `serve`), and the translations are scored.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from transformer_mt.errors import UserError
from transformer_mt.textio import check_same_length, read_lines

METRICS = ("bleu", "chrf")


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


def _make_metric(name: str, chrf_word_order: int, tokenize: str, lowercase: bool) -> Any:
    """A sacreBLEU metric object; a tokenizer that is unknown or cannot load is a UserError."""
    from sacrebleu.metrics import BLEU, CHRF

    if name == "chrf":
        return CHRF(word_order=chrf_word_order, lowercase=lowercase)
    if name != "bleu":
        raise UserError(f"unknown metric {name!r}; choose from {', '.join(METRICS)}")
    if tokenize not in BLEU.TOKENIZERS:
        raise UserError(
            f"unknown sacreBLEU tokenizer {tokenize!r}; choose one of "
            f"{', '.join(sorted(BLEU.TOKENIZERS))}"
        )
    try:
        return BLEU(tokenize=tokenize, lowercase=lowercase)
    except (ImportError, RuntimeError, OSError) as exc:
        # ja-mecab/ko-mecab need extra packages; spm/flores tokenizers download a model.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"sacreBLEU tokenizer {tokenize!r} is not usable here: {first}") from None


def score(
    hyps: Sequence[str],
    refs: Sequence[Sequence[str]],
    metrics: Sequence[str] = METRICS,
    chrf_word_order: int = 0,
    tokenize: str = "13a",
    lowercase: bool = False,
) -> dict[str, Any]:
    """Corpus scores of `hyps` against one or more reference streams, as sacreBLEU computes them.

    `refs` is a list of reference streams, each line-parallel to `hyps`. Returns
    `{metric: {"name", "score", "signature", "verbose"}, ..., "n_sentences": N}`; "score" is
    sacreBLEU's unrounded float (the same value `sacrebleu.corpus_bleu(...).score` gives),
    "verbose" is BLEU's precisions/brevity-penalty string (empty for chrF). Used by the CLI and
    by training for validation BLEU, so both report identical numbers.
    """
    if not hyps:
        raise UserError("nothing to score: there are no hypotheses")
    if not refs:
        raise UserError("nothing to score against: give at least one reference")
    for i, ref in enumerate(refs, start=1):
        check_same_length(list(hyps), list(ref), "the hypotheses", f"reference {i}")
    result: dict[str, Any] = {}
    for name in dict.fromkeys(metrics):  # de-duplicated, order kept
        metric = _make_metric(name, chrf_word_order, tokenize, lowercase)
        value = metric.corpus_score(list(hyps), [list(r) for r in refs])
        result[name] = {
            "name": value.name,
            "score": value.score,
            "signature": str(metric.get_signature()),
            # sacreBLEU keeps BLEU's detail string only in this attribute (chrF has none).
            "verbose": getattr(value, "_verbose", ""),
        }
    result["n_sentences"] = len(hyps)
    return result


def format_text(result: dict[str, Any]) -> str:
    """One block per metric, in the order asked for: the score line exactly as sacreBLEU's
    `str(score)` writes it (2 decimals, then BLEU's detail), then the signature."""
    blocks = []
    for name, entry in result.items():
        if name == "n_sentences":
            continue
        line = f"{entry['name']} = {entry['score']:.2f}"
        if entry["verbose"]:
            line += f" {entry['verbose']}"
        blocks.append(f"{line}\nsignature: {entry['signature']}")
    return "\n\n".join(blocks)


def _translate(args: argparse.Namespace, sources: list[str]) -> list[str]:
    """Hypotheses for `--src` from the checkpoint, exactly as `transformer-mt translate` with
    the same beam size would write them."""
    from transformer_mt.translator import Translator

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
        from transformer_mt.decoding import SearchOptions
        from transformer_mt.translate import cli_name

        try:  # the one validator of search options, before a possibly long translation
            SearchOptions(beam_size=args.beam_size).check(cli_name)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    # Check the tokenizer before a possibly long translation.
    for name in args.metrics:
        _make_metric(name, args.chrf_word_order, args.tokenize, args.lowercase)

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
