"""`transformer-mt attention`: heatmaps of the attention weights the model uses for one sentence.

The weights are the real probabilities of the model's teacher-forced forward pass
(`inference.attention_weights`, over `Transformer.attention_weights`), not a
re-implementation, so the pictures show exactly what the model computed: encoder
self-attention, causal decoder self-attention and encoder-decoder (cross) attention, per layer
and head, plus the mean over heads. Without --tgt the target is the model's own output: the
translation `translate` prints with the same search options (--beam-size etc., translate's
defaults: beam 4).

--json FILE writes, instead of or beside the pictures, everything the model computes for the
sentence as one JSON record, the one the server's POST /v1/explain returns and the page's
"Inside" view draws (`inference.explanation`): the pieces, the positional encoding, every
attention map, the beam search tree and the output distribution. It needs no extra.

Files (layers and heads count from 0):
  DIR/{encoder,decoder,cross}_L{l}_H{h}.png and DIR/{kind}_L{l}_avg.png
  DIR/attention.npz: `encoder` (L, H, S, S), `decoder_self` (L, H, T, T), `cross` (L, H, T, S)
  float32 arrays for every layer and head, whatever the filters, and the token labels
  `source_tokens` (pieces + </s>), `decoder_input_tokens` (<s> + pieces) and `target_tokens`
  (pieces + </s>: what each decoder position predicts).

Axes: encoder maps are source x source; decoder maps are decoder input x decoder input; cross
maps label each row with the target token predicted at that position (the usual reading of
cross-attention as an alignment), and columns with the source.

matplotlib is the optional 'viz' extra, imported only when the command runs, and drawn with
the Agg canvas directly (no pyplot, no display, no global backend switch).
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from transformer_mt.commands.options import add_search_arguments, require_extra, search_options
from transformer_mt.errors import UserError
from transformer_mt.textio import write_bytes

if TYPE_CHECKING:
    import numpy as np

    from transformer_mt.inference.loaded_model import LoadedModel
    from transformer_mt.inference.search import SearchOptions


# weights key -> (file prefix, title)
KINDS = {
    "encoder": ("encoder", "encoder self-attention"),
    "decoder_self": ("decoder", "decoder self-attention (causal)"),
    "cross": ("cross", "cross-attention (decoder \u2192 encoder)"),
}
# the search options of the target, and of --json's search tree (no sampling: no tree)
EXPLAIN_SEARCH = ("beam_size", "length_penalty", "max_len_a", "max_len_b", "nbest")
CELL_INCHES = 0.32  # per token, so labels stay readable however long the sentence
MAX_INCHES = 30.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `transformer-mt attention`."""
    parser.add_argument("--checkpoint", required=True, metavar="CKPT", help="model checkpoint")
    parser.add_argument("--src", required=True, metavar="TEXT", help="source sentence (raw text)")
    parser.add_argument(
        "--tgt", metavar="TEXT",
        help="target sentence (raw text) to force-decode; default: the model's translation",
    )
    parser.add_argument("--out", metavar="DIR", help="directory for the pictures")
    parser.add_argument(
        "--json", metavar="FILE",
        help="write what the model computes for the sentence (POST /v1/explain's JSON) to "
        "FILE ('-': standard output)",
    )
    parser.add_argument(
        "--layer", type=int, metavar="L", help="only this layer (counting from 0)",
    )
    parser.add_argument(
        "--head", type=int, metavar="H",
        help="only this head (counting from 0); the mean over heads is then not drawn",
    )
    add_search_arguments(parser, EXPLAIN_SEARCH)


def run(args: argparse.Namespace) -> int:
    """Compute the attention of one sentence pair and write the pictures and the raw weights,
    and/or the whole explanation as JSON."""
    if args.out is None and args.json is None:
        raise UserError("nothing to write: give --out DIR (pictures), --json FILE, or both")
    if args.json is not None and args.tgt is not None:
        raise UserError("--json explains the model's own search, which --tgt would not be; "
                        "leave out --tgt")
    options = search_options(args)
    if args.out is not None:
        require_extra("matplotlib", "viz")
    from transformer_mt.inference.loaded_model import load_for_inference

    loaded = load_for_inference(args.checkpoint)
    c = loaded.model.config
    if args.layer is not None and not 0 <= args.layer < max(c.n_encoder_layers,
                                                             c.n_decoder_layers):
        raise UserError(f"--layer {args.layer}: the model has layers 0 to "
                        f"{max(c.n_encoder_layers, c.n_decoder_layers) - 1}")
    if args.head is not None and not 0 <= args.head < c.n_heads:
        raise UserError(f"--head {args.head}: the model has heads 0 to {c.n_heads - 1}")
    if args.json is not None:
        write_explanation(loaded, args.src, options, args.json)
    if args.out is not None:
        write_pictures(loaded, args, options)
    return 0


def write_explanation(loaded: LoadedModel, text: str, options: SearchOptions,
                      path: str) -> None:
    """`inference.explanation`'s record of `text` as JSON, to `path` or ('-') stdout."""
    from transformer_mt.inference.attention_weights import source_ids
    from transformer_mt.inference.explanation import explain, to_json

    body = to_json(explain(loaded, source_ids(loaded, text), options))
    if path == "-":
        sys.stdout.buffer.write(body + b"\n")
        sys.stdout.flush()
        return
    write_bytes(path, body)
    print(f"transformer-mt: wrote the explanation of {text!r} to {path}", file=sys.stderr)


def write_pictures(loaded: LoadedModel, args: argparse.Namespace,
                   options: SearchOptions) -> None:
    """The heatmaps and attention.npz of `args.src` (and `args.tgt`, or the translation
    searched with `options`) in `args.out`."""
    import numpy as np

    from transformer_mt.inference.attention_weights import attention_arrays, sentence_ids

    src, tgt = sentence_ids(loaded, args.src, args.tgt, options)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{out}: cannot create directory ({exc.strerror})") from None
    arrays, tokens = attention_arrays(loaded, src, tgt)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays,
                        **{name: np.array(labels, dtype=str) for name, labels in tokens.items()})
    write_bytes(out / "attention.npz", buffer.getvalue())
    written = draw_all(arrays, tokens, out, args.layer, args.head)
    target_text = loaded.tokenizer.decode([tgt])[0]
    print(f"transformer-mt: wrote {written} pictures and attention.npz to {out} "
          f"(target: {target_text!r})", file=sys.stderr)


def draw_all(
    arrays: dict[str, np.ndarray], tokens: dict[str, list[str]], out: Path,
    only_layer: int | None, only_head: int | None,
) -> int:
    """Every requested heatmap (per head, and the head mean unless one head is asked for);
    returns how many were written."""
    labels = {  # kind -> (row labels, column labels, y axis, x axis)
        "encoder": (tokens["source_tokens"], tokens["source_tokens"], "source (query)",
                    "source (key)"),
        "decoder_self": (tokens["decoder_input_tokens"], tokens["decoder_input_tokens"],
                         "decoder input (query)", "decoder input (key)"),
        "cross": (tokens["target_tokens"], tokens["source_tokens"],
                  "target token predicted", "source (key)"),
    }
    written = 0
    for kind, stack in arrays.items():
        prefix, title = KINDS[kind]
        rows, cols, ylabel, xlabel = labels[kind]
        n_layers, n_heads = stack.shape[:2]
        for layer in range(n_layers) if only_layer is None else [only_layer]:
            if layer >= n_layers:  # encoder and decoder depths may differ
                continue
            for head in range(n_heads) if only_head is None else [only_head]:
                draw_heatmap(stack[layer, head], rows, cols, f"{title}\nlayer {layer}, head {head}",
                             xlabel, ylabel, out / f"{prefix}_L{layer}_H{head}.png")
                written += 1
            if only_head is None:
                draw_heatmap(stack[layer].mean(axis=0), rows, cols,
                             f"{title}\nlayer {layer}, mean of {n_heads} heads",
                             xlabel, ylabel, out / f"{prefix}_L{layer}_avg.png")
                written += 1
    return written


def draw_heatmap(
    matrix: np.ndarray, row_labels: list[str], col_labels: list[str], title: str,
    xlabel: str, ylabel: str, path: Path,
) -> None:
    """One labelled heatmap as a PNG, sized so every token label stays legible.

    The colour scale runs from 0 to the map's maximum (shown by the colour bar): diffuse heads
    and head means would look uniformly dark on a fixed 0-1 scale.
    """
    from matplotlib.figure import Figure

    n_rows, n_cols = matrix.shape
    width = min(max(n_cols * CELL_INCHES + 2.8, 4.5), MAX_INCHES)
    height = min(max(n_rows * CELL_INCHES + 2.0, 3.5), MAX_INCHES)
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="viridis", vmin=0.0, vmax=max(float(matrix.max()), 1e-9),
                      aspect="auto", interpolation="nearest")
    ax.set_xticks(range(n_cols), labels=col_labels, rotation=90, fontsize=8)
    ax.set_yticks(range(n_rows), labels=row_labels, fontsize=8)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, label="attention probability", shrink=0.9)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    write_bytes(path, buffer.getvalue())
