"""CTranslate2 export: a `TransformerSpec` built from our weights as they are (not through
CTranslate2's Marian converter, whose decoder-start assumption does not hold for tied
embeddings), checked against our per-token log-probabilities."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformer_mt.exporters.staging import check_close, probe_batch

if TYPE_CHECKING:
    import torch
    from torch import nn

    from transformer_mt.inference.loaded_model import LoadedModel
    from transformer_mt.model.layers import DecoderLayer, EncoderLayer

CT2_QUANTIZATIONS = (
    "int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16", "float16", "bfloat16",
    "float32",
)
# CTranslate2's default `max_decoding_length`; its position table must cover that many steps.
CT2_DEFAULT_MAX_DECODING = 256


def ctranslate2_spec(loaded: LoadedModel) -> Any:
    """A ctranslate2 TransformerSpec holding our weights as they are (no permutation: the
    position table is stored as a weight). Post-norm and pre-norm models both map: each
    sub-layer's LayerNorm is the spec's `layer_norm` of that sub-layer either way."""
    from ctranslate2.specs import common_spec, transformer_spec

    from transformer_mt.model.layers import sinusoidal_table

    model, sp = loaded.model, loaded.tokenizer.sp
    c = model.config

    def t(x: torch.Tensor) -> Any:
        return x.detach().float().cpu().contiguous().numpy()

    def linear(spec: Any, layer: nn.Linear) -> None:
        spec.weight = t(layer.weight)
        if layer.bias is not None:
            spec.bias = t(layer.bias)

    def norm(spec: Any, layer: nn.LayerNorm) -> None:
        spec.gamma, spec.beta = t(layer.weight), t(layer.bias)

    def ffn(spec: Any, layer: EncoderLayer | DecoderLayer) -> None:
        linear(spec.linear_0, layer.ffn.fc1)
        linear(spec.linear_1, layer.ffn.fc2)
        norm(spec.layer_norm, layer.ffn_norm)

    spec = transformer_spec.TransformerSpec.from_config(
        (c.n_encoder_layers, c.n_decoder_layers), c.n_heads, pre_norm=c.norm_first,
        activation=common_spec.Activation.RELU,
    )
    if c.norm_first:  # pre-norm stacks end with a LayerNorm (post-norm layers already do)
        norm(spec.encoder.layer_norm, model.encoder_norm)
        norm(spec.decoder.layer_norm, model.decoder_norm)
    # CTranslate2 fails on a position past its table, and its default decoding length is
    # independent of ours: a table of at least that many rows (the same sinusoids, extended)
    # keeps its defaults working. Our own cap is max_positions - 1 tokens + EOS; pass
    # max_decoding_length=min(limit, max_positions - 1) to reproduce it exactly.
    positions = t(sinusoidal_table(max(c.max_positions, CT2_DEFAULT_MAX_DECODING + 1),
                                   c.d_model))
    spec.encoder.embeddings[0].weight = t(model.embed.weight)
    spec.encoder.position_encodings.encodings = positions
    for layer_spec, layer in zip(spec.encoder.layer, model.encoder_layers, strict=True):
        linear(layer_spec.self_attention.linear[0], layer.self_attn.qkv_proj)  # [q; k; v] rows
        linear(layer_spec.self_attention.linear[1], layer.self_attn.out_proj)
        norm(layer_spec.self_attention.layer_norm, layer.self_attn_norm)
        ffn(layer_spec.ffn, layer)
    spec.decoder.embeddings.weight = t(model.tgt_embed.weight)
    spec.decoder.position_encodings.encodings = positions
    spec.decoder.projection.weight = t(
        model.embed.weight if c.share_embeddings else model.output_proj.weight
    )
    for layer_spec, layer in zip(spec.decoder.layer, model.decoder_layers, strict=True):
        linear(layer_spec.self_attention.linear[0], layer.self_attn.qkv_proj)
        linear(layer_spec.self_attention.linear[1], layer.self_attn.out_proj)
        norm(layer_spec.self_attention.layer_norm, layer.self_attn_norm)
        linear(layer_spec.attention.linear[0], layer.cross_attn.q_proj)
        linear(layer_spec.attention.linear[1], layer.cross_attn.kv_proj)  # [k; v] rows
        linear(layer_spec.attention.linear[2], layer.cross_attn.out_proj)
        norm(layer_spec.attention.layer_norm, layer.cross_attn_norm)
        ffn(layer_spec.ffn, layer)

    spec.config.layer_norm_epsilon = model.encoder_layers[0].self_attn_norm.eps
    spec.config.unk_token = sp.id_to_piece(sp.unk_id())
    spec.config.bos_token = sp.id_to_piece(c.bos_id)
    spec.config.eos_token = sp.id_to_piece(c.eos_id)
    spec.config.decoder_start_token = sp.id_to_piece(c.bos_id)  # not PAD: docs/design.md §3
    spec.config.add_source_eos = True  # our sources end with EOS; callers pass only pieces
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    spec.register_source_vocabulary(pieces)
    spec.register_target_vocabulary(pieces)
    return spec


def export_ctranslate2(loaded: LoadedModel, out: Path, quantization: str | None) -> None:
    """Write a CTranslate2 model directory (model.bin, config.json, vocabularies)."""
    from ctranslate2.converters.converter import Converter

    class _FromCheckpoint(Converter):
        """CTranslate2's converter interface, so validation, quantization and saving are
        exactly CTranslate2's own."""

        def _load(self) -> Any:
            return ctranslate2_spec(loaded)

    _FromCheckpoint().convert(str(out), quantization=quantization, force=True)


def verify_ctranslate2(loaded: LoadedModel, out: Path) -> float:
    """Score the probe pair with CTranslate2 and compare per-token log-probabilities with ours;
    returns the largest absolute difference (a UserError if above VERIFY_ATOL)."""
    import ctranslate2
    import torch

    sp = loaded.tokenizer.sp
    src, tgt_in = probe_batch(loaded)
    translator = ctranslate2.Translator(str(out), device="cpu", compute_type="float32")
    source = [sp.id_to_piece(i) for i in src[0, :-1].tolist()]  # the model adds the EOS
    target = [sp.id_to_piece(i) for i in tgt_in[0, 1:].tolist()]
    result = translator.score_batch([source], [target])[0]
    theirs = torch.tensor(result.log_probs)  # one per target token, then EOS
    gold = torch.cat([tgt_in[0, 1:], torch.tensor([loaded.model.config.eos_id])])
    with torch.no_grad():
        logp = loaded.model(src, tgt_in).log_softmax(-1)[0]
        ours = logp.gather(1, gold[:, None]).squeeze(1)
    return check_close(ours, theirs, "CTranslate2")
