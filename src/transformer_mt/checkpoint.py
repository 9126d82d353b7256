"""The checkpoint file: what it holds, and reading it safely.

A training checkpoint (Lightning's dict) carries, under `transformer_mt`, everything inference
needs: the model config, the sentencepiece model and the language pair; the weights sit in
`state_dict` under the `model.` prefix. Reading uses `torch.load(weights_only=True)`, which
refuses to unpickle arbitrary objects, so a malicious file cannot run code. Training, data
(`tokenizer_from`), averaging and inference (`inference.loaded_model`) all read through here.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from typing import Any

import torch

from transformer_mt.errors import UserError
from transformer_mt.textio import check_readable

META_KEY = "transformer_mt"
STATE_PREFIX = "model."


def load_checkpoint_dict(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """torch.load with weights_only=True; every failure becomes a one-line UserError.

    Training (`fit --ckpt_path`) loads through here too, so a resumed run gets the same
    protection and the same messages as `translate`.
    """
    check_readable(path)
    if not zipfile.is_zipfile(path):  # torch.save writes zip archives; pickle would misreport
        raise UserError(f"{path}: not a readable checkpoint (truncated or corrupt: not a zip "
                        "archive as written by torch.save)")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UserError(
            f"{path}: refused to load: the file holds objects other than tensors and plain "
            f"data ({_first_line(exc, 'unsupported GLOBAL')}); only load checkpoints you trust"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UserError(
            f"{path}: not a readable checkpoint (truncated or corrupt: {_first_line(exc)})"
        ) from None
    if not isinstance(checkpoint, dict) or META_KEY not in checkpoint:
        raise UserError(
            f"{path}: not a transformer-mt checkpoint (no '{META_KEY}' section); "
            "use a .ckpt written by `transformer-mt fit` or `transformer-mt average`"
        )
    return checkpoint


def _first_line(exc: BaseException, prefer: str = "") -> str:
    """The telling line of an exception's message, for a one-line error: the first containing
    `prefer` (torch's unpickling errors name the refused object only after a paragraph of
    advice), else the first; the exception type when there is no message."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    preferred = [line for line in lines if prefer and prefer in line]
    return (preferred or lines or [type(exc).__name__])[0][:160]


def model_state_dict(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The Transformer's own weights (the LightningModule stores them under `model.`)."""
    state = checkpoint.get("state_dict", {})
    return {k[len(STATE_PREFIX):]: v for k, v in state.items() if k.startswith(STATE_PREFIX)}
