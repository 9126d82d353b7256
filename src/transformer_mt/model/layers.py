"""Encoder and decoder layers, the position-wise FFN and sinusoidal positions (paper §3.1-3.5)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from transformer_mt.model.multi_head_attention import (
    MultiHeadAttention,
    SelfAttentionCache,
    StaticKVCache,
)


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
        # In place where no gradient is recorded (decoding): one allocation less per layer.
        hidden = F.relu(self.fc1(x), inplace=not torch.is_grad_enabled())
        if self.training and self.activation_dropout > 0:
            hidden = F.dropout(hidden, self.activation_dropout)
        return self.fc2(hidden)


class _ResidualLayer(nn.Module):
    """What encoder and decoder layers share: self-attention, (in the decoder) encoder-decoder
    attention and the FFN, each with its LayerNorm, in that order, and the residual wiring
    around them (§3.1, §5.4)."""

    has_cross_attention = False

    def __init__(
        self, d_model: int, n_heads: int, d_ff: int, dropout: float, attention_dropout: float,
        activation_dropout: float, norm_first: bool,
    ) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, n_heads, attention_dropout, True)
        self.self_attn_norm = nn.LayerNorm(d_model)
        if self.has_cross_attention:
            self.cross_attn = MultiHeadAttention(d_model, n_heads, attention_dropout, False)
            self.cross_attn_norm = nn.LayerNorm(d_model)
        self.ffn = PositionwiseFeedForward(d_model, d_ff, activation_dropout)
        self.ffn_norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.norm_first = norm_first

    def _residual(self, x: Tensor, norm: nn.LayerNorm, sublayer) -> tuple[Tensor, Tensor | None]:
        """LayerNorm(x + Dropout(Sublayer(x))) (post-norm, the paper), or
        x + Dropout(Sublayer(LayerNorm(x))) when `norm_first`. `sublayer` returns its output and
        its attention weights (or None)."""
        out, weights = sublayer(norm(x) if self.norm_first else x)
        x = x + self.dropout(out)
        return (x if self.norm_first else norm(x)), weights

    def _ffn(self, x: Tensor) -> tuple[Tensor, None]:
        return self.ffn(x), None


class EncoderLayer(_ResidualLayer):
    """Self-attention then FFN, each in a residual block with LayerNorm."""

    def forward(self, x: Tensor, src_mask: Tensor, need_weights: bool = False):
        """x: (B, S, d); src_mask: (B, 1, 1, S) True at real tokens. Returns (x, attn weights)."""
        x, weights = self._residual(
            x, self.self_attn_norm,
            lambda h: self.self_attn(h, mask=src_mask, need_weights=need_weights),
        )
        x, _ = self._residual(x, self.ffn_norm, self._ffn)
        return x, weights


class DecoderLayer(_ResidualLayer):
    """Masked self-attention, encoder-decoder (cross) attention, then FFN (§3.1)."""

    has_cross_attention = True

    def forward(self, x: Tensor, memory: Tensor, src_mask: Tensor, need_weights: bool = False):
        """Teacher forcing: x (B, T, d) target states, causal self-attention over the T
        positions; memory (B, S, d) encoder output. Right padding of the target needs no mask:
        a real token never sees a later (padding) position under the causal mask. Returns
        (x, self weights, cross weights)."""
        x, self_weights = self._residual(
            x, self.self_attn_norm,
            lambda h: self.self_attn(h, is_causal=True, need_weights=need_weights),
        )
        x, cross_weights = self._residual(
            x, self.cross_attn_norm,
            lambda h: self.cross_attn(h, memory, mask=src_mask, need_weights=need_weights),
        )
        x, _ = self._residual(x, self.ffn_norm, self._ffn)
        return x, self_weights, cross_weights

    def step(self, x: Tensor, self_cache: SelfAttentionCache, layer: int,
             cross_cache: StaticKVCache, src_mask: Tensor) -> Tensor:
        """Incremental decoding, one new position per row: x (R, d) -> (R, d). The same
        sub-layers and residual wiring as `forward`, with fewer operator calls (no
        sequence axis, no dropout: decoding runs in eval mode), because a decoding step's
        fixed cost is mostly per-call overhead (docs/benchmarks.md). The g rows of a
        sentence's beams share its row of `cross_cache` and `src_mask` (MultiHeadAttention)."""
        x = self._step_residual(x, self.self_attn_norm,
                                lambda h: self.self_attn.step_self(h, self_cache, layer))
        x = self._step_residual(x, self.cross_attn_norm,
                                lambda h: self.cross_attn.step_cross(h, cross_cache, src_mask))
        return self._step_residual(x, self.ffn_norm, self.ffn)

    def _step_residual(self, x: Tensor, norm: nn.LayerNorm, sublayer) -> Tensor:
        """`_residual` without dropout or attention weights."""
        if self.norm_first:
            return x + sublayer(norm(x))
        return norm(x + sublayer(x))
