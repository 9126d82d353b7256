"""The `test` stage's scores: the test split translated as `evaluate --checkpoint` translates a
file, gathered from every rank in order, and scored by sacreBLEU.

Validation decodes a few hundred sentences greedily to follow training cheaply; that is not a
test score. The test stage instead translates every sentence its batches held (the whole split,
unless `trainer.limit_test_batches` cuts it) with the checkpoint's predict settings
(`Translator.predict_settings`: beam, length penalty, max length, batch size) through
`Translator`, in float32, in file order: one call, batched and sorted exactly as `evaluate
--checkpoint` does it, so both print the same scores. Under DDP each rank translates the
sentences of its own batches, and rank 0 scores all of them, put back in file order.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from tqdm import tqdm

from transformer_mt.inference.translator import Translator
from transformer_mt.scoring.metrics import MetricOptions, format_text, score

TEST_METRICS = ("bleu", "chrf")


def _gather(pairs: list[tuple[int, str]], truncated: int) -> tuple[list[tuple[int, str]], int]:
    """Every rank's (index, translation) pairs, sorted by index, and the total count of cut
    sources; unchanged in a single process."""
    if dist.is_available() and dist.is_initialized():
        gathered: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, (pairs, truncated))
        pairs = [pair for part, _ in gathered for pair in part]
        truncated = sum(count for _, count in gathered)
    return sorted(pairs), truncated


def score_test_split(translator: Translator, indices: Sequence[int], sources: Sequence[str],
                references: Sequence[str], show_progress: bool = False
                ) -> tuple[dict[str, Any], str]:
    """Translate `sources[i]` for this rank's `indices`, gather all ranks' translations, and
    score them against `references` with `TEST_METRICS`. Returns sacreBLEU's result (as
    `metrics.score` gives it) and the report to print: how many sentences, the search, and each
    score with its signature."""
    search, batch_tokens = translator.predict_settings()
    indices = sorted(indices)
    texts = [sources[i] for i in indices]
    with tqdm(total=len(texts), desc="translating the test split", unit="line",
              file=sys.stderr, disable=not show_progress, dynamic_ncols=True) as bar, \
            torch.autocast(translator.device.type, enabled=False):
        result = translator.search(texts, search, batch_tokens=batch_tokens,
                                   progress=bar.update)
    hyps = translator.texts([hypotheses[0] for hypotheses in result.hypotheses])
    pairs, truncated = _gather(list(zip(indices, hyps, strict=True)), result.truncated)
    scores = score([hyp for _, hyp in pairs], [[references[i] for i, _ in pairs]],
                   metrics=TEST_METRICS, options=MetricOptions(trg_lang=translator.tgt_lang))
    lines = [f"test: {len(pairs)} sentences of data.test, translated with {search.describe()} "
             "(the model's predict settings, which `evaluate --checkpoint` uses too)"]
    if truncated:
        lines.append(f"warning: {truncated} source line(s) were cut to fit the model")
    return scores, "\n".join([*lines, "", format_text(scores)])
