"""Is system B really better than system A? sacreBLEU's paired significance tests.

`paired_test` runs sacreBLEU's own `PairedTest` (what `sacrebleu --paired-bs` / `--paired-ar`
run): paired bootstrap resampling (Koehn 2004; 1,000 resamples by default) or approximate
randomization (Riezler and Maxwell 2005; 10,000 trials). Both give each system its score, the
bootstrap mean with a 95 % confidence interval (for approximate randomization from 1,000 extra
bootstrap resamples, which sacreBLEU's command line leaves out), and a p-value against the
baseline (the first system). The resampling is seeded (`SACREBLEU_SEED`, default 12345, as in
sacreBLEU), so a rerun prints the same numbers, and the seed is in the signature.

One correction: a system whose output is the baseline's, line for line, gets p = 1. sacreBLEU
2.6 counts only resamples whose difference is strictly larger than the observed one, and an
observed difference of exactly zero has none, so it reports p = 1 / (resamples + 1), which
would call a system significantly different from itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

TESTS = {"bs": "paired bootstrap resampling", "ar": "paired approximate randomization"}
SIGNIFICANT = 0.05  # the p-value under which the text table marks a difference with '*'


@dataclass(frozen=True, kw_only=True)
class PairedColumn:
    """One metric's results over all systems, baseline first: per system its `score`, the
    bootstrap `mean`, the half-width `ci` of the 95 % interval around it, and `p_value`
    against the baseline (None for the baseline itself); `samples` is the number of
    resamples (bootstrap) or trials (approximate randomization) sacreBLEU ran."""

    name: str
    signature: str
    samples: int
    results: list[dict[str, float | None]]


def paired_test(systems: Sequence[tuple[str, Sequence[str]]], metric: Any, test: str = "bs",
                samples: int = 0) -> PairedColumn:
    """sacreBLEU's paired `test` ("bs" or "ar") of every system against the first, with one
    sacreBLEU metric object that holds the references. `samples` 0 is sacreBLEU's default
    (1,000 resamples, 10,000 trials)."""
    from sacrebleu.significance import PairedTest

    if test not in TESTS:
        raise ValueError(f"unknown paired test {test!r}; choose from {', '.join(TESTS)}")
    named = [(name, list(hyps)) for name, hyps in systems]
    # n_ar_confidence=0: sacreBLEU's default 1,000 bootstrap resamples give AR its intervals
    paired = PairedTest(named, {"metric": metric}, references=None, test_type=test,
                        n_samples=samples, n_ar_confidence=0)
    signatures, scores = paired()
    (name, signature), = signatures.items()
    baseline = named[0][1]
    results = []
    for (_, hyps), result in zip(named, scores[name], strict=True):
        p_value = result.p_value
        if p_value is not None and hyps == baseline:
            p_value = 1.0  # see the module's docstring
        results.append({key: None if value is None else float(value)  # numpy -> JSON-able
                        for key, value in (("score", result.score), ("mean", result.mean),
                                           ("ci", result.ci), ("p_value", p_value))})
    return PairedColumn(name=name, signature=str(signature), samples=paired.n_samples,
                        results=results)


def format_table(names: Sequence[str], columns: Sequence[PairedColumn], test: str) -> str:
    """A text table, one row per system and one column per metric:
    `score (mean ± 95 % CI half-width)` and, for the systems, `p = P` with `*` under 0.05;
    then what the numbers are and each metric's signature."""
    cells = [[f"{name} (baseline)" if i == 0 else name for i, name in enumerate(names)]]
    headers = ["system"]
    for column in columns:
        headers.append(f"{column.name} (mean ± 95% CI)")
        cells.append([_cell(result) for result in column.results])
    widths = [max(len(h), *(len(c) for c in col)) for h, col in zip(headers, cells, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in zip(*cells, strict=True):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    lines.append("")
    lines.append(f"{TESTS[test]} against the baseline (sacreBLEU, {columns[0].samples} "
                 f"{'resamples' if test == 'bs' else 'trials'}); * p < {SIGNIFICANT}")
    lines += [f"signature ({column.name}): {column.signature}" for column in columns]
    return "\n".join(lines)


def _cell(result: dict[str, float | None]) -> str:
    text = f"{result['score']:.2f} ({result['mean']:.2f} ± {result['ci']:.2f})"
    p_value = result["p_value"]
    if p_value is not None:
        text += f" p = {p_value:.4f}" + ("*" if p_value < SIGNIFICANT else "")
    return text
