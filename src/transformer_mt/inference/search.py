"""Turning a trained model into translations: greedy, batched beam search and sampling.

Every search encodes the batch once and then calls `Transformer.decode_step`, which keeps the
past self-attention keys/values and the encoder's cross-attention keys/values in a cache, so a
step costs one position, never a recomputation of the prefix. All bookkeeping is tensor-wide:
no step loops over sentences in Python, and sentences that are done leave the batch (their rows
are dropped from every cache with `DecoderState.reorder`), so the batch shrinks as it finishes.

Conventions shared by all searches:
- the source is (B, S) ids padded with PAD; its length is its count of non-PAD ids (the
  source EOS included); `generate` accepts B = 0, the search functions need B >= 1;
- a hypothesis may hold at most `max_len = floor(a * src_len + b)` tokens before its EOS, capped
  at `max_positions - 1` so BOS + tokens fit the position table; at that length EOS is forced;
- PAD and BOS are never generated;
- scores are `log_prob / ((5 + len) / 6) ** alpha` (GNMT length penalty), where `len` counts
  the EOS and `log_prob` sums the model's (temperature 1) log-probabilities, EOS included.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from transformer_mt.data.batching import pack
from transformer_mt.model.transformer import DecoderState, Transformer

if TYPE_CHECKING:
    from transformer_mt.inference.loaded_model import LoadedModel

NEG_INF = float("-inf")

# Called with a sentence's row in its batch and its n-best list, as soon as it is finished.
Finished = Callable[[int, list["Hypothesis"]], None]


@dataclass(kw_only=True)
class Hypothesis:
    """One finished translation, as plain Python values (cheap to sort, print and pickle)."""

    tokens: list[int]  # target ids without BOS/EOS
    score: float  # log_prob / GNMT length penalty ((5 + len) / 6) ** alpha, len counts EOS
    log_prob: float  # sum of token log-probabilities, EOS included


@dataclass(kw_only=True)
class Translations:
    """What `translate_lines` returns: n-best lists in input order, and how many sources were
    cut to fit the model (so the caller can warn)."""

    hypotheses: list[list[Hypothesis]]
    truncated: int


def length_penalty_factor(length: int | Tensor, alpha: float) -> float | Tensor:
    """GNMT's ((5 + len) / 6) ** alpha (Wu et al. 2016); `length` counts the EOS."""
    return ((5 + length) / 6) ** alpha


def ended_hypothesis(path: list[int], length: int, log_prob: float, alpha: float) -> Hypothesis:
    """The hypothesis of a path that ended with EOS after `length` tokens (EOS included); its
    score is computed in float64 from the summed log-probability, the same way for every
    search, so greedy, sampling and beam search rank alike."""
    return Hypothesis(tokens=path[: length - 1],
                      score=log_prob / length_penalty_factor(length, alpha), log_prob=log_prob)


def max_lengths(model: Transformer, src: Tensor, a: float, b: int) -> Tensor:
    """Per sentence, the most tokens (EOS excluded) a hypothesis may have: a * src_len + b,
    capped so that BOS + tokens never exceed the model's position table."""
    src_len = src.ne(model.config.pad_id).sum(dim=1)
    limit = (a * src_len.double() + b).floor().long()
    return limit.clamp_(0, model.config.max_positions - 1)


def _log_probs(logits: Tensor, banned: Tensor, force_eos: Tensor | None, eos: int) -> Tensor:
    """float32 log-softmax of (R, V) logits with the `banned` ids (PAD, BOS) at -inf and, in
    rows `force_eos` (None: no row), every token but EOS banned (EOS keeps its own
    log-probability, so scores stay comparable)."""
    logp = F.log_softmax(logits.float(), dim=-1)
    logp.index_fill_(1, banned, NEG_INF)
    if force_eos is not None and bool(force_eos.any()):
        not_eos = torch.ones(logp.size(1), dtype=torch.bool, device=logp.device)
        not_eos[eos] = False
        logp.masked_fill_(force_eos[:, None] & not_eos[None, :], NEG_INF)
    return logp


def _banned_ids(model: Transformer, device: torch.device) -> Tensor:
    """The ids no search ever generates: PAD and BOS."""
    return torch.tensor([model.config.pad_id, model.config.bos_id], device=device)


@dataclass(frozen=True, kw_only=True)
class SearchOptions:
    """How to search, as one hashable value: the server merges concurrent requests into one
    batch only when their options are equal. `check` is the one validator of these options,
    used by `generate`, `translate`, `evaluate` and the server alike."""

    beam_size: int = 4
    length_penalty: float = 0.6
    max_len_a: float = 1.0
    max_len_b: int = 50
    nbest: int = 1
    sampling: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0

    def check(self, name: Callable[[str], str] = str) -> SearchOptions:
        """Raise ValueError for an impossible combination; returns self when fine. `name`
        spells a field as the caller's user knows it (`--beam-size` on the command line)."""
        if self.beam_size < 1:
            raise ValueError(f"{name('beam_size')} must be >= 1, got {self.beam_size}")
        if self.nbest < 1:
            raise ValueError(f"{name('nbest')} must be >= 1, got {self.nbest}")
        if not self.sampling and self.nbest > self.beam_size:
            raise ValueError(
                f"{name('nbest')} {self.nbest} exceeds {name('beam_size')} {self.beam_size}; "
                "beam search can only return as many hypotheses as its beam holds"
            )
        if not self.temperature > 0:
            raise ValueError(f"{name('temperature')} must be > 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"{name('top_k')} must be >= 0 (0 = off), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"{name('top_p')} must be in (0, 1], got {self.top_p}")
        if self.max_len_a < 0 or self.max_len_b < 0:
            raise ValueError(
                f"{name('max_len_a')} and {name('max_len_b')} must be >= 0, got "
                f"{self.max_len_a}, {self.max_len_b}"
            )
        return self

    def describe(self) -> str:
        """A beam or greedy search in words, for a score's report: `beam 4, length penalty 0.6,
        max length 1.0 * source + 50`."""
        how = "greedy" if self.beam_size == 1 else f"beam {self.beam_size}"
        return (f"{how}, length penalty {self.length_penalty}, max length {self.max_len_a} * "
                f"source + {self.max_len_b}")


@torch.inference_mode()
def generate(
    model: Transformer,
    src: Tensor,
    *,
    beam_size: int = 4,
    length_penalty: float = 0.6,
    max_len_a: float = 1.0,
    max_len_b: int = 50,
    nbest: int = 1,
    sampling: bool = False,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    on_finished: Finished | None = None,
) -> list[list[Hypothesis]]:
    """Translate a (B, S) PAD-padded batch of source ids; returns B lists of hypotheses, best
    first (up to `nbest`; fewer only when fewer distinct hypotheses exist).

    `on_finished(row, hypotheses)` is called for each sentence as soon as its search is
    over, before the batch ends: a server answers a short sentence without waiting for the
    longest one of its batch.

    `sampling` draws `nbest` independent samples per sentence (beam_size is then ignored);
    otherwise beam search, with beam size 1 run as greedy search (the same result, faster).
    The model is put in eval mode for the call (dropout would make the search random) and
    restored afterwards, so the training loop can call this from validation.
    """
    SearchOptions(beam_size=beam_size, length_penalty=length_penalty, max_len_a=max_len_a,
                  max_len_b=max_len_b, nbest=nbest, sampling=sampling, temperature=temperature,
                  top_k=top_k, top_p=top_p).check()
    if src.size(0) == 0:
        return []
    was_training = model.training
    model.eval()
    try:
        if sampling:
            return sample(
                model, src, temperature=temperature, top_k=top_k, top_p=top_p, nbest=nbest,
                length_penalty=length_penalty, max_len_a=max_len_a, max_len_b=max_len_b,
                generator=generator, on_finished=on_finished,
            )
        if beam_size == 1:
            return greedy_search(
                model, src, length_penalty=length_penalty, max_len_a=max_len_a,
                max_len_b=max_len_b, on_finished=on_finished,
            )
        return beam_search(
            model, src, beam_size=beam_size, length_penalty=length_penalty,
            max_len_a=max_len_a, max_len_b=max_len_b, nbest=nbest, on_finished=on_finished,
        )
    finally:
        model.train(was_training)


@torch.inference_mode()
def greedy_search(
    model: Transformer, src: Tensor, *, length_penalty: float = 0.6, max_len_a: float = 1.0,
    max_len_b: int = 50, on_finished: Finished | None = None,
) -> list[list[Hypothesis]]:
    """The most probable next token at every step; one hypothesis per sentence."""
    # max().indices is argmax (the first maximum on ties), and ~3x faster on CPU.
    return _one_path_per_row(
        model, src, lambda logp: logp.max(dim=-1).indices, copies=1, alpha=length_penalty,
        max_len_a=max_len_a, max_len_b=max_len_b, on_finished=on_finished,
    )


@torch.inference_mode()
def sample(
    model: Transformer, src: Tensor, *, temperature: float = 1.0, top_k: int = 0,
    top_p: float = 1.0, nbest: int = 1, length_penalty: float = 0.6, max_len_a: float = 1.0,
    max_len_b: int = 50, generator: torch.Generator | None = None,
    on_finished: Finished | None = None,
) -> list[list[Hypothesis]]:
    """Ancestral sampling from softmax(logits / temperature), optionally restricted to the
    `top_k` most probable tokens and then to the smallest set holding `top_p` of the mass
    (nucleus). `nbest` independent samples per sentence, sorted by score. Reproducible for a
    given `generator` seed, batch and device. The reported log-probabilities are the model's,
    at temperature 1 and unfiltered, so they compare with beam search scores."""

    def pick(logp: Tensor) -> Tensor:
        scores = logp / temperature
        if 0 < top_k < scores.size(-1):
            kth = scores.topk(top_k, dim=-1).values[:, -1:]
            scores = scores.masked_fill(scores < kth, NEG_INF)
        if top_p < 1.0:
            sorted_scores, order = scores.sort(dim=-1, descending=True)
            probs = sorted_scores.softmax(dim=-1)
            # Drop a token when the tokens ranked above it already hold top_p of the mass;
            # the most probable token always stays.
            drop = (probs.cumsum(dim=-1) - probs) >= top_p
            sorted_scores = sorted_scores.masked_fill(drop, NEG_INF)
            scores = torch.full_like(scores, NEG_INF).scatter(-1, order, sorted_scores)
        probs = scores.softmax(dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)

    return _one_path_per_row(
        model, src, pick, copies=nbest, alpha=length_penalty, max_len_a=max_len_a,
        max_len_b=max_len_b, on_finished=on_finished,
    )


def _one_path_per_row(
    model: Transformer, src: Tensor, pick: Callable[[Tensor], Tensor], *, copies: int,
    alpha: float, max_len_a: float, max_len_b: int, on_finished: Finished | None,
) -> list[list[Hypothesis]]:
    """Greedy search and sampling: each row follows one path, choosing a token with `pick`
    from its (R, V) log-probabilities. Rows that emit EOS leave the batch. `copies` rows per
    sentence (n samples) share one encoder pass; a sentence is finished when all its rows
    are."""
    eos = model.config.eos_id
    batch = src.size(0)
    memory, src_mask = model.encode(src)
    limit = max_lengths(model, src, max_len_a, max_len_b)
    state = model.start_decoding(memory, src_mask, max_length=int(limit.max()) + 1)
    if copies > 1:
        state.reorder(torch.arange(batch, device=src.device).repeat_interleave(copies))
        limit = limit.repeat_interleave(copies)
    n_rows = limit.numel()
    steps = int(limit.max()) + 1
    out_tokens = torch.full((n_rows, steps), model.config.pad_id, device=src.device)
    out_logp = torch.zeros(n_rows, device=src.device)
    out_len = torch.zeros(n_rows, dtype=torch.long, device=src.device)

    results: list[list[Hypothesis]] = [[] for _ in range(batch)]
    rows_left = [copies] * batch

    def finish(sentences: list[int]) -> None:
        """The n-best lists of `sentences`, whose rows have all ended (one read of the output
        tensors for all of them: on a GPU each read waits for the device)."""
        out_rows = torch.tensor([i * copies + c for i in sentences for c in range(copies)],
                                device=src.device)
        toks, lens, logps = (out_tokens[out_rows].tolist(), out_len[out_rows].tolist(),
                             out_logp[out_rows].tolist())
        for j, sentence in enumerate(sentences):
            span = slice(j * copies, (j + 1) * copies)
            hyps = [ended_hypothesis(t, n, lp, alpha)
                    for t, n, lp in zip(toks[span], lens[span], logps[span], strict=True)]
            results[sentence] = sorted(hyps, key=lambda h: h.score, reverse=True)
            if on_finished is not None:
                on_finished(sentence, results[sentence])

    rows = torch.arange(n_rows, device=src.device)  # active row -> output row
    path = torch.empty((n_rows, steps), dtype=torch.long, device=src.device)  # active rows
    logp_sum = torch.zeros(n_rows, device=src.device)
    tokens = torch.full((n_rows,), model.config.bos_id, device=src.device)
    banned, limit_min = _banned_ids(model, src.device), int(limit.min())
    for step in range(1, steps + 1):  # `step` = length of the path after this token
        force = limit < step if step > limit_min else None
        logp = _log_probs(model.decode_step(tokens, state), banned, force, eos)
        tokens = pick(logp)
        logp_sum += logp.gather(1, tokens[:, None]).squeeze(1)
        path[:, step - 1] = tokens
        ended = tokens.eq(eos)
        if bool(ended.any()):
            out_tokens[rows[ended], :step] = path[ended, :step]
            out_logp[rows[ended]] = logp_sum[ended]
            out_len[rows[ended]] = step
            done = []
            for row in rows[ended].tolist():
                rows_left[row // copies] -= 1
                if rows_left[row // copies] == 0:
                    done.append(row // copies)
            if done:
                finish(done)
            alive = (~ended).nonzero().squeeze(1)
            if alive.numel() == 0:
                break
            state.reorder(alive)
            rows, tokens, limit = rows[alive], tokens[alive], limit[alive]
            logp_sum, path, limit_min = logp_sum[alive], path[alive], int(limit.min())
    # EOS is forced at the length limit, so every row has ended, unless the model's EOS
    # log-probability is -inf there (an overflowed logit): those get what they hold.
    if unended := [i for i, left in enumerate(rows_left) if left]:
        out_tokens[rows] = path
        finish(unended)
    return results


@torch.inference_mode()
def beam_search(
    model: Transformer, src: Tensor, *, beam_size: int = 4, length_penalty: float = 0.6,
    max_len_a: float = 1.0, max_len_b: int = 50, nbest: int = 1,
    on_finished: Finished | None = None,
) -> list[list[Hypothesis]]:
    """Batched beam search; returns per sentence the `nbest` best finished hypotheses.

    All sentences' beams form one (A * K)-row batch. Each step ranks, per sentence, the K * V
    extensions by cumulative log-probability (all alive hypotheses have the same length, so
    this is also the length-penalised order) and keeps the top 2K. As in fairseq, an EOS
    extension ranked within the top K is finished (scored with the length penalty and merged
    into the sentence's n-best pool), and the K best non-EOS extensions stay alive, so the beam
    never shrinks.

    A sentence is done, and leaves the batch, when any of these holds:
    - K hypotheses have finished (fairseq's rule; with K = 1 this is exactly greedy search);
    - the n-best pool can no longer change: the best alive log-probability L <= 0 can only
      fall, so no continuation can score above L / max(lp) over the lengths still allowed,
      and that bound is <= the pool's `nbest`-th score (this stops early without changing the
      result of the first rule);
    - it reached its maximum length, where EOS was forced.
    """
    c = model.config
    eos, vocab, k = c.eos_id, c.vocab_size, beam_size
    device = src.device
    batch = src.size(0)
    memory, src_mask = model.encode(src)
    limit = max_lengths(model, src, max_len_a, max_len_b)  # per alive sentence
    width = max(int(limit.max()), 1)
    state: DecoderState = model.start_decoding(memory, src_mask, max_length=width + 1)

    pool = _NBestPool(batch, nbest, width, c.pad_id, device)
    results: list[list[Hypothesis]] = [[] for _ in range(batch)]

    def finish(done: Tensor) -> None:
        """The n-best lists of the alive sentences `done` (indices into the alive ones)."""
        for i, hyps in zip(sent[done].tolist(), pool.hypotheses(done, length_penalty),
                           strict=True):
            results[i] = hyps
            if on_finished is not None:
                on_finished(i, hyps)

    sent = torch.arange(batch, device=device)  # alive sentence -> batch index
    # The first step runs one row per sentence; its top K extensions then fill the beam, and
    # from the first reorder on the K beams of a sentence share its one encoder row (group K:
    # the encoder output and cross-attention keys/values are never copied per beam).
    cum = torch.zeros((batch, 1), device=device)  # (A, K_cur) cumulative log-probabilities
    history = torch.empty((batch, width), dtype=torch.long, device=device)  # row -> tokens
    last = torch.full((batch,), c.bos_id, device=device)
    # Per alive sentence, the best length penalty a continuation can still reach (for the
    # early stop), the first row of its beams, and (in Python) the shortest length limit.
    best_penalty = length_penalty_factor(limit + 1, length_penalty)
    first_row = torch.arange(batch, device=device)[:, None]
    banned, limit_min, n_cand = _banned_ids(model, device), int(limit.min()), 2 * k
    for step in range(1, width + 2):  # `step` = hypothesis length after this token, EOS incl.
        alive, k_cur = cum.shape
        force = (limit < step).repeat_interleave(k_cur) if step > limit_min else None
        logp = _log_probs(model.decode_step(last, state), banned, force, eos)
        # In place: logp is not needed after this, and a fresh (A, K * V) tensor per step
        # costs an allocation and a write of the whole vocabulary for every beam.
        cand = logp.view(alive, k_cur, vocab).add_(cum[:, :, None]).view(alive, k_cur * vocab)
        if cand.size(1) < n_cand:  # tiny vocabulary: pad with impossible candidates
            cand = F.pad(cand, (0, n_cand - cand.size(1)), value=NEG_INF)
        cand_score, cand_idx = cand.topk(n_cand, dim=1)
        cand_beam = cand_idx // vocab
        if k_cur * vocab < n_cand:
            cand_beam.clamp_(max=k_cur - 1)
        cand_tok = cand_idx % vocab
        is_eos = cand_tok.eq(eos)
        ended = False
        if bool(is_eos.any()):
            ends = is_eos[:, :k] & cand_score[:, :k].isfinite()
            if ended := bool(ends.any()):
                # As fairseq: an EOS within the top K finishes a hypothesis.
                paths = history.view(alive, k_cur, width)[:, :, : step - 1].gather(
                    1, cand_beam[:, :k, None].expand(-1, -1, step - 1))
                pool.add(cand_score[:, :k].masked_fill(~ends, NEG_INF), ends, paths, step,
                         length_penalty)
            # The K best non-EOS candidates stay alive (a stable sort keeps their order).
            keep = is_eos.to(torch.uint8).sort(dim=1, stable=True).indices[:, :k]
            cum, beam, tokens = (cand_score.gather(1, keep), cand_beam.gather(1, keep),
                                 cand_tok.gather(1, keep))
        else:  # no EOS among the candidates: the K best stay alive
            cum, beam, tokens = cand_score[:, :k], cand_beam[:, :k], cand_tok[:, :k]
        rows = first_row * k_cur + beam  # (A, K) parent rows

        bound = cum[:, 0] / best_penalty.clamp_min(length_penalty_factor(step + 1,
                                                                         length_penalty))
        done = bound <= pool.score[:, -1]
        if ended:
            done |= pool.finished >= k
        if step > limit_min:
            done |= limit < step
        if bool(done.any()):
            finish(done.nonzero().squeeze(1))
            keep_sent = (~done).nonzero().squeeze(1)
            if keep_sent.numel() == 0:
                break
            pool.keep(keep_sent)
            sent, limit, cum = sent[keep_sent], limit[keep_sent], cum[keep_sent]
            best_penalty, tokens, rows = best_penalty[keep_sent], tokens[keep_sent], rows[keep_sent]
            first_row, limit_min = first_row[: keep_sent.numel()], int(limit.min())
            state.reorder(rows.view(-1), group=k)
        elif k_cur == 1:  # first step: each sentence's single row becomes its K beams
            state.reorder(rows.view(-1), group=k)
        else:
            # Beams only moved within their sentence, which keeps its encoder row: only the
            # self-attention caches need reordering.
            state.reorder_within_groups(rows.view(-1))
        last = tokens.reshape(-1)
        history = history.index_select(0, rows.view(-1))
        history[:, step - 1] = last

    return results


class _NBestPool:
    """The `nbest` best finished hypotheses of each alive sentence of a beam search, as
    (A, nbest) tensors sorted best first (-inf score: an empty slot), and each sentence's
    count of finished hypotheses."""

    def __init__(self, batch: int, nbest: int, width: int, pad_id: int,
                 device: torch.device) -> None:
        self.nbest, self.pad_id = nbest, pad_id
        self.score = torch.full((batch, nbest), NEG_INF, device=device)
        self.log_prob = torch.full((batch, nbest), NEG_INF, device=device)
        self.length = torch.zeros((batch, nbest), dtype=torch.long, device=device)
        self.tokens = torch.full((batch, nbest, width), pad_id, device=device)
        self.finished = torch.zeros(batch, dtype=torch.long, device=device)

    def add(self, log_prob: Tensor, ends: Tensor, paths: Tensor, step: int,
            length_penalty: float) -> None:
        """Merge (A, K) hypotheses that end at `step` with EOS (log-probability -inf: none)
        whose tokens before the EOS are `paths` (A, K, step - 1)."""
        tokens = torch.full((*log_prob.shape, self.tokens.size(2)), self.pad_id,
                            device=paths.device)
        tokens[:, :, : step - 1] = paths
        penalty = length_penalty_factor(step, length_penalty)
        merged_score = torch.cat([self.score, log_prob / penalty], 1)
        # Stable sort: on a tie the earlier (shorter) hypothesis keeps its rank.
        order = merged_score.sort(dim=1, descending=True, stable=True).indices[:, : self.nbest]
        self.score = merged_score.gather(1, order)
        self.log_prob = torch.cat([self.log_prob, log_prob], 1).gather(1, order)
        merged_len = torch.cat([self.length, torch.full_like(log_prob, step).long()], 1)
        self.length = merged_len.gather(1, order)
        self.tokens = torch.cat([self.tokens, tokens], 1).gather(
            1, order[:, :, None].expand(-1, -1, self.tokens.size(2)))
        self.finished += ends.sum(dim=1)

    def keep(self, index: Tensor) -> None:
        """Keep the sentences `index` (the others are done)."""
        self.score, self.log_prob = self.score[index], self.log_prob[index]
        self.length, self.tokens = self.length[index], self.tokens[index]
        self.finished = self.finished[index]

    def hypotheses(self, index: Tensor, length_penalty: float) -> list[list[Hypothesis]]:
        """The n-best lists of the sentences `index`, as plain Python values."""
        return [[ended_hypothesis(t, n, lp, length_penalty)
                 for s, lp, n, t in zip(scores, logps, lens, toks, strict=True) if s != NEG_INF]
                for scores, logps, lens, toks in zip(
                    self.score[index].tolist(), self.log_prob[index].tolist(),
                    self.length[index].tolist(), self.tokens[index].tolist(), strict=True)]


def _token_batches(lengths: Sequence[int], batch_tokens: int) -> list[list[int]]:
    """Indices grouped so each batch's padded size (sentences x longest) stays within
    `batch_tokens` (a longer sentence still gets a batch of its own), by the same packing as
    training batches. Longest first, so an out-of-memory batch shows up at once rather than at
    the end of a long run."""
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    bounds = pack(lengths, order, batch_tokens)
    return [order[start:end].tolist() for start, end in zip(bounds[:-1], bounds[1:],
                                                               strict=True)]


def translate_lines(
    loaded: LoadedModel,
    lines: Sequence[str],
    *,
    batch_tokens: int,
    progress: Callable[[int], None] | None = None,
    on_finished: Finished | None = None,
    token_ids: Sequence[Sequence[int]] | None = None,
    **generate_kwargs,
) -> Translations:
    """Translate raw text lines with `generate`; n-best lists come back in input order.

    Lines are tokenized, sorted by length and batched by padded source tokens, which keeps
    padding (wasted compute) small. Empty or whitespace-only lines never reach the model and
    get one empty hypothesis (score 0). A source longer than max_positions - 1 tokens is cut
    to fit (EOS appended after the cut) and counted in `truncated`. `progress` is called with
    the number of lines finished after each batch; `on_finished(line index, hypotheses)` as
    soon as a line's search is over (see `generate`). `token_ids`, when given, are the lines'
    subword ids (no EOS), already tokenized (the server tokenizes once, off its event loop).
    """
    model, tokenizer = loaded.model, loaded.tokenizer
    c = model.config
    device = next(model.parameters()).device
    hypotheses: list[list[Hypothesis]] = [[] for _ in lines]

    def finished(index: int, hyps: list[Hypothesis]) -> None:
        hypotheses[index] = hyps
        if on_finished is not None:
            on_finished(index, hyps)

    todo = []  # the lines the model translates
    for i, line in enumerate(lines):
        if line.strip():
            todo.append(i)
        else:
            finished(i, [Hypothesis(tokens=[], score=0.0, log_prob=0.0)])
    if progress is not None and len(todo) < len(lines):
        progress(len(lines) - len(todo))
    cap = c.max_positions - 1
    encoded = (tokenizer.encode([lines[i] for i in todo]) if token_ids is None
               else [list(token_ids[i]) for i in todo])
    truncated = sum(len(ids) > cap for ids in encoded)
    sources = [ids[:cap] + [c.eos_id] for ids in encoded]
    for batch in _token_batches([len(s) for s in sources], batch_tokens):
        longest = max(len(sources[j]) for j in batch)
        src = torch.full((len(batch), longest), c.pad_id, dtype=torch.long)
        for row, j in enumerate(batch):
            src[row, : len(sources[j])] = torch.tensor(sources[j])
        generate(model, src.to(device), **generate_kwargs,
                 on_finished=lambda row, hyps, batch=batch: finished(todo[batch[row]], hyps))
        if progress is not None:
            progress(len(batch))
    return Translations(hypotheses=hypotheses, truncated=truncated)
