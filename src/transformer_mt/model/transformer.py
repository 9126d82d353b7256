"""The encoder-decoder Transformer: embeddings, the two stacks, and the output projection."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from transformer_mt.config import TransformerConfig
from transformer_mt.model.layers import DecoderLayer, EncoderLayer, SinusoidalPositions
from transformer_mt.model.multi_head_attention import SelfAttentionCache, StaticKVCache


@dataclass(kw_only=True)
class DecoderState:
    """Everything incremental decoding carries from one step to the next.

    The decoder runs R rows; the encoder side (mask, cross-attention keys/values) has one row
    per `group` consecutive decoder rows (the beams of one sentence share it, see
    `MultiHeadAttention`), so R = group * (encoder rows).
    """

    # (R / group, 1, 1, S) additive key mask: 0 at real source tokens, -inf at padding (what
    # SDPA would make of the boolean mask at every call, made once per batch)
    src_mask: Tensor
    self_cache: SelfAttentionCache  # every layer's past self-attention keys/values
    cross_caches: list[StaticKVCache] = field(default_factory=list)  # per layer, projected once
    length: int = 0  # target positions consumed so far
    group: int = 1  # decoder rows per encoder row

    def reorder(self, index: Tensor, group: int = 1) -> None:
        """Keep decoder rows `index` (beam search re-ranking, dropping rows), then in groups of
        `group` rows per encoder row: every run of `group` consecutive entries of `index` must
        come from one encoder row (e.g. one sentence's beams). The encoder side is selected
        once per group, so keeping K beams copies 1/K of what one row per beam would."""
        self.self_cache.reorder(index)
        source = index[::group] // self.group
        self.src_mask = self.src_mask.index_select(0, source)
        for cache in self.cross_caches:
            cache.reorder(source)
        self.group = group

    def reorder_within_groups(self, index: Tensor) -> None:
        """Keep decoder rows `index` where each row moves only within its group (beams
        re-ranked inside their sentence): the encoder side stays as it is."""
        self.self_cache.reorder(index)


def source_mask(src: Tensor, pad_id: int) -> Tensor:
    """(B, S) ids -> (B, 1, 1, S) boolean key mask, True where a key may be attended to.

    A row that is entirely padding gets all keys unmasked: its outputs are meaningless (they are
    padding) but finite, where an all-False row would make softmax produce NaN.
    """
    keep = src.ne(pad_id)
    keep = keep | ~keep.any(dim=-1, keepdim=True)
    return keep[:, None, None, :]


class Transformer(nn.Module):
    """Encoder-decoder Transformer with shared embeddings and sinusoidal positions."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.embed = nn.Embedding(c.vocab_size, c.d_model, padding_idx=c.pad_id)
        if c.share_embeddings:
            self.tgt_embed = self.embed
        else:
            self.tgt_embed = nn.Embedding(c.vocab_size, c.d_model, padding_idx=c.pad_id)
            self.output_proj = nn.Linear(c.d_model, c.vocab_size, bias=False)
        self.positions = SinusoidalPositions(c.max_positions, c.d_model)
        self.embed_scale = math.sqrt(c.d_model)
        self.dropout = nn.Dropout(c.dropout)
        layer_args = (c.d_model, c.n_heads, c.d_ff, c.dropout, c.attention_dropout,
                      c.activation_dropout, c.norm_first)
        self.encoder_layers = nn.ModuleList(
            EncoderLayer(*layer_args) for _ in range(c.n_encoder_layers)
        )
        self.decoder_layers = nn.ModuleList(
            DecoderLayer(*layer_args) for _ in range(c.n_decoder_layers)
        )
        # Pre-norm stacks need a final LayerNorm; post-norm layers already end with one.
        self.encoder_norm = nn.LayerNorm(c.d_model) if c.norm_first else nn.Identity()
        self.decoder_norm = nn.LayerNorm(c.d_model) if c.norm_first else nn.Identity()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform linear layers; embeddings N(0, d_model^-0.5) so that after the
        sqrt(d_model) scale they have unit variance, with the padding row zero."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for embedding in dict.fromkeys((self.embed, self.tgt_embed)):  # ordered, deduplicated
            nn.init.normal_(embedding.weight, mean=0.0, std=self.config.d_model**-0.5)
            with torch.no_grad():
                embedding.weight[self.config.pad_id].zero_()

    def _embed(self, embedding: nn.Embedding, tokens: Tensor, offset: int = 0) -> Tensor:
        x = embedding(tokens) * self.embed_scale + self.positions(tokens.size(1), offset)
        return self.dropout(x)

    def encode(self, src: Tensor) -> tuple[Tensor, Tensor]:
        """src: (B, S) ids -> memory (B, S, d) and the source key mask (B, 1, 1, S)."""
        src_mask = source_mask(src, self.config.pad_id)
        x = self._embed(self.embed, src)
        for layer in self.encoder_layers:
            x, _ = layer(x, src_mask)
        return self.encoder_norm(x), src_mask

    def logits(self, hidden: Tensor) -> Tensor:
        """Pre-softmax projection: the transposed shared embedding when embeddings are tied,
        else `output_proj` (which a tied model also gets for inference, from
        `untie_output_projection`)."""
        output_proj = getattr(self, "output_proj", None)
        if output_proj is None:
            return F.linear(hidden, self.embed.weight)
        return output_proj(hidden)

    def untie_output_projection(self) -> None:
        """Give a tied model its own `output_proj`, a copy of the shared matrix, for inference
        paths that replace every `nn.Linear` (int8 quantization, oneDNN products): the
        embedding lookups keep reading the float32 matrix. Inference only: the copy is not
        tied any more, so training would update the two apart."""
        if getattr(self, "output_proj", None) is not None:
            return
        c = self.config
        weight = self.embed.weight
        self.output_proj = nn.Linear(c.d_model, c.vocab_size, bias=False,
                                     device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            self.output_proj.weight.copy_(weight)

    def output_weight(self) -> Tensor:
        """The (V, d) matrix of the pre-softmax projection, for the fused training loss
        (optim.label_smoothed_loss), which never materialises the logits."""
        output_proj = getattr(self, "output_proj", None)
        return self.embed.weight if output_proj is None else output_proj.weight

    def decode_hidden(self, tgt_in: Tensor, memory: Tensor, src_mask: Tensor) -> Tensor:
        """Teacher-forced decoder stack: tgt_in (B, T) starts with BOS; returns the (B, T, d)
        states that the output projection turns into logits."""
        x = self._embed(self.tgt_embed, tgt_in)
        for layer in self.decoder_layers:
            x, _, _ = layer(x, memory, src_mask)
        return self.decoder_norm(x)

    def decode(self, tgt_in: Tensor, memory: Tensor, src_mask: Tensor) -> Tensor:
        """Teacher-forced decoding: returns logits (B, T, V)."""
        return self.logits(self.decode_hidden(tgt_in, memory, src_mask))

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        memory, src_mask = self.encode(src)
        return self.decode(tgt_in, memory, src_mask)

    def start_decoding(self, memory: Tensor, src_mask: Tensor, max_length: int = 16
                       ) -> DecoderState:
        """Fresh caches for incremental decoding of a batch: the cross-attention keys and
        values of `memory` projected once per layer here, and room for `max_length` target
        positions (more if needed) in the self-attention cache."""
        c = self.config
        bias = torch.zeros(src_mask.shape, dtype=memory.dtype, device=memory.device)
        return DecoderState(
            src_mask=bias.masked_fill_(~src_mask, float("-inf")),
            self_cache=SelfAttentionCache(len(self.decoder_layers), c.n_heads, c.d_head,
                                          capacity=max_length),
            cross_caches=[layer.cross_attn.project_memory(memory)
                          for layer in self.decoder_layers],
        )

    def decode_step(self, tokens: Tensor, state: DecoderState) -> Tensor:
        """One incremental step: tokens (R,) are the latest target ids; returns logits (R, V).

        Only the new position is computed; past keys/values come from the caches, and the
        encoder keys/values of cross-attention were projected once, by `start_decoding`.
        Inference only (no dropout).
        """
        x = (F.embedding(tokens, self.tgt_embed.weight) * self.embed_scale
             + self.positions.table[state.length])
        for i, layer in enumerate(self.decoder_layers):
            x = layer.step(x, state.self_cache, i, state.cross_caches[i], state.src_mask)
        state.self_cache.advance()
        state.length += 1
        return self.logits(self.decoder_norm(x))

    def attention_weights(self, src: Tensor, tgt_in: Tensor) -> dict[str, list[Tensor]]:
        """The attention probabilities of a teacher-forced forward pass, per layer
        (each (B, n_heads, T_query, T_key)): keys `encoder`, `decoder_self`, `cross`."""
        src_mask = source_mask(src, self.config.pad_id)
        x = self._embed(self.embed, src)
        encoder = []
        for layer in self.encoder_layers:
            x, weights = layer(x, src_mask, need_weights=True)
            encoder.append(weights)
        memory = self.encoder_norm(x)
        y = self._embed(self.tgt_embed, tgt_in)
        decoder_self, cross = [], []
        for layer in self.decoder_layers:
            y, self_weights, cross_weights = layer(y, memory, src_mask, need_weights=True)
            decoder_self.append(self_weights)
            cross.append(cross_weights)
        return {"encoder": encoder, "decoder_self": decoder_self, "cross": cross}

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
