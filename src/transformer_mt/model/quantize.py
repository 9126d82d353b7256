"""Dynamic int8 quantization of a trained model, for faster CPU translation.

Every `nn.Linear` (attention projections, feed-forward layers, and the output projection) gets
int8 weights, one scale per output channel; activations are quantized on the fly, per call
(`torch.ao.quantization.quantize_dynamic`, fbgemm/x86 kernels, VNNI where the CPU has it).
Embeddings, LayerNorms, attention itself and the softmax stay float32. With tied embeddings
the output projection is the embedding matrix, read by `F.linear`, which quantize_dynamic does
not see: it gets its own int8 copy (`Transformer.output_proj`), while the embedding lookups keep
the float32 matrix. The result is an inference-only model for the CPU.

`torch.ao.quantization` is deprecated in favour of torchao, which is not a dependency; its
eager dynamic quantization still works in the pinned torch, and its deprecation warnings are
silenced here so that `translate` prints none.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from transformer_mt.model.transformer import Transformer

QUANTIZATIONS = ("int8",)


def quantize(model: Transformer, kind: str) -> Transformer:
    """Quantize `model` in place for CPU inference (module docstring); returns it, in eval mode.

    Translations change a little (a few sentences of a test set); measure the score before
    relying on it (docs/benchmarks.md has the BLEU change on Multi30k).
    """
    if kind not in QUANTIZATIONS:
        raise ValueError(f"unknown quantization {kind!r}; choose one of {QUANTIZATIONS}")
    if next(model.parameters()).device.type != "cpu":
        raise ValueError("int8 dynamic quantization runs on the CPU only")
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    model.eval()
    model.untie_output_projection()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)  # "quantized tensor dtypes are deprecated"
        quantize_dynamic(model, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8,
                         inplace=True)
    return model
