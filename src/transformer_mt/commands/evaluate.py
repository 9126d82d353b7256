"""`transformer-mt evaluate`: sacreBLEU, chrF and TER of translations, the paper's tokenized
BLEU, and paired significance tests.

What is scored: a file of translations (`--hyp`); several (`--hyp A --hyp B ...`: sacreBLEU's
paired bootstrap, or approximate randomization, of each against the first); or the translations
of a checkpoint (`--checkpoint`), made by `Translator` with the checkpoint's predict search
(`Translator.predict_settings`), exactly as the `test` stage makes them, each option
overridable. Against what: reference files (`--ref`, repeated for several references) or a
standard test set by name (`--testset`, through sacreBLEU's test-set API and cache,
`scoring.testsets`), which also brings the source. Every number is sacreBLEU's, with its
signature (`scoring.metrics`, `scoring.significance`); `--paper-bleu` adds the paper's
tokenized BLEU, labelled as not comparable (`scoring.paper_bleu`). Text is read with
`textio.read_lines`, which names the file and line of bad UTF-8.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any

from transformer_mt.commands.options import (
    add_model_arguments,
    add_search_arguments,
    cli_name,
    search_options,
)
from transformer_mt.errors import UserError
from transformer_mt.scoring.metrics import (
    DEFAULT_METRICS,
    METRICS,
    MetricOptions,
    format_text,
    make_metric,
    score,
)
from transformer_mt.scoring.significance import TESTS, format_table, paired_test
from transformer_mt.textio import check_same_length, read_lines

if TYPE_CHECKING:
    from transformer_mt.inference.translator import Translator

SEARCH_FIELDS = ("beam_size", "length_penalty", "max_len_a", "max_len_b")
PAPER_COLUMN = "paper BLEU"


def metric_names(text: str) -> list[str]:
    """`--metrics bleu,chrf,ter`: comma-separated names, each one sacreBLEU metric we offer."""
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in METRICS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown metric {', '.join(unknown) or repr(text)}; choose from {','.join(METRICS)}")
    return names


# Option -> help; the declarations below stay one line each.
HELP = {
    "hyp": "detokenized translations, one per line ('-' = stdin; .gz/.xz/.bz2 are read as "
           "such); repeat to compare systems, the first is the baseline",
    "checkpoint": "translate the source (--src or the test set's) with this checkpoint first, "
                  "as `transformer-mt test` does, then score the translations",
    "ref": "raw reference file, line-parallel to the translations; repeat for several "
           "references",
    "src": "source text (with --checkpoint)",
    "testset": "a sacreBLEU test set (wmt14/full, wmt14, wmt22, ...): source and references "
               "from sacreBLEU's cache ($SACREBLEU, default ~/.sacrebleu)",
    "langpair": "language pair of --testset (default: the checkpoint's), also the target "
                "language of sacreBLEU's tokenizer and of --paper-bleu",
    "metrics": f"metrics in this order, from {','.join(METRICS)}, comma- or space-separated "
               f"(default: {','.join(DEFAULT_METRICS)})",
    "chrf_word_order": "word n-gram order of chrF: 0 = chrF2, 2 = chrF++",
    "tokenize": "sacreBLEU tokenizer for BLEU (13a, intl, zh, char, none, ...); default: "
                "sacreBLEU's for the target language, 13a (the WMT norm) but for zh, ja, ko",
    "lowercase": "case-insensitive BLEU and chrF (default: mixed case)",
    "paper_bleu": "add the paper's tokenized BLEU (Moses tokenizer, compound splitting, as "
                  "tensor2tensor's get_ende_bleu.sh): not comparable with sacreBLEU",
    "paired": "bs = paired bootstrap resampling (default), ar = approximate randomization",
    "resamples": "bootstrap resamples / randomization trials (default: sacreBLEU's, 1000 / "
                 "10000)",
    "json": "print one JSON object instead, with unrounded scores",
    "batch_tokens": "max padded source tokens per batch (default: the checkpoint's "
                    "model.predict_max_tokens)",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `transformer-mt evaluate`."""
    parser.epilog = (
        "Examples: evaluate --hyp out.de --ref ref.de | evaluate --checkpoint m.ckpt --testset "
        "wmt14/full | evaluate --hyp base.de --hyp new.de --ref ref.de --paired ar | evaluate "
        "--hyp out.de --testset wmt14/full --langpair en-de --paper-bleu")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--hyp", metavar="FILE", action="append", help=HELP["hyp"])
    what.add_argument("--checkpoint", metavar="CKPT", help=HELP["checkpoint"])
    data = parser.add_argument_group("references")
    data.add_argument("--ref", metavar="FILE", action="append", help=HELP["ref"])
    data.add_argument("--src", metavar="FILE", help=HELP["src"])
    data.add_argument("--testset", metavar="NAME", help=HELP["testset"])
    data.add_argument("--langpair", metavar="SRC-TGT", help=HELP["langpair"])
    scores = parser.add_argument_group("scores")
    scores.add_argument("--metrics", type=metric_names, nargs="+", metavar="LIST",
                        default=[list(DEFAULT_METRICS)], help=HELP["metrics"])
    scores.add_argument("--chrf-word-order", type=int, choices=(0, 2), default=0,
                        help=HELP["chrf_word_order"])
    scores.add_argument("--tokenize", default=None, help=HELP["tokenize"])
    for flag in ("lowercase", "paper_bleu"):
        scores.add_argument(cli_name(flag), action="store_true", help=HELP[flag])
    paired = parser.add_argument_group("significance (two or more --hyp)")
    paired.add_argument("--paired", choices=tuple(TESTS), default=None, help=HELP["paired"])
    paired.add_argument("--resamples", type=int, default=None, metavar="N",
                        help=HELP["resamples"])
    parser.add_argument("--json", action="store_true", help=HELP["json"])
    add_search_arguments(parser, SEARCH_FIELDS, defaults_from="the checkpoint's predict settings")
    model = parser.add_argument_group("model (with --checkpoint)")
    model.add_argument("--batch-tokens", type=int, default=None, metavar="N",
                       help=HELP["batch_tokens"])
    add_model_arguments(model)


def _check_combination(args: argparse.Namespace) -> None:
    """The options that cannot go together, before any file is read or model loaded."""
    hyps = args.hyp or []
    inputs = [*hyps, args.src, *(args.ref or [])]
    if inputs.count("-") > 1:
        raise UserError("only one input can be read from stdin ('-')")
    if args.testset and (args.ref or args.src):
        raise UserError("--testset brings its own source and references: drop --ref and --src")
    if args.checkpoint is not None and not (args.src or args.testset):
        raise UserError("--checkpoint needs --src (and --ref), or --testset")
    if args.checkpoint is not None and not (args.ref or args.testset):
        raise UserError("--checkpoint --src needs --ref, the references to score against")
    if args.hyp and args.src:
        raise UserError("--src is only used with --checkpoint; with --hyp give just --ref")
    if args.hyp and not (args.ref or args.testset):
        raise UserError("--hyp needs --ref FILE or --testset NAME to score against")
    if args.hyp and args.testset and not args.langpair:
        raise UserError("--testset with --hyp needs --langpair SRC-TGT (e.g. en-de)")
    if args.langpair is not None and len(args.langpair.split("-")) != 2:
        raise UserError(f"--langpair {args.langpair!r}: give it as SRC-TGT, e.g. en-de")
    if (args.paired or args.resamples is not None) and len(hyps) < 2:
        raise UserError("--paired and --resamples compare systems: give --hyp two or more times")
    if args.resamples is not None and args.resamples < 1:
        raise UserError(f"--resamples must be >= 1, got {args.resamples}")
    if args.batch_tokens is not None and args.batch_tokens < 1:
        raise UserError(f"--batch-tokens must be >= 1, got {args.batch_tokens}")


def _metric_options(args: argparse.Namespace, langpair: str | None) -> MetricOptions:
    return MetricOptions(chrf_word_order=args.chrf_word_order, tokenize=args.tokenize,
                         lowercase=args.lowercase,
                         trg_lang=langpair.split("-")[1] if langpair else "")


def _references(args: argparse.Namespace, langpair: str | None
                ) -> tuple[list[str] | None, list[list[str]], dict[str, Any]]:
    """Source (when one is needed), reference streams, and what they are (for the report)."""
    if args.testset:
        from transformer_mt.scoring.testsets import load_testset

        testset = load_testset(args.testset, langpair)
        about = {"testset": args.testset, "langpair": langpair,
                 "reference_files": testset.reference_files}
        return testset.sources, testset.references, about
    refs = [read_lines(path) for path in args.ref]
    source = read_lines(args.src) if args.src else None
    if source is not None:
        for path, ref in zip(args.ref, refs, strict=True):
            check_same_length(source, ref, args.src, path)
    return source, refs, {"reference_files": list(args.ref)}


def _translate(args: argparse.Namespace, translator: Translator, sources: list[str]
               ) -> tuple[list[str], dict[str, Any]]:
    """The checkpoint's translations of `sources`, with its predict settings where the command
    line gives none: exactly what the `test` stage translates."""
    search, batch_tokens = translator.predict_settings()
    search = search_options(args, base=search)
    batch_tokens = args.batch_tokens or batch_tokens
    result = translator.search(sources, search, batch_tokens=batch_tokens)
    hyps = translator.texts([nbest[0] for nbest in result.hypotheses])
    about = {"checkpoint": args.checkpoint, "search": asdict(search),
             "search_text": search.describe(), "batch_tokens": batch_tokens,
             "truncated": result.truncated}
    return hyps, about


def run(args: argparse.Namespace) -> int:
    """Read or make the translations, check every input is line-parallel, score, print."""
    _check_combination(args)
    names = list(dict.fromkeys(name for group in args.metrics for name in group))
    if args.checkpoint is not None:
        search_options(args)  # a bad value fails before the (slow) checkpoint load
    # reference files are read (and bad ones fail) before the load too; a test set may need
    # the checkpoint's language pair first
    data = None if args.testset else _references(args, args.langpair)
    translator = None
    if args.checkpoint is not None:
        from transformer_mt.inference.translator import Translator

        translator = Translator.from_checkpoint(args.checkpoint, device=args.device,
                                                quantize=args.quantize, cpu_gemm=args.cpu_gemm)
    langpair = args.langpair or (f"{translator.src_lang}-{translator.tgt_lang}"
                                 if translator else None)
    options = _metric_options(args, langpair)
    for name in names:  # an unusable tokenizer fails before a possibly long translation
        make_metric(name, options)
    if args.paper_bleu and not langpair:
        raise UserError("--paper-bleu needs the target language for the Moses tokenizer: "
                        "add --langpair SRC-TGT (e.g. en-de)")
    sources, refs, about = data or _references(args, langpair)
    if translator is not None:
        hyps, translated = _translate(args, translator, sources)
        systems = [(f"translations of {args.src or args.testset}", hyps)]
        about.update(translated)
    else:
        systems = [(path, read_lines(path)) for path in args.hyp]
    for name, hyps in systems:
        for path, ref in zip(about["reference_files"], refs, strict=True):
            check_same_length(hyps, ref, name, path)
    if len(systems) > 1:
        return _print_paired(args, systems, refs, names, options, langpair)
    return _print_scores(args, systems[0][1], refs, names, options, langpair, about)


def _print_scores(args: argparse.Namespace, hyps: list[str], refs: list[list[str]],
                  names: list[str], options: MetricOptions, langpair: str | None,
                  about: dict[str, Any]) -> int:
    result = score(hyps, refs, metrics=names, options=options)
    if args.paper_bleu:
        from transformer_mt.scoring.paper_bleu import paper_bleu

        result["paper_bleu"] = paper_bleu(hyps, refs, langpair.split("-")[1])
    if args.json:
        for key in ("testset", "langpair", "checkpoint", "search", "batch_tokens", "truncated"):
            if key in about:
                result[key] = about[key]
        print(json.dumps(result, ensure_ascii=False, indent=1))
        return 0
    header = []
    if args.testset:
        header.append(f"test set: sacreBLEU {args.testset} {langpair}, {len(hyps)} sentences, "
                      f"{len(refs)} reference(s)")
    if "search_text" in about:
        header.append(f"translated by {args.checkpoint}: {about['search_text']}")
        if about["truncated"]:
            header.append(f"warning: {about['truncated']} source line(s) were cut to fit the "
                          "model")
    print("\n\n".join(filter(None, ["\n".join(header), format_text(result)])))
    return 0


def _print_paired(args: argparse.Namespace, systems: list[tuple[str, list[str]]],
                  refs: list[list[str]], names: list[str], options: MetricOptions,
                  langpair: str | None) -> int:
    """Each system against the first, per metric, with sacreBLEU's paired test."""
    test, samples = args.paired or "bs", args.resamples or 0  # 0: sacreBLEU's default
    columns = [paired_test(systems, make_metric(name, options, references=refs), test, samples)
               for name in names]
    if args.paper_bleu:
        from transformer_mt.scoring.paper_bleu import paper_metric, paper_signature, paper_tokenize

        lang = langpair.split("-")[1]
        metric = paper_metric([paper_tokenize(ref, lang) for ref in refs])
        column = paired_test([(name, paper_tokenize(hyps, lang)) for name, hyps in systems],
                             metric, test, samples)
        columns.append(replace(column, name=PAPER_COLUMN,
                               signature=paper_signature(column.signature, lang)))
    if args.json:
        keys = [*names, "paper_bleu"] if args.paper_bleu else names
        print(json.dumps({
            "test": test, "samples": columns[0].samples,
            "systems": [name for name, _ in systems],
            "n_sentences": len(systems[0][1]),
            **{key: asdict(column) for key, column in zip(keys, columns, strict=True)},
        }, ensure_ascii=False, indent=1))
    else:
        print(format_table([name for name, _ in systems], columns, test))
    return 0

