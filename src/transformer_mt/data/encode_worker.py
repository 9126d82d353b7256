"""Tokenization in the prepare step's worker processes.

Kept apart from `data.prepare` so that a spawned worker imports numpy and sentencepiece only,
not torch: each worker then starts in a fraction of a second and holds little memory.
"""

from __future__ import annotations

import numpy as np
import sentencepiece as spm

_sp: spm.SentencePieceProcessor | None = None


def init_worker(model_proto: bytes) -> None:
    """Load the sentencepiece model once per worker process."""
    global _sp
    _sp = spm.SentencePieceProcessor(model_proto=model_proto)


def concatenate(seqs: list[list[int]], lengths: np.ndarray, dtype: np.dtype | type
                ) -> np.ndarray:
    """The id lists one after another in one flat array (`lengths` = their lengths)."""
    return np.fromiter((t for s in seqs for t in s), dtype=dtype, count=int(lengths.sum()))


def encode_chunk(chunk: tuple[list[str], list[str]], max_len: int | None, dtype: np.dtype
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Token ids and lengths of one chunk, both sides, dropping (when `max_len` is set) pairs
    with an empty side or more than `max_len` subwords on either side."""
    assert _sp is not None
    src = _sp.encode(chunk[0], out_type=int)
    tgt = _sp.encode(chunk[1], out_type=int)
    src_len = np.fromiter(map(len, src), dtype=np.int32, count=len(src))
    tgt_len = np.fromiter(map(len, tgt), dtype=np.int32, count=len(tgt))
    if max_len is not None:
        keep = np.flatnonzero((src_len > 0) & (tgt_len > 0)
                              & (src_len <= max_len) & (tgt_len <= max_len)).tolist()
        if len(keep) < len(src):
            src, tgt = [src[i] for i in keep], [tgt[i] for i in keep]
            src_len, tgt_len = src_len[keep], tgt_len[keep]
    return (concatenate(src, src_len, dtype), src_len,
            concatenate(tgt, tgt_len, dtype), tgt_len)
