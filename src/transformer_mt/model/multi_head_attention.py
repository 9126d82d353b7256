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


class KVCache:
    """Keys and values of past decoder positions, kept so each step projects only the new token.

    The buffer grows by doubling, so appending is amortised O(1) instead of a `torch.cat` of the
    whole history at every step.
    """

    def __init__(self) -> None:
        self.k: Tensor | None = None
        self.v: Tensor | None = None
        self.length = 0

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Add (B, H, T_new, d_head) keys/values; return all keys/values so far."""
        t_new = k.size(2)
        if self.k is None or self.length + t_new > self.k.size(2):
            capacity = max(16, 2 * (self.length + t_new))
            k_buf = k.new_empty(k.size(0), k.size(1), capacity, k.size(3))
            v_buf = v.new_empty(v.size(0), v.size(1), capacity, v.size(3))
            if self.k is not None:
                k_buf[:, :, : self.length] = self.k[:, :, : self.length]
                v_buf[:, :, : self.length] = self.v[:, :, : self.length]
            self.k, self.v = k_buf, v_buf
        self.k[:, :, self.length : self.length + t_new] = k
        self.v[:, :, self.length : self.length + t_new] = v
        self.length += t_new
        return self.k[:, :, : self.length], self.v[:, :, : self.length]

    def reorder(self, index: Tensor) -> None:
        """Keep batch rows `index` (beam search re-ranks hypotheses every step)."""
        if self.k is not None:
            self.k = self.k.index_select(0, index)
            self.v = self.v.index_select(0, index)


class StaticKVCache:
    """Encoder keys/values for cross-attention: computed once per batch, reused every step."""

    def __init__(self) -> None:
        self.k: Tensor | None = None
        self.v: Tensor | None = None

    def reorder(self, index: Tensor) -> None:
        if self.k is not None:
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
        cache: KVCache | StaticKVCache | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from `query` (B, Tq, d) to itself or to `memory` (B / g, Tk, d), g >= 1
        query rows per memory row (class docstring; g = 1 but in beam search).

        mask: boolean, broadcastable to (B / g, n_heads, g * Tq, Tk), True = may attend.
        is_causal: position i attends to positions <= i (decoder self-attention in training).
        cache: a KVCache (self-attention, incremental decoding) or StaticKVCache (cross).
        need_weights: also return the (B, n_heads, Tq, Tk) attention probabilities.
        """
        b, t, _ = query.shape
        if self.self_attention:
            q, k, v = self.qkv_proj(query).chunk(3, dim=-1)
            q, k, v = self._split_heads(q), self._split_heads(k), self._split_heads(v)
            if cache is not None:
                k, v = cache.append(k, v)
        else:
            if cache is not None and cache.k is not None:
                k, v = cache.k, cache.v
            else:
                k, v = self.kv_proj(memory).chunk(2, dim=-1)
                k, v = self._split_heads(k), self._split_heads(v)
                if cache is not None:
                    cache.k, cache.v = k, v
            q = self.q_proj(query)
            if b != k.size(0):  # g query rows per memory row: fold g into the query length
                if b % k.size(0):
                    raise ValueError(f"{b} query rows do not group onto {k.size(0)} memory rows")
                q = q.reshape(k.size(0), -1, q.size(-1))
            q = self._split_heads(q)

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
