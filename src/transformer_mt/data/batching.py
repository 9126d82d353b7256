"""Token-bucket batching and padding.

Batches are built by token count, not sentence count (paper §5.1: ~25k source + 25k target
tokens per step): sentences of similar length are grouped so that little compute is spent on
padding, and the number of padded tokens per batch stays under `max_tokens`. Batches are built
from the length arrays alone, with numpy, so a WMT-sized corpus (4.5M pairs) is batched in
seconds and its token ids stay on disk (`EncodedPairs.open`, a memory map).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from transformer_mt.config import BOS_ID, EOS_ID, PAD_ID
from transformer_mt.data.encode_worker import concatenate
from transformer_mt.errors import UserError

# File names of one prepared split (see data/prepare.py): flat token ids and int64 offsets.
SIDES = ("src", "tgt")


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (half the disk and page cache of int32), else int32."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.int32)


class EncodedPairs(Dataset):
    """Token ids of a parallel corpus: per side one flat array of ids plus int64 offsets.

    The arrays are either in memory (`from_lists`, small evaluation sets and tests) or memory
    maps of a prepared split (`open`), whose pages the operating system shares between all
    processes and ranks of a machine: a training process then holds only the length arrays,
    whatever the corpus size. A mapped dataset pickles as its folder, so DataLoader workers
    (fork or spawn) map the same files instead of receiving a copy.
    """

    def __init__(self, arrays: dict[str, np.ndarray], folder: Path | None = None) -> None:
        self._arrays = arrays
        self.folder = folder
        if len(arrays["src_offsets"]) != len(arrays["tgt_offsets"]):
            raise ValueError("source and target must have the same number of sentences")

    @classmethod
    def from_lists(cls, src: Sequence[Sequence[int]], tgt: Sequence[Sequence[int]]
                   ) -> EncodedPairs:
        if len(src) != len(tgt):
            raise ValueError("source and target must have the same number of sentences")
        arrays: dict[str, np.ndarray] = {}
        for side, seqs in zip(SIDES, (src, tgt), strict=True):
            arrays[f"{side}_tokens"], arrays[f"{side}_offsets"] = flatten(seqs, np.int32)
        return cls(arrays)

    @classmethod
    def open(cls, folder: Path, dtype: np.dtype) -> EncodedPairs:
        """Map a prepared split read-only (files written by `data.prepare`)."""
        arrays = {}
        for side in SIDES:
            arrays[f"{side}_tokens"] = _map(folder / f"{side}.tokens", dtype)
            arrays[f"{side}_offsets"] = _map(folder / f"{side}.offsets", np.dtype(np.int64))
        return cls(arrays, folder)

    def __getstate__(self) -> dict[str, Any]:
        if self.folder is None:
            return self.__dict__
        return {"folder": self.folder, "dtype": self._arrays["src_tokens"].dtype}

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "_arrays" in state:
            self.__dict__.update(state)
        else:
            self.__dict__.update(EncodedPairs.open(state["folder"], state["dtype"]).__dict__)

    def __len__(self) -> int:
        return len(self._arrays["src_offsets"]) - 1

    def __getitem__(self, i: int) -> tuple[int, np.ndarray, np.ndarray]:
        a = self._arrays
        return (
            i,
            a["src_tokens"][a["src_offsets"][i] : a["src_offsets"][i + 1]],
            a["tgt_tokens"][a["tgt_offsets"][i] : a["tgt_offsets"][i + 1]],
        )

    def batch(self, indices: Sequence[int]) -> PairBatch:
        """The token ids of the pairs `indices`, gathered with a few numpy calls whatever their
        number. A DataLoader calls it (as `__getitems__`) with a whole batch of indices, so
        loading a batch costs no Python work per sentence: per-item `__getitem__` and a
        row-by-row collate took about 40 us a sentence (11 ms of a 290-sentence Multi30k batch;
        docs/benchmarks.md, "Training through `fit`")."""
        index = np.asarray(indices, dtype=np.int64)
        a = self._arrays
        src, src_lengths = _gather(a["src_tokens"], a["src_offsets"], index)
        tgt, tgt_lengths = _gather(a["tgt_tokens"], a["tgt_offsets"], index)
        return PairBatch(index=index, src=src, src_lengths=src_lengths, tgt=tgt,
                         tgt_lengths=tgt_lengths)

    __getitems__ = batch

    @property
    def src_lengths(self) -> np.ndarray:
        """Encoder lengths: subwords + EOS (int32, the only per-pair array kept in memory)."""
        return (np.diff(self._arrays["src_offsets"]) + 1).astype(np.int32)

    @property
    def tgt_lengths(self) -> np.ndarray:
        """Decoder lengths: subwords + one (BOS in the input, EOS in the output)."""
        return (np.diff(self._arrays["tgt_offsets"]) + 1).astype(np.int32)


def _map(path: Path, dtype: np.dtype) -> np.ndarray:
    """A read-only mapping of the file as a plain ndarray view: slicing or indexing an
    `np.memmap` itself runs Python code per call (`memmap.__array_finalize__`)."""
    if path.stat().st_size == 0:  # np.memmap refuses empty files
        return np.zeros(0, dtype=dtype)
    return np.asarray(np.memmap(path, dtype=dtype, mode="r"))


def _gather(tokens: np.ndarray, offsets: np.ndarray, index: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """The ids of sentences `index` one after another, and their lengths."""
    starts = offsets[index]
    lengths = offsets[index + 1] - starts
    ends = np.cumsum(lengths)
    # position k of the output is token starts[s] + (k - first output position of s)
    positions = np.arange(int(ends[-1]) if len(ends) else 0) + np.repeat(
        starts - (ends - lengths), lengths)
    return tokens[positions], lengths


def flatten(seqs: Sequence[Sequence[int]], dtype: np.dtype | type) -> tuple[np.ndarray,
                                                                            np.ndarray]:
    """One flat id array and its int64 offsets (len(seqs) + 1) for a list of id lists."""
    lengths = np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs))
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return concatenate(seqs, lengths, dtype), offsets


def pack(lengths: np.ndarray, order: np.ndarray, max_tokens: int) -> np.ndarray:
    """Cut `order` greedily into batches whose padded size (longest x count) <= max_tokens.

    Returns the start positions in `order` of each batch plus the end (len(order)), so batch
    b is ``order[bounds[b]:bounds[b + 1]]``. A pair longer than `max_tokens` on its own gets a
    batch of its own (callers that must not allow it check first). The loop runs once per
    batch, not per pair: within a batch the padded size of its first n pairs, running maximum
    times n, only grows with n, so the cut is a count of products under the budget.
    """
    ordered = np.asarray(lengths)[order]
    bounds = [0]
    start, total = 0, len(ordered)
    while start < total:
        cap = max(1, max_tokens // max(int(ordered[start]), 1))
        window = np.maximum.accumulate(ordered[start : start + cap])
        padded = window * np.arange(1, len(window) + 1)
        start += max(1, int(np.count_nonzero(padded <= max_tokens)))
        bounds.append(start)
    return np.asarray(bounds, dtype=np.int64)


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


class Batches:
    """One epoch's batches as two arrays (the pair order and the batch bounds), not as a list
    of lists: 4.5M pairs as Python ints would take hundreds of megabytes per process."""

    def __init__(self, order: np.ndarray, bounds: np.ndarray, sequence: np.ndarray) -> None:
        self.order, self.bounds, self.sequence = order, bounds, sequence

    def __len__(self) -> int:
        return len(self.sequence)

    def __getitem__(self, b: int) -> list[int]:
        k = int(self.sequence[b])
        return self.order[self.bounds[k] : self.bounds[k + 1]].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        return (self[b] for b in range(len(self)))


def make_batches(
    src_lengths: np.ndarray,
    tgt_lengths: np.ndarray,
    max_tokens: int,
    rng: np.random.Generator | None,
) -> Batches:
    """Batches whose padded size max(len) * n stays <= max_tokens.

    Pairs are sorted by (longer side, source, target) length, ties broken at random when `rng`
    is given (else by index), so batches differ from epoch to epoch while padding stays
    minimal; with `rng` the batch order is shuffled too.
    """
    lengths = _check_fits(src_lengths, tgt_lengths, max_tokens)
    if int(lengths.max(initial=0)) >= 1 << 16:
        raise UserError(f"a sentence of {int(lengths.max())} tokens is too long to batch")
    # One int64 key, (longer side, source, target, random tie-break) 16 bits each, sorts
    # 4.5M pairs in a fraction of the time np.lexsort takes on four arrays.
    key = (lengths.astype(np.int64) << 48 | np.asarray(src_lengths, np.int64) << 32
           | np.asarray(tgt_lengths, np.int64) << 16)
    if rng is not None:
        key |= rng.integers(0, 1 << 16, size=len(key), dtype=np.int64)
    order = np.argsort(key, kind="stable")
    bounds = pack(lengths, order, max_tokens)
    n = len(bounds) - 1
    sequence = rng.permutation(n) if rng is not None else np.arange(n)
    return Batches(order, bounds, sequence)


class TokenBucketBatchSampler(Sampler[list[int]]):
    """Yields lists of dataset indices, each a batch of at most `max_tokens` padded tokens.

    shuffle=True: new tie-breaks and a new batch order every epoch (seeded by seed + epoch).
    Distributed: every rank builds the same batch list and takes every `num_replicas`-th batch,
    so ranks see disjoint batches; in training the tail is dropped so all ranks step equally.
    `skip_batches` resumes an epoch part-way (the checkpoint records how far it got): the next
    iteration leaves out that many batches. `len()` stays the full epoch: Lightning counts the
    resumed epoch's batches from where the checkpoint left off, so a shortened length would
    end the epoch early. An epoch's batches are built once and reused by `len()` and `iter()`.
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
        self._built: tuple[int, Batches] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Called by the training loader at the start of every epoch (Lightning itself calls
        set_epoch on samplers only, not on batch samplers)."""
        self.epoch = epoch

    def _rank_batches(self) -> Batches:
        epoch = self.epoch if self.shuffle else 0
        if self._built is None or self._built[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch]) if self.shuffle else None
            batches = make_batches(self.src_lengths, self.tgt_lengths, self.max_tokens, rng)
            sequence = batches.sequence
            if self.drop_uneven:
                sequence = sequence[: len(sequence) - len(sequence) % self.num_replicas]
            batches.sequence = sequence[self.rank :: self.num_replicas]
            self._built = (epoch, batches)
        return self._built[1]

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._rank_batches()
        skip, self.skip_batches = self.skip_batches, 0
        return (batches[b] for b in range(skip, len(batches)))

    def __len__(self) -> int:
        return len(self._rank_batches())


@dataclass(frozen=True, kw_only=True)
class PairBatch:
    """Token ids of a batch of pairs, flat per side with their lengths (unpadded, no BOS/EOS):
    what `EncodedPairs.batch` gathers and `collate` pads."""

    index: np.ndarray
    src: np.ndarray
    src_lengths: np.ndarray
    tgt: np.ndarray
    tgt_lengths: np.ndarray


def _padded(flat: np.ndarray, lengths: np.ndarray, width: int) -> np.ndarray:
    """(len(lengths), width) int64 array holding each sentence's ids left-aligned, PAD after."""
    out = np.full((len(lengths), width), PAD_ID, dtype=np.int64)
    out[np.arange(width) < lengths[:, None]] = flat  # row-major order = the flat order
    return out


def collate(batch: PairBatch) -> dict[str, Tensor]:
    """Pad a batch: `src` = ids + EOS, `tgt_in` = BOS + ids, `tgt_out` = ids + EOS (pad 0),
    with whole-batch numpy operations (no loop over sentences)."""
    rows = np.arange(len(batch.index))
    src = _padded(batch.src, batch.src_lengths, int(batch.src_lengths.max()) + 1)
    src[rows, batch.src_lengths] = EOS_ID
    ids = _padded(batch.tgt, batch.tgt_lengths, int(batch.tgt_lengths.max()))
    tgt_in = np.empty((len(rows), ids.shape[1] + 1), dtype=np.int64)
    tgt_in[:, 0] = BOS_ID
    tgt_in[:, 1:] = ids
    tgt_out = np.full_like(tgt_in, PAD_ID)
    tgt_out[:, :-1] = ids
    tgt_out[rows, batch.tgt_lengths] = EOS_ID
    return {
        "index": torch.from_numpy(batch.index),
        "src": torch.from_numpy(src),
        "tgt_in": torch.from_numpy(tgt_in),
        "tgt_out": torch.from_numpy(tgt_out),
    }
