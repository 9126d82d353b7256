"""Hugging Face Marian export: our weights in `MarianMTModel`'s layout (positions permuted,
decoder start = our BOS), with `MarianTokenizer` files, checked against our logits."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformer_mt.exporters.staging import check_close, probe_batch

if TYPE_CHECKING:
    import torch
    from torch import nn

    from transformer_mt.config import TransformerConfig
    from transformer_mt.inference.loaded_model import LoadedModel
    from transformer_mt.model import Transformer
    from transformer_mt.model.layers import DecoderLayer, EncoderLayer
    from transformer_mt.model.multi_head_attention import MultiHeadAttention

# The generation settings written into the Hugging Face export: our `translate` defaults.
DEFAULT_BEAMS = 4
DEFAULT_LENGTH_PENALTY = 0.6


def marian_permutation(d_model: int) -> torch.Tensor:
    """Feature order of Marian's positions in terms of ours: Marian feature c = our feature p[c].

    Ours: PE[:, 2i] = sin(pos w_i), PE[:, 2i+1] = cos(pos w_i). Marian: PE[:, i] = sin(pos w_i),
    PE[:, d/2 + i] = cos(pos w_i). So p = (0, 2, 4, ..., 1, 3, 5, ...).
    """
    import torch

    return torch.cat([torch.arange(0, d_model, 2), torch.arange(1, d_model, 2)])


def marian_state_dict(model: Transformer) -> dict[str, torch.Tensor]:
    """Our weights under Marian's names, with the d_model axis permuted (module docstring)."""
    import torch

    c = model.config
    p = marian_permutation(c.d_model)
    d = c.d_model
    out: dict[str, torch.Tensor] = {}

    def cols(w: torch.Tensor) -> torch.Tensor:  # a layer that reads the residual stream
        return w[:, p].contiguous()

    def rows(w: torch.Tensor) -> torch.Tensor:  # a layer that writes the residual stream
        return w[p].contiguous()

    def linear_in(name: str, weight: torch.Tensor, bias: torch.Tensor) -> None:
        out[f"{name}.weight"], out[f"{name}.bias"] = cols(weight), bias.clone()

    def linear_out(name: str, layer: nn.Linear) -> None:
        out[f"{name}.weight"], out[f"{name}.bias"] = rows(layer.weight), rows(layer.bias)

    def norm(name: str, layer: nn.LayerNorm) -> None:
        out[f"{name}.weight"], out[f"{name}.bias"] = rows(layer.weight), rows(layer.bias)

    def self_attention(name: str, attn: MultiHeadAttention) -> None:
        for i, proj in enumerate(("q_proj", "k_proj", "v_proj")):
            part = slice(i * d, (i + 1) * d)
            linear_in(f"{name}.{proj}", attn.qkv_proj.weight[part], attn.qkv_proj.bias[part])
        linear_out(f"{name}.out_proj", attn.out_proj)

    def ffn(name: str, layer: EncoderLayer | DecoderLayer) -> None:
        linear_in(f"{name}.fc1", layer.ffn.fc1.weight, layer.ffn.fc1.bias)
        linear_out(f"{name}.fc2", layer.ffn.fc2)
        norm(f"{name}.final_layer_norm", layer.ffn_norm)

    with torch.no_grad():
        if c.share_embeddings:
            out["model.shared.weight"] = cols(model.embed.weight)
        else:
            out["model.encoder.embed_tokens.weight"] = cols(model.embed.weight)
            out["model.decoder.embed_tokens.weight"] = cols(model.tgt_embed.weight)
            out["lm_head.weight"] = cols(model.output_proj.weight)
        for i, layer in enumerate(model.encoder_layers):
            name = f"model.encoder.layers.{i}"
            self_attention(f"{name}.self_attn", layer.self_attn)
            norm(f"{name}.self_attn_layer_norm", layer.self_attn_norm)
            ffn(name, layer)
        for i, layer in enumerate(model.decoder_layers):
            name = f"model.decoder.layers.{i}"
            self_attention(f"{name}.self_attn", layer.self_attn)
            norm(f"{name}.self_attn_layer_norm", layer.self_attn_norm)
            cross = layer.cross_attn
            linear_in(f"{name}.encoder_attn.q_proj", cross.q_proj.weight, cross.q_proj.bias)
            for i_kv, proj in enumerate(("k_proj", "v_proj")):
                part = slice(i_kv * d, (i_kv + 1) * d)
                linear_in(
                    f"{name}.encoder_attn.{proj}", cross.kv_proj.weight[part],
                    cross.kv_proj.bias[part],
                )
            linear_out(f"{name}.encoder_attn.out_proj", cross.out_proj)
            norm(f"{name}.encoder_attn_layer_norm", layer.cross_attn_norm)
            ffn(name, layer)
    return out


def special_token_ids(config: TransformerConfig) -> dict[str, int]:
    """Our special ids as Marian's config and generation config name them: the decoder starts
    from BOS (docs/design.md §3), and EOS is forced at the maximum length, as ours is."""
    return {"pad_token_id": config.pad_id, "eos_token_id": config.eos_id,
            "bos_token_id": config.bos_id, "decoder_start_token_id": config.bos_id,
            "forced_eos_token_id": config.eos_id}


def marian_config_kwargs(config: TransformerConfig) -> dict[str, Any]:
    """MarianConfig arguments describing our architecture and special ids."""
    c = config
    return {
        "vocab_size": c.vocab_size,
        "decoder_vocab_size": c.vocab_size,
        "max_position_embeddings": c.max_positions,
        "d_model": c.d_model,
        "encoder_layers": c.n_encoder_layers,
        "decoder_layers": c.n_decoder_layers,
        "encoder_attention_heads": c.n_heads,
        "decoder_attention_heads": c.n_heads,
        "encoder_ffn_dim": c.d_ff,
        "decoder_ffn_dim": c.d_ff,
        "activation_function": "relu",
        "dropout": c.dropout,
        "attention_dropout": c.attention_dropout,
        "activation_dropout": c.activation_dropout,
        "scale_embedding": True,  # embeddings * sqrt(d_model), as in the paper
        "share_encoder_decoder_embeddings": c.share_embeddings,
        "tie_word_embeddings": c.share_embeddings,
        **special_token_ids(c),
    }


def marian_generation_kwargs(config: TransformerConfig) -> dict[str, Any]:
    """GenerationConfig arguments that make `generate` search the way `translate` does.

    max_length is our hard cap: the start token, max_positions - 1 tokens, and the forced EOS
    (the EOS is predicted, never fed back, so every input position fits the table). Our
    per-sentence limit floor(a * src_len + b) cannot be written in a config; pass
    `max_new_tokens=limit + 1` (the +1 is the EOS) to `generate` for the same limit.
    """
    c = config
    return {
        **special_token_ids(c),  # forced_eos_token_id: we force EOS at the length limit too
        "suppress_tokens": [c.pad_id, c.bos_id],  # never generated by our searches
        "num_beams": DEFAULT_BEAMS,
        "length_penalty": DEFAULT_LENGTH_PENALTY,  # HF divides by len ** alpha (not GNMT)
        "early_stopping": True,  # stop a sentence when num_beams hypotheses have finished
        "max_length": c.max_positions + 1,
    }


def export_hf(loaded: LoadedModel, out: Path) -> None:
    """Write config.json, generation_config.json, model.safetensors and the tokenizer files."""
    import torch
    from transformers import GenerationConfig, MarianConfig, MarianMTModel, MarianTokenizer

    c = loaded.model.config
    hf_model = MarianMTModel(MarianConfig(**marian_config_kwargs(c)))
    missing, unexpected = hf_model.load_state_dict(marian_state_dict(loaded.model), strict=False)
    # Everything not listed must be the derived, fixed tensors Marian builds itself.
    allowed = {"final_logits_bias", "model.encoder.embed_positions.weight",
               "model.decoder.embed_positions.weight", "model.encoder.embed_tokens.weight",
               "model.decoder.embed_tokens.weight", "lm_head.weight"}
    if unexpected or set(missing) - allowed:
        raise RuntimeError(f"Marian layout changed: missing {missing}, unexpected {unexpected}")
    with torch.no_grad():
        hf_model.final_logits_bias.zero_()  # our output projection has no bias
    hf_model.generation_config = GenerationConfig(**marian_generation_kwargs(c))
    hf_model.save_pretrained(out)

    tokenizer = loaded.tokenizer
    for name in ("source.spm", "target.spm"):  # one joint model serves both sides
        (out / name).write_bytes(tokenizer.model_proto)
    vocab = {tokenizer.sp.id_to_piece(i): i for i in range(tokenizer.vocab_size)}
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=1) + "\n",
                                    encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Recommended: pip install sacremoses" (unused here)
        hf_tokenizer = MarianTokenizer(
            str(out / "source.spm"), str(out / "target.spm"), str(out / "vocab.json"),
            source_lang=loaded.src_lang, target_lang=loaded.tgt_lang,
            unk_token=tokenizer.sp.id_to_piece(tokenizer.sp.unk_id()),
            eos_token=tokenizer.sp.id_to_piece(c.eos_id),
            pad_token=tokenizer.sp.id_to_piece(c.pad_id),
            bos_token=tokenizer.sp.id_to_piece(c.bos_id),  # special, so decode can skip it
            model_max_length=c.max_positions,  # source tokens, the EOS included
            clean_up_tokenization_spaces=False,  # our decode is sentencepiece's, unchanged
        )
    hf_tokenizer.save_pretrained(out)


def verify_hf(loaded: LoadedModel, out: Path) -> float:
    """Load the export the way a user would and compare its logits with ours; returns the
    largest absolute difference (a UserError if above VERIFY_ATOL)."""
    import torch
    from transformers import MarianMTModel, MarianTokenizer

    hf_model = MarianMTModel.from_pretrained(out).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        MarianTokenizer.from_pretrained(out)
    src, tgt_in = probe_batch(loaded)
    with torch.no_grad():
        ours = loaded.model(src, tgt_in)
        theirs = hf_model(input_ids=src, decoder_input_ids=tgt_in).logits
    return check_close(ours, theirs, "Hugging Face")
