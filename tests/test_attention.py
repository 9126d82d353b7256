"""`transformer-mt attention` (attention.py): files, filters, and that the saved weights are the
model's real attention probabilities."""

from __future__ import annotations

import argparse
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import import_extra
from transformer_mt.commands import attention
from transformer_mt.config import EOS_ID, TransformerConfig
from transformer_mt.data.tokenizer import train_tokenizer
from transformer_mt.errors import UserError
from transformer_mt.inference.loaded_model import load_for_inference
from transformer_mt.inference.search import generate
from transformer_mt.model import Transformer

import_extra("matplotlib", "viz")

SRC = "the small cat sees a big dog"
TGT = "die kleine Katze sieht einen großen Hund"
N_LAYERS, N_HEADS = 2, 2
KINDS = ("encoder", "decoder", "cross")


def run_attention(argv: list[str]) -> int:
    """`transformer-mt attention ARGV` through the module's own parser."""
    parser = argparse.ArgumentParser()
    attention.add_arguments(parser)
    return attention.run(parser.parse_args(argv))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random model (attention maths does not need training) with a real vocabulary."""
    tmp = tmp_path_factory.mktemp("attention")
    words = SRC.split() + TGT.split() + ["house", "Haus", "green", "grün", "runs", "läuft"]
    texts = [" ".join(words[(i * 7 + j) % len(words)] for j in range(i % 6 + 2))
             for i in range(300)]
    tokenizer = train_tokenizer(texts + [SRC, TGT], vocab_size=300, cache_dir=tmp / "spm")
    torch.manual_seed(0)
    config = TransformerConfig(
        vocab_size=tokenizer.vocab_size, d_model=32, n_heads=N_HEADS, d_ff=64,
        n_encoder_layers=N_LAYERS, n_decoder_layers=N_LAYERS, dropout=0.0, max_positions=40,
    )
    path = tmp / "model.ckpt"
    torch.save({
        "state_dict": {f"model.{k}": v for k, v in Transformer(config).state_dict().items()},
        "transformer_mt": {"model_config": config.to_dict(),
                           "sentencepiece": tokenizer.model_proto,
                           "src_lang": "en", "tgt_lang": "de"},
    }, path)
    return path


@pytest.fixture(scope="module")
def full_run(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pictures") / "all"
    assert run_attention(["--checkpoint", str(checkpoint), "--src", SRC, "--tgt", TGT,
                          "--out", str(out)]) == 0
    return out


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def test_writes_every_layer_head_and_average(full_run: Path) -> None:
    expected = {"attention.npz"} | {
        f"{kind}_L{layer}_{suffix}.png" for kind in KINDS for layer in range(N_LAYERS)
        for suffix in [f"H{h}" for h in range(N_HEADS)] + ["avg"]
    }
    assert {p.name for p in full_run.iterdir()} == expected
    for png in full_run.glob("*.png"):
        width, height = png_size(png)
        assert width >= 450 and height >= 350  # room for 9-10 token labels per axis


def test_saved_weights_are_the_models(full_run: Path, checkpoint: Path) -> None:
    loaded = load_for_inference(checkpoint)
    src = loaded.tokenizer.encode([SRC])[0] + [EOS_ID]
    tgt = loaded.tokenizer.encode([TGT])[0]
    with torch.no_grad():
        expected = loaded.model.attention_weights(torch.tensor([src]), torch.tensor([[2] + tgt]))
    with np.load(full_run / "attention.npz", allow_pickle=False) as saved:
        for kind, per_layer in expected.items():
            assert saved[kind].shape == (N_LAYERS, N_HEADS, *per_layer[0].shape[2:])
            for layer, weights in enumerate(per_layer):
                np.testing.assert_allclose(saved[kind][layer], weights[0].numpy(), atol=1e-6)
        piece = loaded.tokenizer.sp.id_to_piece
        assert list(saved["source_tokens"]) == [piece(i) for i in src]
        assert list(saved["decoder_input_tokens"]) == ["<s>"] + [piece(i) for i in tgt]
        assert list(saved["target_tokens"]) == [piece(i) for i in tgt] + ["</s>"]


def test_rows_are_distributions_and_decoder_is_causal(full_run: Path) -> None:
    with np.load(full_run / "attention.npz", allow_pickle=False) as saved:
        n_src, n_tgt = len(saved["source_tokens"]), len(saved["decoder_input_tokens"])
        assert saved["encoder"].shape[-2:] == (n_src, n_src)
        assert saved["decoder_self"].shape[-2:] == (n_tgt, n_tgt)
        assert saved["cross"].shape[-2:] == (n_tgt, n_src)
        for kind in ("encoder", "decoder_self", "cross"):
            weights = saved[kind]
            assert (weights >= 0).all()
            np.testing.assert_allclose(weights.sum(axis=-1), 1.0, atol=1e-5)
        decoder = saved["decoder_self"]
        above = np.triu(np.ones((n_tgt, n_tgt), dtype=bool), k=1)
        assert (decoder[..., above] == 0).all(), "a position attended to a later one"
        assert (decoder[..., ~above] > 0).any()


@pytest.mark.parametrize("filters, expected", [
    (["--layer", "1"], {f"{k}_L1_{s}.png" for k in KINDS for s in ("H0", "H1", "avg")}),
    (["--head", "0"], {f"{k}_L{layer}_H0.png" for k in KINDS for layer in range(N_LAYERS)}),
    (["--layer", "0", "--head", "1"], {f"{k}_L0_H1.png" for k in KINDS}),
])
def test_layer_and_head_filters(checkpoint: Path, tmp_path: Path, filters: list[str],
                                expected: set[str]) -> None:
    out = tmp_path / "pictures"
    assert run_attention(["--checkpoint", str(checkpoint), "--src", SRC, "--tgt", TGT,
                          "--out", str(out), *filters]) == 0
    assert {p.name for p in out.glob("*.png")} == expected
    assert (out / "attention.npz").is_file()


@pytest.mark.parametrize("search, beam_size", [([], 4), (["--beam-size", "1"], 1)])
def test_the_translation_is_the_default_target(checkpoint: Path, tmp_path: Path,
                                               search: list[str], beam_size: int) -> None:
    """Without --tgt the target is what `translate` prints with the same search options."""
    assert run_attention(["--checkpoint", str(checkpoint), "--src", SRC, "--out", str(tmp_path),
                          "--layer", "0", "--head", "0", *search]) == 0
    loaded = load_for_inference(checkpoint)
    src = torch.tensor([loaded.tokenizer.encode([SRC])[0] + [EOS_ID]])
    searched = generate(loaded.model, src, beam_size=beam_size)[0][0].tokens
    with np.load(tmp_path / "attention.npz", allow_pickle=False) as saved:
        assert list(saved["target_tokens"]) == [
            loaded.tokenizer.sp.id_to_piece(i) for i in searched] + ["</s>"]


@pytest.mark.parametrize("argv, message", [
    (["--layer", "2"], "layers 0 to 1"),
    (["--head", "-1"], "heads 0 to 1"),
    (["--src", "  "], "--src is empty"),
    (["--tgt", "Katze " * 60], "at most 40"),
])
def test_bad_arguments_are_user_errors(checkpoint: Path, tmp_path: Path, argv: list[str],
                                       message: str) -> None:
    base = ["--checkpoint", str(checkpoint), "--src", SRC, "--out", str(tmp_path / "x")]
    with pytest.raises(UserError, match=message):
        run_attention(base + argv)
    assert not (tmp_path / "x").exists()


def test_missing_viz_extra_is_a_user_error(checkpoint: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails
    with pytest.raises(UserError, match=r"needs the 'viz' extra.*'transformer-mt\[viz\]'"):
        run_attention(["--checkpoint", str(checkpoint), "--src", SRC, "--out", str(tmp_path)])
