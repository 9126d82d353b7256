"""Token-bucket batching and padding.

Batches are built by token count, not sentence count (paper §5.1: ~25k source + 25k target
tokens per step): sentences of similar length are grouped so that little compute is spent on
padding, and the number of padded tokens per batch stays under `max_tokens`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from transformer_mt.config import BOS_ID, EOS_ID, PAD_ID
from transformer_mt.errors import UserError


class EncodedPairs(Dataset):
    """Token ids of a parallel corpus in two flat int32 arrays plus offsets.

    Millions of sentences as Python lists of ints would take gigabytes; flat arrays take
    4 bytes a token and are shared copy-on-write with dataloader workers.
    """

    def __init__(self, src: Sequence[Sequence[int]], tgt: Sequence[Sequence[int]]) -> None:
        if len(src) != len(tgt):
            raise ValueError("source and target must have the same number of sentences")
        self.src_tokens, self.src_offsets = _flatten(src)
        self.tgt_tokens, self.tgt_offsets = _flatten(tgt)

    def __len__(self) -> int:
        return len(self.src_offsets) - 1

    def __getitem__(self, i: int) -> tuple[int, np.ndarray, np.ndarray]:
        return (
            i,
            self.src_tokens[self.src_offsets[i] : self.src_offsets[i + 1]],
            self.tgt_tokens[self.tgt_offsets[i] : self.tgt_offsets[i + 1]],
        )

    @property
    def src_lengths(self) -> np.ndarray:
        """Encoder lengths: subwords + EOS."""
        return np.diff(self.src_offsets) + 1

    @property
    def tgt_lengths(self) -> np.ndarray:
        """Decoder lengths: subwords + one (BOS in the input, EOS in the output)."""
        return np.diff(self.tgt_offsets) + 1


def _flatten(seqs: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    tokens = np.fromiter((t for s in seqs for t in s), dtype=np.int32, count=int(offsets[-1]))
    return tokens, offsets


def _check_fits(src_lengths: np.ndarray, tgt_lengths: np.ndarray, max_tokens: int) -> np.ndarray:
    """Per-pair padded length; a UserError if even one pair alone exceeds max_tokens."""
    lengths = np.maximum(src_lengths, tgt_lengths)
    longest = int(lengths.max(initial=0))
    if longest > max_tokens:
        raise UserError(
            f"max_tokens={max_tokens} is smaller than the longest sentence pair ({longest} "
            "tokens); raise max_tokens or lower max_len"
        )
    return lengths


def make_batches(
    src_lengths: np.ndarray,
    tgt_lengths: np.ndarray,
    max_tokens: int,
    rng: np.random.Generator | None,
) -> list[list[int]]:
    """Group indices into batches whose padded size max(len) * n stays <= max_tokens.

    Pairs are sorted by (longer side, source, target) length, ties broken at random when `rng`
    is given, so batches differ from epoch to epoch while padding stays minimal.
    """
    lengths = _check_fits(src_lengths, tgt_lengths, max_tokens)
    tie_break = rng.random(len(lengths)) if rng is not None else np.arange(len(lengths))
    order = np.lexsort((tie_break, tgt_lengths, src_lengths, lengths))
    batches: list[list[int]] = []
    batch: list[int] = []
    batch_max = 0
    for index in order.tolist():
        length = int(lengths[index])
        if batch and max(batch_max, length) * (len(batch) + 1) > max_tokens:
            batches.append(batch)
            batch, batch_max = [], 0
        batch.append(index)
        batch_max = max(batch_max, length)
    if batch:
        batches.append(batch)
    return batches


class TokenBucketBatchSampler(Sampler[list[int]]):
    """Yields lists of dataset indices, each a batch of at most `max_tokens` padded tokens.

    shuffle=True: new tie-breaks and a new batch order every epoch (seeded by seed + epoch).
    Distributed: every rank builds the same batch list and takes every `num_replicas`-th batch,
    so ranks see disjoint batches; in training the tail is dropped so all ranks step equally.
    `skip_batches` resumes an epoch part-way (the checkpoint records how far it got): the next
    iteration leaves out that many batches. `len()` stays the full epoch: Lightning counts the
    resumed epoch's batches from where the checkpoint left off, so a shortened length would
    end the epoch early.
    """

    def __init__(
        self,
        src_lengths: np.ndarray,
        tgt_lengths: np.ndarray,
        max_tokens: int,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        drop_uneven: bool | None = None,
    ) -> None:
        self.src_lengths = np.asarray(src_lengths)
        self.tgt_lengths = np.asarray(tgt_lengths)
        self.max_tokens = max_tokens
        self.shuffle = shuffle
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.drop_uneven = shuffle if drop_uneven is None else drop_uneven
        self.epoch = 0
        self.skip_batches = 0
        _check_fits(self.src_lengths, self.tgt_lengths, max_tokens)  # fail now, not mid-epoch
        self._fixed = None if shuffle else make_batches(
            self.src_lengths, self.tgt_lengths, max_tokens, None
        )

    def set_epoch(self, epoch: int) -> None:
        """Called by the training loader at the start of every epoch (Lightning itself calls
        set_epoch on samplers only, not on batch samplers)."""
        self.epoch = epoch

    def _rank_batches(self) -> list[list[int]]:
        if self._fixed is not None:
            batches = self._fixed
        else:
            rng = np.random.default_rng([self.seed, self.epoch])
            batches = make_batches(self.src_lengths, self.tgt_lengths, self.max_tokens, rng)
            batches = [batches[i] for i in rng.permutation(len(batches))]
        if self.drop_uneven:
            batches = batches[: len(batches) - len(batches) % self.num_replicas]
        return batches[self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._rank_batches()
        skip, self.skip_batches = self.skip_batches, 0
        yield from batches[skip:]

    def __len__(self) -> int:
        return len(self._rank_batches())


def collate(items: list[tuple[int, np.ndarray, np.ndarray]]) -> dict[str, Tensor]:
    """Pad a batch: `src` = ids + EOS, `tgt_in` = BOS + ids, `tgt_out` = ids + EOS (pad 0)."""
    n = len(items)
    src_len = max(len(s) for _, s, _ in items) + 1
    tgt_len = max(len(t) for _, _, t in items) + 1
    src = torch.full((n, src_len), PAD_ID, dtype=torch.long)
    tgt_in = torch.full((n, tgt_len), PAD_ID, dtype=torch.long)
    tgt_out = torch.full((n, tgt_len), PAD_ID, dtype=torch.long)
    for row, (_, s, t) in enumerate(items):
        src[row, : len(s)] = torch.from_numpy(s.astype(np.int64))
        src[row, len(s)] = EOS_ID
        tgt_in[row, 0] = BOS_ID
        tgt_in[row, 1 : len(t) + 1] = torch.from_numpy(t.astype(np.int64))
        tgt_out[row, : len(t)] = tgt_in[row, 1 : len(t) + 1]
        tgt_out[row, len(t)] = EOS_ID
    return {
        "index": torch.tensor([i for i, _, _ in items], dtype=torch.long),
        "src": src,
        "tgt_in": tgt_in,
        "tgt_out": tgt_out,
    }
