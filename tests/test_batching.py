"""Token-bucket batching: budgets, coverage, masks, per-epoch shuffling and DDP sharding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from transformer_mt.config import BOS_ID, EOS_ID, PAD_ID
from transformer_mt.data.batching import (
    EncodedPairs,
    TokenBucketBatchSampler,
    collate,
    flatten,
)
from transformer_mt.errors import UserError
from transformer_mt.model.transformer import source_mask


@pytest.fixture
def pairs() -> EncodedPairs:
    rng = np.random.default_rng(0)
    src = [rng.integers(4, 100, rng.integers(1, 60)).tolist() for _ in range(500)]
    tgt = [rng.integers(4, 100, rng.integers(1, 70)).tolist() for _ in range(500)]
    return EncodedPairs.from_lists(src, tgt)


def padded_size(dataset: EncodedPairs, batch: list[int]) -> int:
    longest = max(max(dataset.src_lengths[i], dataset.tgt_lengths[i]) for i in batch)
    return int(longest) * len(batch)


def test_batches_respect_max_tokens_and_cover_every_pair_once(pairs: EncodedPairs) -> None:
    sampler = TokenBucketBatchSampler(pairs.src_lengths, pairs.tgt_lengths, 600, seed=3)
    batches = list(sampler)
    assert all(padded_size(pairs, b) <= 600 for b in batches)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(pairs)))
    assert len(sampler) == len(batches)
    # padding stays small: sorted buckets waste little
    real = sum(int(max(pairs.src_lengths[i], pairs.tgt_lengths[i])) for i in flat)
    assert real / sum(padded_size(pairs, b) for b in batches) > 0.8


def test_epochs_are_shuffled_deterministically(pairs: EncodedPairs) -> None:
    sampler = TokenBucketBatchSampler(pairs.src_lengths, pairs.tgt_lengths, 600, seed=3)
    epoch0 = list(sampler)
    sampler.set_epoch(1)
    epoch1 = list(sampler)
    assert epoch0 != epoch1
    again = TokenBucketBatchSampler(pairs.src_lengths, pairs.tgt_lengths, 600, seed=3)
    again.set_epoch(1)
    assert list(again) == epoch1


def test_ddp_ranks_get_disjoint_batches(pairs: EncodedPairs) -> None:
    per_rank = [
        list(TokenBucketBatchSampler(pairs.src_lengths, pairs.tgt_lengths, 600, seed=3,
                                     num_replicas=2, rank=r))
        for r in range(2)
    ]
    seen = [{i for b in batches for i in b} for batches in per_rank]
    assert len(per_rank[0]) == len(per_rank[1]) > 0  # equal step counts keep DDP in lockstep
    assert not seen[0] & seen[1]
    single = list(TokenBucketBatchSampler(pairs.src_lengths, pairs.tgt_lengths, 600, seed=3))
    assert len(seen[0] | seen[1]) >= len(pairs) - sum(len(b) for b in single[-1:])


def test_evaluation_sampler_keeps_every_pair_across_ranks(pairs: EncodedPairs) -> None:
    samplers = [TokenBucketBatchSampler(pairs.src_lengths, pairs.tgt_lengths, 600,
                                        shuffle=False, num_replicas=3, rank=r) for r in range(3)]
    flat = sorted(i for s in samplers for b in s for i in b)
    assert flat == list(range(len(pairs)))


def test_resume_skips_consumed_batches(pairs: EncodedPairs) -> None:
    sampler = TokenBucketBatchSampler(pairs.src_lengths, pairs.tgt_lengths, 600, seed=3)
    full = list(sampler)
    sampler.skip_batches = 5
    assert list(sampler) == full[5:]
    assert list(sampler) == full  # the skip applies once


def test_sentence_longer_than_budget_is_a_user_error(pairs: EncodedPairs) -> None:
    with pytest.raises(UserError, match="max_tokens=50 is smaller than the longest"):
        TokenBucketBatchSampler(pairs.src_lengths, pairs.tgt_lengths, 50)


def test_collate_pads_and_masks_match_lengths() -> None:
    dataset = EncodedPairs.from_lists([[5, 6, 7], [8]], [[9], [10, 11, 12, 13]])
    batch = collate(dataset.batch([0, 1]))
    assert batch["src"].tolist() == [[5, 6, 7, EOS_ID], [8, EOS_ID, PAD_ID, PAD_ID]]
    assert batch["tgt_in"].tolist() == [[BOS_ID, 9, 0, 0, 0], [BOS_ID, 10, 11, 12, 13]]
    assert batch["tgt_out"].tolist() == [[9, EOS_ID, 0, 0, 0], [10, 11, 12, 13, EOS_ID]]
    mask = source_mask(batch["src"], PAD_ID)[:, 0, 0]
    assert mask.sum(-1).tolist() == (dataset.src_lengths).tolist() == [4, 2]
    assert batch["index"].tolist() == [0, 1]
    assert batch["src"].dtype == torch.long


def reference_collate(items: list[tuple[int, np.ndarray, np.ndarray]]) -> dict[str, list]:
    """Row by row, as the loader padded batches before it gathered them whole."""
    src_len = max(len(s) for _, s, _ in items) + 1
    tgt_len = max(len(t) for _, _, t in items) + 1
    out: dict[str, list] = {"index": [], "src": [], "tgt_in": [], "tgt_out": []}
    for i, s, t in items:
        s, t = [int(x) for x in s], [int(x) for x in t]
        out["index"].append(i)
        out["src"].append(s + [EOS_ID] + [PAD_ID] * (src_len - len(s) - 1))
        out["tgt_in"].append([BOS_ID] + t + [PAD_ID] * (tgt_len - len(t) - 1))
        out["tgt_out"].append(t + [EOS_ID] + [PAD_ID] * (tgt_len - len(t) - 1))
    return out


@pytest.mark.parametrize("mapped", [False, True])
def test_whole_batch_collate_equals_row_by_row_padding(tmp_path, mapped: bool) -> None:
    rng = np.random.default_rng(5)
    src = [rng.integers(4, 60_000, rng.integers(0, 40)) for _ in range(300)]
    tgt = [rng.integers(4, 60_000, rng.integers(0, 45)) for _ in range(300)]
    dataset = EncodedPairs.from_lists(src, tgt)
    if mapped:  # the prepared-split layout: flat uint16 ids + int64 offsets, memory-mapped
        for side, seqs in (("src", src), ("tgt", tgt)):
            flat, offsets = flatten(seqs, np.uint16)
            flat.tofile(tmp_path / f"{side}.tokens")
            offsets.tofile(tmp_path / f"{side}.offsets")
        dataset = EncodedPairs.open(tmp_path, np.dtype(np.uint16))
    for indices in ([7], [3, 250, 3, 0, 299], rng.permutation(300)[:120].tolist()):
        batch = {k: v.tolist() for k, v in collate(dataset.batch(indices)).items()}
        assert batch == reference_collate([dataset[i] for i in indices])


class CountingPairs(EncodedPairs):
    calls = {"item": 0, "batch": 0}

    def __getitem__(self, i: int):
        CountingPairs.calls["item"] += 1
        return super().__getitem__(i)

    def batch(self, indices):
        CountingPairs.calls["batch"] += 1
        return super().batch(indices)

    __getitems__ = batch


def test_loader_gathers_each_batch_in_one_call_not_per_sentence(pairs: EncodedPairs) -> None:
    """The per-sentence path cost ~40 us a sentence in `fit` (docs/benchmarks.md): a
    DataLoader must fetch whole batches through `EncodedPairs.__getitems__`."""
    counting = CountingPairs(pairs._arrays)
    sampler = TokenBucketBatchSampler(pairs.src_lengths, pairs.tgt_lengths, 600, seed=3)
    batches = list(DataLoader(counting, batch_sampler=sampler, collate_fn=collate))
    assert CountingPairs.calls == {"item": 0, "batch": len(batches)}
    assert sorted(i for b in batches for i in b["index"].tolist()) == list(range(len(pairs)))
