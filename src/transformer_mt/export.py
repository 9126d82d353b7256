"""`transformer-mt export`: a checkpoint as a Hugging Face Marian model or a CTranslate2 model.

Both runtimes implement the paper's encoder-decoder, but not bit-for-bit with our conventions;
each difference is handled here, and the export is checked against our own forward pass before
it is moved into place (see docs/export.md):

- Normalisation. Marian is post-norm only, so pre-norm (`norm_first`) checkpoints are refused
  for Hugging Face; CTranslate2 takes both.
- Positions. Ours are the paper's interleaved table (sin at even, cos at odd features); Marian's
  `MarianSinusoidalPositionalEmbedding` puts every sin first, then every cos. Positions are
  fixed, so the Marian export applies one permutation P (even features, then odd) to the
  d_model axis of every weight: embedding columns, LayerNorm gamma/beta, input columns of the
  q/k/v and fc1 projections, output rows (and biases) of out_proj and fc2. Sums, dot products,
  LayerNorm statistics and the logits (h P . E P) are unchanged, so the permuted model
  computes exactly our function. CTranslate2 takes the position table as a weight, so it gets
  our table and our weights unpermuted.
- Decoder start. Ours is BOS (id 2), whose embedding was trained as the start symbol. Marian
  models usually start from PAD; the Marian config here says `decoder_start_token_id=2`.
  CTranslate2's stock Marian converter assumes start = PAD = last id with a zero embedding
  (docs/design.md §3); we do not go through it but build the CTranslate2 spec from our weights,
  with `decoder_start_token` = our BOS piece and `add_source_eos` (our sources end with EOS).
- Searching. Ours never emits PAD or BOS (`suppress_tokens`), forces EOS at the length limit
  (`forced_eos_token_id`) and stops a beam when K hypotheses have finished
  (`early_stopping=True`). The length penalties differ in form: ours is GNMT's
  ((5 + len) / 6) ** alpha, Hugging Face and CTranslate2 divide by len ** alpha, so beam
  results agree exactly at alpha = 0 (and greedy results always).

`transformers`, `safetensors` and `ctranslate2` are the optional 'export' extra, imported only
when an export runs. torch is imported inside functions too: `cli.py` imports this module to
build its parser, and other commands must not pay for loading torch.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import shutil
import sys
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformer_mt.errors import UserError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from transformer_mt.checkpoint import LoadedModel
    from transformer_mt.config import TransformerConfig
    from transformer_mt.model import Transformer
    from transformer_mt.model.attention import MultiHeadAttention
    from transformer_mt.model.layers import DecoderLayer, EncoderLayer

FORMATS = ("hf", "ctranslate2")
CT2_QUANTIZATIONS = (
    "int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16", "float16", "bfloat16",
    "float32",
)
# The generation settings written into the Hugging Face export: our `translate` defaults.
DEFAULT_BEAMS = 4
DEFAULT_LENGTH_PENALTY = 0.6
# CTranslate2's default `max_decoding_length`; its position table must cover that many steps.
CT2_DEFAULT_MAX_DECODING = 256
# An export must reproduce our logits this closely (float32 kernels differ in summation order).
VERIFY_ATOL = 1e-3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `transformer-mt export`."""
    parser.add_argument("--checkpoint", required=True, metavar="CKPT", help="checkpoint to export")
    parser.add_argument(
        "--to", required=True, choices=FORMATS,
        help="hf: a directory for transformers.MarianMTModel/MarianTokenizer.from_pretrained; "
        "ctranslate2: a directory for ctranslate2.Translator",
    )
    parser.add_argument(
        "--out", required=True, metavar="DIR",
        help="output directory; written beside it, checked, then moved into place",
    )
    parser.add_argument(
        "--force", action="store_true", help="replace DIR if it exists and is not empty",
    )
    parser.add_argument(
        "--quantization", choices=CT2_QUANTIZATIONS, default=None,
        help="CTranslate2 only: store the weights in this type (None: float32). Quantized "
        "exports are not compared with the checkpoint's logits, only float32 ones are",
    )


def run(args: argparse.Namespace) -> int:
    """Export, verify against our own forward pass, then move the directory into place."""
    if args.quantization is not None and args.to != "ctranslate2":
        raise UserError("--quantization applies to --to ctranslate2 only")
    modules = ("transformers", "safetensors") if args.to == "hf" else ("ctranslate2",)
    for name in modules:
        require_extra(name, "export")

    from transformer_mt.checkpoint import load_for_inference

    if args.to == "hf":
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # our one summary line is the progress report
    loaded = load_for_inference(args.checkpoint)
    check_exportable(loaded.model.config, args.to)
    out = Path(args.out)
    with staged_directory(out, args.force) as stage:
        if args.to == "hf":
            export_hf(loaded, stage)
            report = f"max |logit difference| {verify_hf(loaded, stage):.2e}"
        else:
            export_ctranslate2(loaded, stage, args.quantization)
            if args.quantization in (None, "float32"):
                report = f"max |log-prob difference| {verify_ctranslate2(loaded, stage):.2e}"
            else:
                report = f"{args.quantization} weights, not compared with the checkpoint"
    print(f"transformer-mt: exported {args.checkpoint} to {out} ({args.to}; {report})",
          file=sys.stderr)
    return 0


def require_extra(module: str, extra: str) -> None:
    """Import an optional dependency now, or say which extra to install."""
    try:
        importlib.import_module(module)
    except ImportError:
        raise UserError(
            f"this command needs the '{extra}' extra ({module} is not installed): "
            f"pip install 'transformer-mt[{extra}]'"
        ) from None


def check_exportable(config: TransformerConfig, target: str) -> None:
    """Refuse what the target cannot express, before anything is written."""
    if config.norm_first and target == "hf":
        raise UserError(
            "this checkpoint is a pre-norm model (norm_first=True); Marian is post-norm only "
            "(the paper's layout), so it cannot be exported to Hugging Face; "
            "--to ctranslate2 supports it"
        )


@contextlib.contextmanager
def staged_directory(out: Path, force: bool) -> Iterator[Path]:
    """A fresh directory beside `out` to write into; moved to `out` only if the block succeeds.

    A failed or interrupted export therefore never leaves a directory that looks complete, and
    an existing non-empty `out` is replaced only with --force.
    """
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UserError(f"{out}: directory exists and is not empty; pass --force to replace it")
    parent = out.parent
    if not parent.is_dir():
        raise UserError(f"{out}: parent directory {parent} does not exist")
    stage = parent / f".{out.name}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        stage.mkdir()
    except OSError as exc:
        raise UserError(f"{out}: cannot write in {parent} ({exc.strerror})") from None
    try:
        yield stage
        if out.exists():
            old = parent / f".{out.name}.{uuid.uuid4().hex[:12]}.old"
            os.replace(out, old)
            try:
                os.replace(stage, out)
            except BaseException:
                os.replace(old, out)  # put the user's directory back
                raise
            shutil.rmtree(old)
        else:
            os.replace(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


# ---------------------------------------------------------------------------------------------
# Hugging Face Marian


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
        "pad_token_id": c.pad_id,
        "eos_token_id": c.eos_id,
        "bos_token_id": c.bos_id,
        "decoder_start_token_id": c.bos_id,
        "forced_eos_token_id": c.eos_id,
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
        "decoder_start_token_id": c.bos_id,
        "bos_token_id": c.bos_id,
        "eos_token_id": c.eos_id,
        "pad_token_id": c.pad_id,
        "forced_eos_token_id": c.eos_id,  # we force EOS at the length limit too
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


def probe_batch(loaded: LoadedModel) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed (source, decoder input) pair of real pieces for comparing logits after export."""
    import torch

    sp, c = loaded.tokenizer.sp, loaded.model.config
    ordinary = [i for i in range(sp.get_piece_size())
                if not (sp.is_control(i) or sp.is_unknown(i) or sp.is_byte(i))]
    generator = torch.Generator().manual_seed(0)
    n = min(8, c.max_positions - 1)
    pick = torch.tensor(ordinary)[torch.randint(len(ordinary), (2, n), generator=generator)]
    src = torch.cat([pick[0], torch.tensor([c.eos_id])])[None]
    tgt_in = torch.cat([torch.tensor([c.bos_id]), pick[1]])[None]
    return src, tgt_in


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
    return _check_close(ours, theirs, "Hugging Face")


def _check_close(ours: torch.Tensor, theirs: torch.Tensor, runtime: str) -> float:
    """The largest absolute difference; a UserError (and so no output) when above tolerance."""
    diff = float((ours - theirs).abs().max())
    if not diff <= VERIFY_ATOL:  # also catches NaN
        raise UserError(
            f"the {runtime} export does not reproduce the checkpoint (max difference {diff:.3g} "
            f"> {VERIFY_ATOL}), so nothing was written; the installed {runtime} version may "
            "lay the model out differently: please report it with `pip list` output"
        )
    return diff


# ---------------------------------------------------------------------------------------------
# CTranslate2


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
    return _check_close(ours, theirs, "CTranslate2")
