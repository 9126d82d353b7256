"""Everything the model computes for one sentence, as one JSON-ready record: what the page's
"Inside" view draws, `POST /v1/explain` returns and `transformer-mt attention --json` writes.

Every number comes from the code that translates, never from a re-implementation:
- the pieces and ids from the checkpoint's sentencepiece model;
- the positional encoding from the model's own sinusoidal table, the embedding scale from
  `Transformer.embed_scale`;
- the search tree from the real `beam_search`, through its `observer` hook (one `BeamStep`
  per step), so its best hypothesis is the one `translate` returns with the same options;
- the attention of every kind, layer and head from `Transformer.attention_weights` (the
  teacher-forced pass over the source and the best hypothesis);
- the output distribution from the same teacher-forced decoder (`decode_hidden`, `logits`),
  and the label-smoothed training target from the checkpoint's epsilon, with the loss that
  target gives as `F.cross_entropy(..., label_smoothing=eps)` computes it (the uniform
  epsilon / V smoothing `training.loss` uses, §5.4 of the paper).
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from transformer_mt.inference.attention_weights import attention_arrays, attention_json
from transformer_mt.inference.search import (
    BeamStep,
    Hypothesis,
    SearchOptions,
    beam_search,
    length_penalty_factor,
    max_lengths,
)
from transformer_mt.inference.translator import clean_text

if TYPE_CHECKING:
    from transformer_mt.inference.loaded_model import LoadedModel

TOP = 10  # pieces shown per target position
DEFAULT_LABEL_SMOOTHING = 0.1  # the paper's, and `fit`'s default


class BeamTree:
    """The observer of one sentence's `beam_search`: every ranked extension of every step as a
    node (its parent node, token, cumulative log-probability, length-penalised score and
    whether the search finished, kept or pruned it)."""

    def __init__(self, alpha: float, piece: Any) -> None:
        self.alpha, self.piece = alpha, piece
        self.nodes: list[dict[str, Any]] = []
        self.beams: list[int | None] = [None]  # node of each alive beam; None: the root <s>

    def __call__(self, step: BeamStep) -> None:
        scores, parents, tokens = (step.score[0].tolist(), step.parent[0].tolist(),
                                   step.token[0].tolist())
        finished = [] if step.finished is None else step.finished[0].tolist()
        kept = list(zip(step.kept_parent[0].tolist(), step.kept_token[0].tolist(), strict=True))
        by_extension: dict[tuple[int, int], int] = {}
        penalty = float(length_penalty_factor(step.step, self.alpha))
        for rank, (log_prob, parent, token) in enumerate(zip(scores, parents, tokens,
                                                             strict=True)):
            if not math.isfinite(log_prob):  # an impossible extension (banned, padding)
                continue
            ended = rank < len(finished) and finished[rank]
            state = ("finished" if ended else
                     "kept" if (parent, token) in kept else "pruned")
            by_extension[parent, token] = len(self.nodes)
            self.nodes.append({
                "step": step.step, "rank": rank, "parent": self.beams[parent], "token": token,
                "piece": self.piece(token), "log_prob": round(log_prob, 4),
                "score": round(log_prob / penalty, 4), "state": state,
            })
        self.beams = [by_extension.get(extension) if math.isfinite(score) else None
                      for extension, score in zip(kept, step.kept_score[0].tolist(),
                                                  strict=True)]

    def path(self, node: int) -> list[int]:
        """The tokens from the root to `node`, its own included."""
        tokens: list[int] = []
        at: int | None = node
        while at is not None:
            tokens.append(self.nodes[at]["token"])
            at = self.nodes[at]["parent"]
        return tokens[::-1]

    def winner(self, best: Hypothesis, eos: int) -> int | None:
        """The finished node of the search's best hypothesis."""
        for i, node in enumerate(self.nodes):
            if node["state"] == "finished" and self.path(i) == best.tokens + [eos]:
                return i
        return None


def search_tree(
    loaded: LoadedModel, src: list[int], options: SearchOptions,
    max_output_tokens: int | None = None,
) -> tuple[list[Hypothesis], BeamTree, int]:
    """The n-best list of `src` (ids with EOS) by `beam_search` with `options`, the tree of
    its steps, and the length limit it searched with: `translate`'s (a * source + b, within
    the position table), capped at `max_output_tokens`. One sentence alone has one limit, so
    searching with a = 0, b = that limit is the same search as `translate`'s."""
    model = loaded.model
    device = next(model.parameters()).device
    batch = torch.tensor([src], device=device)
    limit = int(max_lengths(model, batch, options.max_len_a, options.max_len_b)[0])
    if max_output_tokens is not None:
        limit = min(limit, max_output_tokens)
    tree = BeamTree(options.length_penalty, loaded.tokenizer.sp.id_to_piece)
    with torch.inference_mode():
        hypotheses = beam_search(model, batch, beam_size=options.beam_size,
                                 length_penalty=options.length_penalty, max_len_a=0.0,
                                 max_len_b=limit, nbest=options.nbest, observer=tree)[0]
    return hypotheses, tree, limit


def output_distribution(
    loaded: LoadedModel, src: list[int], tgt: list[int], epsilon: float
) -> dict[str, Any]:
    """At each target position, the model's TOP most probable next pieces (teacher-forced on
    `tgt`), the probability and rank of the piece the translation has there, and what the
    label-smoothed target of training makes of that piece, with the loss it gives."""
    model, c = loaded.model, loaded.model.config
    device = next(model.parameters()).device
    piece = loaded.tokenizer.sp.id_to_piece
    gold = torch.tensor(tgt + [c.eos_id], device=device)
    with torch.inference_mode():
        memory, src_mask = model.encode(torch.tensor([src], device=device))
        hidden = model.decode_hidden(torch.tensor([[c.bos_id] + tgt], device=device), memory,
                                     src_mask)
        logits = model.logits(hidden)[0].float()
        log_probs = F.log_softmax(logits, dim=-1)
        smoothed = F.cross_entropy(logits, gold, label_smoothing=epsilon, reduction="none")
        top = log_probs.topk(min(TOP, c.vocab_size), dim=-1)
        gold_log_prob = log_probs.gather(1, gold[:, None]).squeeze(1)
        rank = (log_probs > gold_log_prob[:, None]).sum(dim=1)
    vocab = c.vocab_size
    positions = []
    for t, (ids, values, target, lp, r, loss) in enumerate(zip(
            top.indices.tolist(), top.values.tolist(), gold.tolist(), gold_log_prob.tolist(),
            rank.tolist(), smoothed.tolist(), strict=True)):
        positions.append({
            "position": t, "target": piece(target), "target_id": target,
            "p": round(math.exp(lp), 5), "rank": r + 1, "nll": round(-lp, 4),
            "smoothed_loss": round(loss, 4),
            "top": [{"piece": piece(i), "id": i, "p": round(math.exp(v), 5)}
                    for i, v in zip(ids, values, strict=True)],
        })
    return {
        "label_smoothing": epsilon, "vocab_size": vocab,
        # (1 - eps) * one-hot + eps / V: the target's share, and every other piece's
        "smoothed_target": round(1 - epsilon + epsilon / vocab, 6),
        "smoothed_other": epsilon / vocab,
        "positions": positions,
    }


def explain(
    loaded: LoadedModel, src_ids: list[int], options: SearchOptions | None = None, *,
    max_output_tokens: int | None = None,
) -> dict[str, Any]:
    """What the model computes for one source sentence (subword ids, no EOS), searched with
    `options` (translate's defaults): a JSON-ready record whose `attention` values are numpy
    arrays (layers, heads, queries, keys) until `to_json` writes them."""
    options = (options or SearchOptions()).check()
    if options.sampling:
        raise ValueError("explain shows a beam search; sampling has no search tree")
    model, c = loaded.model, loaded.model.config
    src = list(src_ids) + [c.eos_id]
    hypotheses, tree, limit = search_tree(loaded, src, options, max_output_tokens)
    best = hypotheses[0]
    arrays, tokens = attention_arrays(loaded, src, best.tokens)
    epsilon = float(loaded.hyper_parameters.get("label_smoothing", DEFAULT_LABEL_SMOOTHING))
    n_positions = max(len(src), len(best.tokens) + 1)
    table = model.positions.table[:n_positions].float()
    with torch.inference_mode():
        scaled = model.embed(torch.tensor(src, device=table.device)) * model.embed_scale

    def decode(tokens: list[int]) -> str:  # as `translate` prints it
        return clean_text(loaded.tokenizer.decode([tokens])[0])

    return {
        "source": {"text": decode(src_ids), "pieces": tokens["source_tokens"],
                   "ids": src},
        "translation": {"text": decode(best.tokens), "pieces": tokens["target_tokens"],
                        "ids": best.tokens + [c.eos_id]},
        "decoder_input": {"pieces": tokens["decoder_input_tokens"],
                          "ids": [c.bos_id] + best.tokens},
        "model": {"d_model": c.d_model, "n_heads": c.n_heads, "d_ff": c.d_ff,
                  "n_encoder_layers": c.n_encoder_layers, "n_decoder_layers": c.n_decoder_layers,
                  "vocab_size": c.vocab_size, "norm_first": c.norm_first},
        "embedding": {
            "scale": model.embed_scale,
            # |embedding x scale| of each source piece beside |position vector|: the scale
            # keeps the word's vector from drowning in the position's
            "source_norms": [round(v, 3) for v in scaled.norm(dim=-1).tolist()],
            "position_norms": [round(v, 3) for v in table[: len(src)].norm(dim=-1).tolist()],
        },
        "positions": {"length": n_positions,
                      "table": [[round(v, 4) for v in row] for row in table.cpu().tolist()]},
        "attention": arrays,
        "search": {
            "beam_size": options.beam_size, "length_penalty": options.length_penalty,
            "max_len_a": options.max_len_a, "max_len_b": options.max_len_b,
            "max_output_tokens": limit, "steps": max((n["step"] for n in tree.nodes),
                                                     default=0),
            "nodes": tree.nodes, "best": tree.winner(best, c.eos_id),
            "nbest": [{"text": decode(h.tokens), "tokens": h.tokens, "score": h.score,
                       "log_prob": h.log_prob} for h in hypotheses],
        },
        "distribution": output_distribution(loaded, src, best.tokens, epsilon),
    }


def to_json(explanation: dict[str, Any]) -> bytes:
    """The record as compact JSON, attention probabilities rounded (`attention_json`)."""
    attention = {kind: attention_json(array) for kind, array in explanation["attention"].items()}
    return json.dumps({**explanation, "attention": attention}, ensure_ascii=False,
                      separators=(",", ":")).encode("utf-8")
