"""The Transformer itself: attention, layers and the encoder-decoder."""

from transformer_mt.model.transformer import Transformer

__all__ = ["Transformer"]
