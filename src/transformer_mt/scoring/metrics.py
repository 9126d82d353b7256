"""sacreBLEU scores, with their signatures, for hypotheses against one or more references.

Scores go through sacreBLEU's own metric objects, never a reimplementation, so a number given
here is the number sacreBLEU prints for the same text, and it always comes with sacreBLEU's
signature (tokenizer, case, smoothing, version) so it can be compared across papers.
`transformer-mt evaluate` and the validation BLEU of training both score through `score`.
sacreBLEU is imported lazily: the command line imports this module to build its parser, and
every command would otherwise pay for the import.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from transformer_mt.errors import UserError
from transformer_mt.textio import check_same_length

METRICS = ("bleu", "chrf")


def make_metric(name: str, chrf_word_order: int, tokenize: str, lowercase: bool) -> Any:
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
        metric = make_metric(name, chrf_word_order, tokenize, lowercase)
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
