"""Greedy, beam search and sampling on tiny random models (decoding.py)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from tests._tiny_ckpt import make_src, tiny_model
from transformer_mt.config import BOS_ID, EOS_ID, PAD_ID, TransformerConfig
from transformer_mt.inference import search as decoding
from transformer_mt.inference.search import (
    Hypothesis,
    beam_search,
    generate,
    greedy_search,
    max_lengths,
    sample,
)
from transformer_mt.model import Transformer


def tokens(results: list[list[Hypothesis]]) -> list[list[list[int]]]:
    return [[h.tokens for h in hyps] for hyps in results]


def sequence_log_probs(
    model: Transformer, src: torch.Tensor, seqs: list[list[int]]
) -> torch.Tensor:
    """Teacher-forced sum of log p(token) over seq + [EOS] for one source row (float32
    log-softmax, as the searches use; PAD/BOS are never targets, so the bans don't matter)."""
    longest = max(len(s) for s in seqs) + 1
    tgt_in = torch.full((len(seqs), longest), PAD_ID)
    target = torch.full((len(seqs), longest), PAD_ID)
    for row, s in enumerate(seqs):
        tgt_in[row, : len(s) + 1] = torch.tensor([BOS_ID, *s])
        target[row, : len(s) + 1] = torch.tensor([*s, EOS_ID])
    with torch.no_grad():
        logp = F.log_softmax(model(src.expand(len(seqs), -1), tgt_in).float(), dim=-1)
    picked = logp.gather(2, target[:, :, None]).squeeze(2)
    return picked.masked_fill(target.eq(PAD_ID), 0.0).sum(dim=1)


def test_beam_size_one_is_exactly_greedy() -> None:
    model = tiny_model()
    src = make_src([3, 9, 5, 14, 2, 7], vocab=12)
    greedy = greedy_search(model, src, max_len_a=1.0, max_len_b=6)
    beam = beam_search(model, src, beam_size=1, max_len_a=1.0, max_len_b=6)
    assert len({len(hyps[0].tokens) for hyps in greedy}) > 2  # ends at different steps
    assert tokens(beam) == tokens(greedy)
    assert [h[0].score for h in beam] == [h[0].score for h in greedy]
    assert [h[0].log_prob for h in beam] == [h[0].log_prob for h in greedy]
    # generate() takes the greedy path for beam 1 (faster), with the same result.
    assert tokens(generate(model, src, beam_size=1, max_len_a=1.0, max_len_b=6)) == tokens(greedy)


@pytest.mark.parametrize("length_hint", [16, 2])
def test_incremental_decoding_matches_full_forward(length_hint: int) -> None:
    """The KV cache must reproduce teacher forcing at every step, also after a reorder, and
    also when it outgrows the length it was made for (it doubles, keeping what it holds)."""
    model = tiny_model(vocab=30)
    src = make_src([5, 11, 8], vocab=30)
    tgt = torch.cat([torch.full((3, 1), BOS_ID), torch.randint(4, 30, (3, 9))], dim=1)
    perm = torch.tensor([2, 0, 1])
    with torch.no_grad():
        full = F.log_softmax(model(src, tgt).float(), dim=-1)
        full_perm = F.log_softmax(model(src[perm], tgt[perm]).float(), dim=-1)
        memory, src_mask = model.encode(src)
        state = model.start_decoding(memory, src_mask, max_length=length_hint)
        reordered = False
        for t in range(tgt.size(1)):
            if t == 5:  # beam search reorders rows between steps
                state.reorder(perm)
                reordered = True
            rows = perm if reordered else torch.arange(3)
            step = F.log_softmax(model.decode_step(tgt[rows, t], state).float(), dim=-1)
            expected = full_perm[:, t] if reordered else full[:, t]
            torch.testing.assert_close(step, expected, atol=1e-5, rtol=1e-5)
            assert state.self_cache.length == t + 1  # one new position per step
    assert state.self_cache.buffer.size(0) >= tgt.size(1)  # grown past a short hint


@pytest.mark.parametrize(
    ("vocab", "max_len", "beam", "alpha"),
    [(6, 3, 64, 0.0), (6, 3, 64, 0.6), (6, 3, 64, 2.0), (6, 3, 64, 4.0), (5, 6, 128, 0.6)],
)
def test_beam_search_equals_exhaustive_search(
    vocab: int, max_len: int, beam: int, alpha: float
) -> None:
    """With 4 specials the decoder may emit UNK, the vocab - 4 words, or EOS. Vocabulary 6
    and at most 3 tokens give 1 + 3 + 9 + 27 = 40 hypotheses, with never more than 36 finite
    candidates in a step; vocabulary 5 and 6 tokens give 127, with at most 96. The beam holds
    them all, so beam search must return the exhaustive ranking, and its early stop must not
    lose the best one. (With so many impossible, -inf, candidates in the beam, the second
    case also checks that those are never counted as finished hypotheses.)"""
    model = tiny_model(vocab=vocab, seed=6)
    src = make_src([2, 6, 4, 3, 5, 7, 2, 4], vocab=vocab, seed=1)
    words = [1, *range(4, vocab)]
    seqs = [list(s) for n in range(max_len + 1) for s in itertools.product(words, repeat=n)]
    options = dict(length_penalty=alpha, max_len_a=0.0, max_len_b=max_len)
    full = beam_search(model, src, beam_size=beam, nbest=len(seqs), **options)
    best = beam_search(model, src, beam_size=beam, nbest=1, **options)
    for row in range(src.size(0)):
        logp = sequence_log_probs(model, src[row : row + 1], seqs)
        scores = [lp / ((5 + len(s) + 1) / 6) ** alpha
                  for lp, s in zip(logp.tolist(), seqs, strict=True)]
        ranking = sorted(range(len(seqs)), key=lambda i: -scores[i])
        assert [h.tokens for h in full[row]] == [seqs[i] for i in ranking]
        assert [h.score for h in full[row]] == pytest.approx([scores[i] for i in ranking],
                                                             abs=1e-5)
        assert best[row][0].tokens == seqs[ranking[0]]


def test_length_penalty_favours_longer_hypotheses_as_alpha_grows() -> None:
    model = tiny_model(vocab=6, seed=6)
    src = make_src([2, 6, 4, 3, 5, 7, 2, 4], vocab=6, seed=1)
    lengths = {}
    for alpha in (0.0, 1.0, 3.0):
        results = beam_search(
            model, src, beam_size=64, length_penalty=alpha, max_len_a=0.0, max_len_b=3
        )
        lengths[alpha] = [len(hyps[0].tokens) for hyps in results]
    for short, long in ((0.0, 1.0), (1.0, 3.0)):
        assert all(a <= b for a, b in zip(lengths[short], lengths[long], strict=True))
    assert sum(lengths[3.0]) > sum(lengths[0.0])


def test_scores_and_nbest_order() -> None:
    model = tiny_model()
    src = make_src([4, 9, 6], vocab=12)
    results = beam_search(model, src, beam_size=5, nbest=5, length_penalty=0.6, max_len_b=8)
    for row, hyps in enumerate(results):
        assert len(hyps) == 5
        assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
        assert len({tuple(h.tokens) for h in hyps}) == 5
        teacher = sequence_log_probs(model, src[row : row + 1], [h.tokens for h in hyps])
        for h, lp in zip(hyps, teacher.tolist(), strict=True):
            assert h.log_prob == pytest.approx(lp, abs=1e-4)
            assert h.score == pytest.approx(h.log_prob / ((5 + len(h.tokens) + 1) / 6) ** 0.6)


def test_sentence_alone_equals_sentence_in_mixed_batch() -> None:
    model = tiny_model()
    lengths = [3, 40, 12, 2, 25]
    src = make_src(lengths, vocab=12)
    for options in (dict(beam_size=1), dict(beam_size=4, nbest=3)):
        batched = generate(model, src, max_len_b=10, **options)
        for row, n in enumerate(lengths):
            alone = generate(model, src[row : row + 1, :n], max_len_b=10, **options)[0]
            assert [h.tokens for h in alone] == [h.tokens for h in batched[row]]
            assert [h.score for h in alone] == pytest.approx(
                [h.score for h in batched[row]], abs=1e-4
            )


def test_max_length_is_per_sentence_and_capped_by_positions() -> None:
    model = tiny_model(vocab=12, seed=1, max_positions=16)
    src = make_src([2, 6, 14], vocab=12)
    assert max_lengths(model, src, 1.0, 2).tolist() == [4, 8, 15]
    for options in (dict(beam_size=1), dict(beam_size=4, nbest=4), dict(sampling=True)):
        results = generate(model, src, max_len_a=1.0, max_len_b=2, **options)
        for hyps, cap in zip(results, [4, 8, 15], strict=True):
            assert all(len(h.tokens) <= cap for h in hyps)
    greedy = greedy_search(model, src, max_len_a=0.0, max_len_b=1000)  # would overflow
    assert max(len(h[0].tokens) for h in greedy) == 15  # EOS forced at the cap
    assert [len(h[0].tokens) for h in greedy_search(model, src, max_len_a=0, max_len_b=0)] \
        == [0, 0, 0]


def test_encoder_runs_once_per_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_model()
    calls = []
    encode = model.encode
    monkeypatch.setattr(model, "encode", lambda src: calls.append(src.shape) or encode(src))
    generate(model, make_src([4, 7], vocab=12), beam_size=4, max_len_b=10)
    generate(model, make_src([4, 7], vocab=12), sampling=True, nbest=3, max_len_b=10)
    assert calls == [torch.Size([2, 7]), torch.Size([2, 7])]


def test_sampling_is_reproducible_with_a_seed() -> None:
    model = tiny_model()
    src = make_src([4, 9, 6, 3], vocab=12)

    def draw(seed: int) -> list[list[list[int]]]:
        return tokens(sample(model, src, nbest=3, max_len_b=10,
                             generator=torch.Generator().manual_seed(seed)))

    assert draw(7) == draw(7)
    assert draw(7) != draw(8)


def test_low_temperature_top_k_one_and_tiny_top_p_equal_greedy() -> None:
    model = tiny_model()
    src = make_src([4, 9, 6, 3, 12], vocab=12)
    greedy = tokens(greedy_search(model, src, max_len_b=10))
    gen = torch.Generator().manual_seed(0)
    for options in (dict(temperature=1e-4), dict(top_k=1), dict(top_p=1e-6)):
        assert tokens(sample(model, src, max_len_b=10, generator=gen, **options)) == greedy


def test_top_k_and_top_p_restrict_the_candidates() -> None:
    model = tiny_model(vocab=30)
    src = make_src([6, 10], vocab=30)
    for options, check in (
        (dict(top_k=3), lambda rank, mass_before: rank < 3),
        (dict(top_p=0.5), lambda rank, mass_before: mass_before < 0.5),
    ):
        results = sample(model, src, nbest=4, max_len_b=8, temperature=1.0,
                         generator=torch.Generator().manual_seed(1), **options)
        for row, hyps in enumerate(results):
            for h in hyps:
                tgt_in = torch.tensor([[BOS_ID, *h.tokens]])
                with torch.no_grad():
                    logits = model(src[row : row + 1], tgt_in)[0].float()
                logits[:, [PAD_ID, BOS_ID]] = -math.inf
                probs = logits.softmax(-1)
                cap = int(src[row].ne(PAD_ID).sum()) + 8
                chosen = [*h.tokens, EOS_ID] if len(h.tokens) < cap else h.tokens  # not forced
                for pos, tok in enumerate(chosen):
                    order = probs[pos].argsort(descending=True).tolist()
                    rank = order.index(tok)
                    assert check(rank, probs[pos, order[:rank]].sum().item()), (options, pos)


def test_sample_log_prob_is_the_models_untempered_log_prob() -> None:
    model = tiny_model()
    src = make_src([5], vocab=12)
    [[h]] = sample(model, src, temperature=2.0, max_len_b=10,
                   generator=torch.Generator().manual_seed(3))
    assert h.log_prob == pytest.approx(sequence_log_probs(model, src, [h.tokens]).item(),
                                       abs=1e-4)


@pytest.mark.parametrize(
    "options",
    [dict(beam_size=0), dict(nbest=0), dict(beam_size=2, nbest=3),
     dict(sampling=True, temperature=0.0), dict(sampling=True, top_p=0.0),
     dict(sampling=True, top_p=1.5), dict(top_k=-1), dict(max_len_b=-1)],
)
def test_generate_rejects_impossible_options(options: dict) -> None:
    with pytest.raises(ValueError):
        generate(tiny_model(), make_src([3], vocab=12), **options)


def test_empty_batch_gives_no_results() -> None:
    assert generate(tiny_model(), torch.zeros((0, 5), dtype=torch.long)) == []


def test_generate_uses_eval_mode_and_restores_training_mode() -> None:
    torch.manual_seed(0)
    config = TransformerConfig.preset(
        "tiny", vocab_size=12, d_model=32, n_heads=4, d_ff=64, dropout=0.5, max_positions=64,
    )
    model = Transformer(config).train()  # with dropout active the search would be random
    src = make_src([4, 9], vocab=12)
    first = tokens(generate(model, src, max_len_b=10))
    assert model.training
    assert tokens(generate(model, src, max_len_b=10)) == first


def test_token_batches_respect_the_budget() -> None:
    lengths = [5, 50, 3, 3, 20, 200, 7, 7, 7]
    batches = decoding._token_batches(lengths, batch_tokens=40)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        padded = len(batch) * max(lengths[i] for i in batch)
        assert padded <= 40 or len(batch) == 1


def never_ending_model() -> Transformer:
    """A tiny model whose decoder output is one constant vector, whose EOS logit is far below
    every other: each hypothesis runs to its length limit, where EOS is forced."""
    model = tiny_model()
    last_norm = model.decoder_layers[-1].ffn_norm  # post-norm: the decoder's last operation
    with torch.no_grad():
        last_norm.weight.zero_()
        last_norm.bias.copy_(torch.randn(last_norm.bias.shape))
        model.output_proj.weight[EOS_ID] = -10 * last_norm.bias
    return model


@pytest.mark.parametrize("options", [
    {"beam_size": 1}, {"beam_size": 3, "nbest": 2}, {"sampling": True, "nbest": 2},
])
def test_each_sentence_is_reported_as_soon_as_it_is_done(options: dict) -> None:
    """With limits of 1, 8 and 4 tokens (max_len_a 1, b 0 on sources of 1, 8 and 4 ids), the
    sentences end after 2, 9 and 5 decoder steps: `on_finished` hands each its final n-best
    list right then, in that order, not when the batch's longest sentence is done."""
    model = never_ending_model()
    src = make_src([1, 8, 4], vocab=12)
    steps = 0
    decode_step = model.decode_step

    def counted(*args):
        nonlocal steps
        steps += 1
        return decode_step(*args)

    model.decode_step = counted
    reported: list[tuple[int, int, list[Hypothesis]]] = []
    results = generate(model, src, max_len_a=1.0, max_len_b=0, **options,
                       on_finished=lambda row, hyps: reported.append((row, steps, hyps)))
    assert [(row, at) for row, at, _ in reported] == [(0, 2), (2, 5), (1, 9)]
    assert steps == 9
    assert [len(hyps[0].tokens) for hyps in results] == [1, 8, 4]
    assert all(results[row] == hyps for row, _, hyps in reported)


def test_a_row_that_never_ends_still_gets_a_hypothesis() -> None:
    """If EOS could not be picked even where it is forced (its log-probability -inf after an
    overflow), the search still ends at the length limit and every sentence is reported."""
    reported = []
    results = decoding._one_path_per_row(
        tiny_model(), make_src([3, 5], vocab=12), lambda logp: torch.full_like(logp[:, 0], 5,
                                                                             dtype=torch.long),
        copies=2, alpha=0.6, max_len_a=1.0, max_len_b=0,
        on_finished=lambda row, hyps: reported.append(row))
    assert sorted(reported) == [0, 1] and [len(hyps) for hyps in results] == [2, 2]
