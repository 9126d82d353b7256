"""The Transformer itself: multi-head attention (`multi_head_attention`), the encoder and
decoder layers (`layers`) and the encoder-decoder (`transformer`); CPU inference variants in
`quantize` and `cpu_gemm`."""

from transformer_mt.model.transformer import Transformer

__all__ = ["Transformer"]
