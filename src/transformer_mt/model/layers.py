"""Encoder and decoder layers, the position-wise FFN and sinusoidal positions (paper §3.1-3.5)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from transformer_mt.model.attention import KVCache, MultiHeadAttention, StaticKVCache


def sinusoidal_table(n_positions: int, d_model: int) -> Tensor:
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...), interleaved as in §3.5."""
    position = torch.arange(n_positions, dtype=torch.float64).unsqueeze(1)
    inv_freq = torch.exp(
        torch.arange(0, d_model, 2, dtype=torch.float64) * (-math.log(10000.0) / d_model)
    )
    table = torch.zeros(n_positions, d_model, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * inv_freq)
    table[:, 1::2] = torch.cos(position * inv_freq)
    return table.float()


class SinusoidalPositions(nn.Module):
    """Fixed sinusoidal position encodings; a buffer, so not a parameter and not trained."""

    def __init__(self, n_positions: int, d_model: int) -> None:
        super().__init__()
        self.register_buffer("table", sinusoidal_table(n_positions, d_model), persistent=False)

    def forward(self, length: int, offset: int = 0) -> Tensor:
        if offset + length > self.table.size(0):
            raise ValueError(
                f"position {offset + length} exceeds max_positions={self.table.size(0)}"
            )
        return self.table[offset : offset + length]


class PositionwiseFeedForward(nn.Module):
    """FFN(x) = max(0, x W1 + b1) W2 + b2 (§3.3)."""

    def __init__(self, d_model: int, d_ff: int, activation_dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_model, d_ff)
        self.fc2 = nn.Linear(d_ff, d_model)
        self.activation_dropout = activation_dropout

    def forward(self, x: Tensor) -> Tensor:
        hidden = F.dropout(F.relu(self.fc1(x)), self.activation_dropout, self.training)
        return self.fc2(hidden)


class EncoderLayer(nn.Module):
    """Self-attention then FFN, each wrapped as LayerNorm(x + Dropout(Sublayer(x))) (post-norm),
    or x + Dropout(Sublayer(LayerNorm(x))) when `norm_first`."""

    def __init__(
        self, d_model: int, n_heads: int, d_ff: int, dropout: float, attention_dropout: float,
        activation_dropout: float, norm_first: bool,
    ) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, n_heads, attention_dropout, True)
        self.self_attn_norm = nn.LayerNorm(d_model)
        self.ffn = PositionwiseFeedForward(d_model, d_ff, activation_dropout)
        self.ffn_norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.norm_first = norm_first

    def forward(self, x: Tensor, src_mask: Tensor, need_weights: bool = False):
        """x: (B, S, d); src_mask: (B, 1, 1, S) True at real tokens. Returns (x, attn weights)."""
        residual = x
        if self.norm_first:
            x = self.self_attn_norm(x)
        x, weights = self.self_attn(x, mask=src_mask, need_weights=need_weights)
        x = residual + self.dropout(x)
        if not self.norm_first:
            x = self.self_attn_norm(x)

        residual = x
        if self.norm_first:
            x = self.ffn_norm(x)
        x = residual + self.dropout(self.ffn(x))
        if not self.norm_first:
            x = self.ffn_norm(x)
        return x, weights


class DecoderLayer(nn.Module):
    """Masked self-attention, encoder-decoder (cross) attention, then FFN (§3.1)."""

    def __init__(
        self, d_model: int, n_heads: int, d_ff: int, dropout: float, attention_dropout: float,
        activation_dropout: float, norm_first: bool,
    ) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, n_heads, attention_dropout, True)
        self.self_attn_norm = nn.LayerNorm(d_model)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, attention_dropout, False)
        self.cross_attn_norm = nn.LayerNorm(d_model)
        self.ffn = PositionwiseFeedForward(d_model, d_ff, activation_dropout)
        self.ffn_norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.norm_first = norm_first

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        src_mask: Tensor,
        self_cache: KVCache | None = None,
        cross_cache: StaticKVCache | None = None,
        need_weights: bool = False,
    ):
        """x: (B, T, d) target states; memory: (B, S, d) encoder output.

        Without a cache the self-attention is causal over the T positions. With a cache, x holds
        only the new position and attends to everything cached before it, which is exactly the
        causal prefix. Right padding of the target needs no mask: a real token never sees a
        later (padding) position under the causal mask. Returns (x, self weights, cross weights).
        """
        residual = x
        if self.norm_first:
            x = self.self_attn_norm(x)
        causal = x.size(1) > 1  # several new positions: only without history (checked upstream)
        x, self_weights = self.self_attn(
            x, is_causal=causal, cache=self_cache, need_weights=need_weights
        )
        x = residual + self.dropout(x)
        if not self.norm_first:
            x = self.self_attn_norm(x)

        residual = x
        if self.norm_first:
            x = self.cross_attn_norm(x)
        x, cross_weights = self.cross_attn(
            x, memory, mask=src_mask, cache=cross_cache, need_weights=need_weights
        )
        x = residual + self.dropout(x)
        if not self.norm_first:
            x = self.cross_attn_norm(x)

        residual = x
        if self.norm_first:
            x = self.ffn_norm(x)
        x = residual + self.dropout(self.ffn(x))
        if not self.norm_first:
            x = self.ffn_norm(x)
        return x, self_weights, cross_weights
