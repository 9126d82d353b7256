"""The attention probabilities the model computes for one sentence pair, as arrays with the
pieces that label their axes: what `transformer-mt attention` draws and the server's
/v1/attention returns. They come from `Transformer.attention_weights` (the model's own
teacher-forced forward pass), never from a re-implementation."""

from __future__ import annotations

from typing import TYPE_CHECKING

from transformer_mt.errors import UserError

if TYPE_CHECKING:
    import numpy as np

    from transformer_mt.inference.loaded_model import LoadedModel
    from transformer_mt.inference.search import SearchOptions


def attention_arrays(
    loaded: LoadedModel, src: list[int], tgt: list[int]
) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """The model's attention probabilities for one pair, as (layers, heads, queries, keys)
    arrays per kind, and the pieces that label the axes."""
    import numpy as np
    import torch

    c = loaded.model.config
    device = next(loaded.model.parameters()).device
    with torch.inference_mode():
        weights = loaded.model.attention_weights(
            torch.tensor([src], device=device), torch.tensor([[c.bos_id] + tgt], device=device)
        )
    arrays = {kind: np.stack([w[0].float().cpu().numpy() for w in per_layer])
              for kind, per_layer in weights.items()}
    piece = loaded.tokenizer.sp.id_to_piece
    tokens = {
        "source_tokens": [piece(i) for i in src],
        "decoder_input_tokens": [piece(i) for i in [c.bos_id] + tgt],
        "target_tokens": [piece(i) for i in tgt + [c.eos_id]],
    }
    return arrays, tokens


ATTENTION_DECIMALS = 4  # what JSON answers keep of an attention probability


def attention_json(array: np.ndarray) -> list:
    """`array` as nested lists for JSON, rounded to ATTENTION_DECIMALS in float64 (a float32
    0.0103 would print as 0.010300000198185444, three times the bytes)."""
    return array.astype("float64").round(ATTENTION_DECIMALS).tolist()


def source_ids(loaded: LoadedModel, text: str) -> list[int]:
    """The subword ids of a source sentence (no EOS); a UserError when it is empty or, with
    its EOS, longer than the model's position table."""
    c = loaded.model.config
    if not text.strip():
        raise UserError("--src is empty")
    ids = loaded.tokenizer.encode([text])[0]
    if len(ids) + 1 > c.max_positions:
        raise UserError(f"--src is {len(ids) + 1} tokens long; the model takes at most "
                        f"{c.max_positions}")
    return ids


def sentence_ids(
    loaded: LoadedModel, src_text: str, tgt_text: str | None,
    options: SearchOptions | None = None,
) -> tuple[list[int], list[int]]:
    """Source ids (+ EOS) and target ids (no BOS/EOS): the given target, or the model's best
    translation searched with `options` (default: greedy)."""
    import torch

    from transformer_mt.inference.search import generate

    c = loaded.model.config
    src = source_ids(loaded, src_text) + [c.eos_id]
    if tgt_text is None:
        device = next(loaded.model.parameters()).device
        search = vars(options) if options is not None else {"beam_size": 1}
        tgt = generate(loaded.model, torch.tensor([src], device=device), **search)[0][0].tokens
    else:
        tgt = loaded.tokenizer.encode([tgt_text])[0]
    if len(tgt) + 1 > c.max_positions:
        raise UserError(f"--tgt is {len(tgt) + 1} tokens long with <s>; the model takes at "
                        f"most {c.max_positions}")
    return src, tgt
