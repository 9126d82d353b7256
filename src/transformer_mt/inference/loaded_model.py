"""A checkpoint made ready to translate: the model in eval mode, its tokenizer and language
pair, built from the checkpoint file alone (`transformer_mt.checkpoint` reads it safely)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch

from transformer_mt.checkpoint import META_KEY, load_checkpoint_dict, model_state_dict
from transformer_mt.config import TransformerConfig
from transformer_mt.data.tokenizer import Tokenizer
from transformer_mt.errors import UserError
from transformer_mt.model import Transformer


@dataclass(kw_only=True)
class LoadedModel:
    """What inference needs of a checkpoint, in memory. `hyper_parameters` are the training
    options (`model.*`) the checkpoint was written with, where its predict settings are."""

    model: Transformer
    tokenizer: Tokenizer
    src_lang: str
    tgt_lang: str
    hyper_parameters: dict[str, Any] = field(default_factory=dict)


def load_for_inference(path: str | os.PathLike, device: str | torch.device = "cpu") -> LoadedModel:
    """Model in eval mode on `device`, its tokenizer and language pair, from one checkpoint."""
    checkpoint = load_checkpoint_dict(path)
    meta = checkpoint[META_KEY]
    try:
        config = TransformerConfig.from_dict(meta["model_config"])
        tokenizer = Tokenizer(bytes(meta["sentencepiece"]))
        model = Transformer(config)
        model.load_state_dict(model_state_dict(checkpoint))
    except (KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise UserError(
            f"{path}: inconsistent transformer-mt checkpoint ({str(exc).splitlines()[0][:160]})"
        ) from None
    model.to(device).eval()
    return LoadedModel(model=model, tokenizer=tokenizer, src_lang=meta.get("src_lang", "src"),
                       tgt_lang=meta.get("tgt_lang", "tgt"),
                       hyper_parameters=dict(checkpoint.get("hyper_parameters") or {}))
