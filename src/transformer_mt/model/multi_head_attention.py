"""Multi-head scaled dot-product attention (paper §3.2) with a key/value cache.

The heavy lifting is `F.scaled_dot_product_attention`, which picks a fused kernel (flash or
memory-efficient on GPU, a fused C++ kernel on CPU). Masks are boolean with the SDPA meaning:
True = this key may be attended to.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class SelfAttentionCache:
    """Keys and values of every decoder layer's self-attention at past positions, for
    incremental decoding, in one preallocated buffer of shape (T, R, L, 2, H, d_head):
    position-major, then decoder row, layer, key/value, head.

    Why this layout: beam search re-ranks its rows at every step, and one `index_select` along
    the row axis of the filled positions `[:length]` then reorders all layers' keys and values
    at once, into a second buffer of the same shape that becomes the cache (the two swap, so a
    step allocates nothing). The filled positions of a position-major buffer are one
    contiguous block, so the copy reads and writes exactly the past keys and values, never the
    unused capacity. Attention reads a layer's keys as a strided (R, H, T, d_head) view, which
    scaled_dot_product_attention accepts as it is.
    """

    def __init__(self, n_layers: int, n_heads: int, d_head: int, capacity: int = 16) -> None:
        self.shape = (n_layers, 2, n_heads, d_head)
        self.capacity = max(1, capacity)  # positions the buffer holds before it must grow
        self.buffer: Tensor | None = None  # (capacity, R, L, 2, H, d_head)
        self.spare: Tensor | None = None  # flat storage for the next reorder
        self.length = 0  # positions filled

    def write(self, layer: int, kv: Tensor) -> tuple[Tensor, Tensor]:
        """Store (R, 2, H, d_head) keys/values of the new position for `layer`; return that
        layer's keys and values of every position so far, (R, H, length + 1, d_head) each.
        `advance` moves to the next position once every layer has written."""
        if self.buffer is None or self.buffer.size(1) != kv.size(0):
            self._allocate(kv)
        elif self.length >= self.buffer.size(0):
            self._grow()
        self.buffer[self.length, :, layer] = kv
        past = self.buffer[: self.length + 1, :, layer]  # (T, R, 2, H, d_head)
        return past[:, :, 0].permute(1, 2, 0, 3), past[:, :, 1].permute(1, 2, 0, 3)

    def advance(self) -> None:
        self.length += 1

    def reorder(self, index: Tensor) -> None:
        """Keep rows `index` of every layer (beam search re-ranks hypotheses every step)."""
        if self.buffer is None:
            return
        filled = self.buffer[: self.length]
        rows = index.numel()
        size = self.buffer.size(0) * rows * filled[0, 0].numel()
        if self.spare is None or self.spare.numel() < size:
            self.spare = filled.new_empty(size)
        target = self.spare[:size].view(self.buffer.size(0), rows, *self.shape)
        torch.index_select(filled, 1, index, out=target[: self.length])
        self.spare = self.buffer.view(-1)
        self.buffer = target

    def _allocate(self, kv: Tensor) -> None:
        """The buffer, at the first write (`kv` gives the rows, dtype and device)."""
        if self.length:
            raise ValueError(f"{kv.size(0)} rows written to a cache of {self.buffer.size(1)} "
                             "rows; reorder it first")
        self.buffer = kv.new_empty(self.capacity, kv.size(0), *self.shape)
        self.spare = None

    def _grow(self) -> None:
        """Twice the positions (the caller's length hint was too small)."""
        grown = self.buffer.new_empty(2 * self.buffer.size(0), *self.buffer.shape[1:])
        grown[: self.length] = self.buffer[: self.length]
        self.buffer, self.spare = grown, None


class StaticKVCache:
    """Encoder keys/values of one layer's cross-attention, (B, H, S, d_head) each: projected
    once per batch (`MultiHeadAttention.project_memory`), reused every step."""

    def __init__(self, k: Tensor, v: Tensor) -> None:
        self.k, self.v = k, v

    def reorder(self, index: Tensor) -> None:
        self.k = self.k.index_select(0, index)
        self.v = self.v.index_select(0, index)


class MultiHeadAttention(nn.Module):
    """MultiHead(Q, K, V) = Concat(head_1..head_h) W^O, head_i = Attention(QW_i^Q, KW_i^K, VW_i^V).

    Self-attention uses one fused (d_model -> 3 d_model) projection; cross-attention a query
    projection and a fused key/value projection of the encoder output.

    Cross-attention accepts g * B query rows for B memory rows: each run of g consecutive query
    rows attends to one memory row. Beam search uses this for the g beams of a sentence, which
    then share one copy of the encoder keys/values instead of g copies: the attention reads
    g times less memory per step, and dropping or expanding beams never copies encoder-sized
    tensors. The result is the same as repeating each memory row g times.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float, self_attention: bool) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.d_head = d_model // n_heads
        self.dropout = dropout
        self.self_attention = self_attention
        if self_attention:
            self.qkv_proj = nn.Linear(d_model, 3 * d_model)
        else:
            self.q_proj = nn.Linear(d_model, d_model)
            self.kv_proj = nn.Linear(d_model, 2 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def _split_heads(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.n_heads, self.d_head).transpose(1, 2)

    def forward(
        self,
        query: Tensor,
        memory: Tensor | None = None,
        mask: Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from `query` (B, Tq, d) to itself or to `memory` (B / g, Tk, d), g >= 1
        query rows per memory row (class docstring; g = 1 but in beam search).

        mask: boolean, broadcastable to (B / g, n_heads, g * Tq, Tk), True = may attend.
        is_causal: position i attends to positions <= i (decoder self-attention in training).
        need_weights: also return the (B, n_heads, Tq, Tk) attention probabilities.
        Incremental decoding takes `step_self` and `step_cross` instead.
        """
        b, t, _ = query.shape
        if self.self_attention:
            q, k, v = self.qkv_proj(query).chunk(3, dim=-1)
            q, k, v = self._split_heads(q), self._split_heads(k), self._split_heads(v)
        else:
            cache = self.project_memory(memory)
            k, v = cache.k, cache.v
            q = self._split_heads(self._group_queries(self.q_proj(query), k.size(0)))

        dropout_p = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            out, weights = _explicit_attention(q, k, v, mask, is_causal)
        else:
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal
            )
        out = out.transpose(1, 2).reshape(b, t, self.n_heads * self.d_head)
        return self.out_proj(out), weights

    def _group_queries(self, q: Tensor, memory_rows: int) -> Tensor:
        """(B, Tq, d) -> (B / g, g * Tq, d): g query rows per memory row become one longer
        query of that memory row."""
        if q.size(0) == memory_rows:
            return q
        if q.size(0) % memory_rows:
            raise ValueError(f"{q.size(0)} query rows do not group onto {memory_rows} memory rows")
        return q.reshape(memory_rows, -1, q.size(-1))

    def project_memory(self, memory: Tensor) -> StaticKVCache:
        """Cross-attention keys and values of the encoder output (B, S, d), per head."""
        k, v = self.kv_proj(memory).chunk(2, dim=-1)
        return StaticKVCache(self._split_heads(k), self._split_heads(v))

    def step_self(self, x: Tensor, cache: SelfAttentionCache, layer: int) -> Tensor:
        """Incremental self-attention of one new position per row: x (R, d) -> (R, d). Its
        key and value join `cache` (at `layer`), and it attends to every cached position,
        which is exactly the causal prefix. No dropout: decoding runs in eval mode."""
        rows = x.size(0)
        qkv = self.qkv_proj(x).view(rows, 3, self.n_heads, self.d_head)
        k, v = cache.write(layer, qkv[:, 1:])
        out = F.scaled_dot_product_attention(qkv[:, 0, :, None], k, v)  # (R, H, 1, d_head)
        return self.out_proj(out.reshape(rows, self.n_heads * self.d_head))

    def step_cross(self, x: Tensor, cache: StaticKVCache, mask: Tensor) -> Tensor:
        """Incremental cross-attention: x (R, d), R = g * (memory rows) -> (R, d), attending
        to the projected encoder output in `cache` under the source `mask`."""
        rows = x.size(0)
        q = self._split_heads(self._group_queries(self.q_proj(x)[:, None], cache.k.size(0)))
        out = F.scaled_dot_product_attention(q, cache.k, cache.v, attn_mask=mask)
        return self.out_proj(out.transpose(1, 2).reshape(rows, self.n_heads * self.d_head))


def _explicit_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, is_causal: bool
) -> tuple[Tensor, Tensor]:
    """softmax(QK^T / sqrt(d_k)) V, written out so the probabilities can be returned."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if is_causal:
        tq, tk = scores.shape[-2:]
        causal = torch.ones(tq, tk, dtype=torch.bool, device=q.device).tril(tk - tq)
        mask = causal if mask is None else mask & causal
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)
    return weights @ v, weights
