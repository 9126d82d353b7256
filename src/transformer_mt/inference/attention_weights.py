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


def sentence_ids(
    loaded: LoadedModel, src_text: str, tgt_text: str | None
) -> tuple[list[int], list[int]]:
    """Source ids (+ EOS) and target ids (no BOS/EOS): the given target, or the greedy one."""
    import torch

    from transformer_mt.inference.search import generate

    c = loaded.model.config
    if not src_text.strip():
        raise UserError("--src is empty")
    src = loaded.tokenizer.encode([src_text])[0] + [c.eos_id]
    if len(src) > c.max_positions:
        raise UserError(f"--src is {len(src)} tokens long; the model takes at most "
                        f"{c.max_positions}")
    if tgt_text is None:
        device = next(loaded.model.parameters()).device
        tgt = generate(loaded.model, torch.tensor([src], device=device), beam_size=1)[0][0].tokens
    else:
        tgt = loaded.tokenizer.encode([tgt_text])[0]
    if len(tgt) + 1 > c.max_positions:
        raise UserError(f"--tgt is {len(tgt) + 1} tokens long with <s>; the model takes at "
                        f"most {c.max_positions}")
    return src, tgt
