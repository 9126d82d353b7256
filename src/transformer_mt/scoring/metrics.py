"""sacreBLEU scores, with their signatures, for hypotheses against one or more references.

Scores go through sacreBLEU's own metric objects, never a reimplementation, so a number given
here is the number sacreBLEU prints for the same text, and it always comes with sacreBLEU's
signature (tokenizer, case, smoothing, version) so it can be compared across papers.
`transformer-mt evaluate`, the `test` stage and the validation BLEU of training all score
through `score`. sacreBLEU is imported lazily: the command line imports this module to build its
parser, and every command would otherwise pay for the import.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from transformer_mt.errors import UserError
from transformer_mt.textio import check_same_length

METRICS = ("bleu", "chrf", "ter")  # every metric `--metrics` accepts
DEFAULT_METRICS = ("bleu", "chrf")


@dataclass(frozen=True, kw_only=True)
class MetricOptions:
    """sacreBLEU's options, as its command line has them.

    `tokenize` None is sacreBLEU's own choice for the target language `trg_lang` (13a, the WMT
    norm, except `zh`, `ja-mecab` and `ko-mecab` for Chinese, Japanese and Korean), as
    `sacrebleu -l SRC-TGT` picks it. `lowercase` applies to BLEU and chrF; TER keeps sacreBLEU's
    default, case-insensitive (its signature says `case:lc`).
    """

    chrf_word_order: int = 0
    tokenize: str | None = None
    lowercase: bool = False
    trg_lang: str = ""


def make_metric(name: str, options: MetricOptions | None = None,
                references: Sequence[Sequence[str]] | None = None) -> Any:
    """A sacreBLEU metric object; a tokenizer that is unknown or cannot load is a UserError.

    `references` (streams) are cached in the object, as sacreBLEU's paired tests need them."""
    from sacrebleu.metrics import BLEU, CHRF, TER

    options = options or MetricOptions()
    if name == "chrf":
        return CHRF(word_order=options.chrf_word_order, lowercase=options.lowercase,
                    references=references)
    if name == "ter":
        return TER(references=references)
    if name != "bleu":
        raise UserError(f"unknown metric {name!r}; choose from {', '.join(METRICS)}")
    if options.tokenize is not None and options.tokenize not in BLEU.TOKENIZERS:
        raise UserError(
            f"unknown sacreBLEU tokenizer {options.tokenize!r}; choose one of "
            f"{', '.join(sorted(BLEU.TOKENIZERS))}"
        )
    try:
        return BLEU(tokenize=options.tokenize, lowercase=options.lowercase,
                    trg_lang=options.trg_lang, references=references)
    except (ImportError, RuntimeError, OSError) as exc:
        # ja-mecab/ko-mecab need extra packages; spm/flores tokenizers download a model.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        tokenizer = options.tokenize or f"the default for {options.trg_lang!r}"
        raise UserError(f"sacreBLEU tokenizer {tokenizer} is not usable here: {first}") from None


def score_entry(metric: Any, value: Any) -> dict[str, Any]:
    """What we report of one corpus score: sacreBLEU's name, unrounded score, signature and
    BLEU's detail string (precisions, brevity penalty; sacreBLEU keeps it only in `_verbose`,
    and other metrics have none)."""
    return {"name": value.name, "score": value.score, "signature": str(metric.get_signature()),
            "verbose": getattr(value, "_verbose", "")}


def check_parallel(hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> None:
    """Something to score, against at least one reference stream line-parallel to it."""
    if not hyps:
        raise UserError("nothing to score: there are no hypotheses")
    if not refs:
        raise UserError("nothing to score against: give at least one reference")
    for i, ref in enumerate(refs, start=1):
        check_same_length(list(hyps), list(ref), "the hypotheses", f"reference {i}")


def score(
    hyps: Sequence[str],
    refs: Sequence[Sequence[str]],
    metrics: Sequence[str] = DEFAULT_METRICS,
    options: MetricOptions | None = None,
) -> dict[str, Any]:
    """Corpus scores of `hyps` against one or more reference streams, as sacreBLEU computes them.

    `refs` is a list of reference streams, each line-parallel to `hyps`. Returns
    `{metric: {"name", "score", "signature", "verbose"}, ..., "n_sentences": N}`; "score" is
    sacreBLEU's unrounded float (the same value `sacrebleu.corpus_bleu(...).score` gives).
    Used by the CLI and by training, so both report identical numbers.
    """
    check_parallel(hyps, refs)
    result: dict[str, Any] = {}
    for name in dict.fromkeys(metrics):  # de-duplicated, order kept
        metric = make_metric(name, options)
        result[name] = score_entry(metric, metric.corpus_score(list(hyps), [list(r) for r in refs]))
    result["n_sentences"] = len(hyps)
    return result


def format_text(result: dict[str, Any]) -> str:
    """One block per metric, in the order asked for: the score line exactly as sacreBLEU's
    `str(score)` writes it (2 decimals, then BLEU's detail), then the signature. Entries that
    are not scores (`n_sentences`, what was translated) are left to the caller."""
    blocks = []
    for value in result.values():
        if not (isinstance(value, dict) and "signature" in value):
            continue
        line = f"{value['name']} = {value['score']:.2f}"
        if value["verbose"]:
            line += f" {value['verbose']}"
        blocks.append(f"{line}\nsignature: {value['signature']}")
    return "\n\n".join(blocks)
