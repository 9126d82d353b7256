"""`transformer-mt average`: the arithmetic, the run-directory selection and the errors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

from transformer_mt.checkpoint import load_checkpoint_dict, model_state_dict
from transformer_mt.commands.main import main as run_cli
from transformer_mt.config import TransformerConfig
from transformer_mt.data.tokenizer import train_tokenizer
from transformer_mt.inference.loaded_model import load_for_inference
from transformer_mt.model import Transformer

WORDS = ("the cat sat on a mat quick brown fox jumps over lazy dog he read book in two days "
         "men are playing football park der die das Katze sitzt auf Matte Hund").split()

@pytest.fixture(scope="module")
def spm_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real (tiny) sentencepiece model, so the output can be loaded for inference."""
    texts = [" ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(8)) for i in range(200)]
    return train_tokenizer(texts, 300, tmp_path_factory.mktemp("spm")).model_proto


def tiny_config(**overrides: Any) -> dict[str, Any]:
    shape = {"vocab_size": 300, "d_model": 16, "n_heads": 2, "d_ff": 32,
             "n_encoder_layers": 1, "n_decoder_layers": 1}
    return TransformerConfig.preset("tiny", **{**shape, **overrides}).to_dict()


def make_checkpoint(
    path: Path, seed: int, step: int, spm: bytes, config: dict[str, Any] | None = None,
) -> Path:
    """A checkpoint in the layout `transformer-mt fit` writes (Lightning dict + our meta)."""
    torch.manual_seed(seed)
    model = Transformer(TransformerConfig.from_dict(config or tiny_config()))
    state = {f"model.{k}": v for k, v in model.state_dict().items()}  # keeps tied storage
    state["loss.half_buffer"] = torch.randn(3, dtype=torch.float16)
    state["loss.counts"] = torch.tensor([seed, 7])  # integer: not averaged
    checkpoint = {
        "epoch": step // 100, "global_step": step, "pytorch-lightning_version": "2.6.0",
        "state_dict": state,
        "optimizer_states": [{"state": {0: {"exp_avg": torch.ones(2)}}, "param_groups": []}],
        "lr_schedulers": [{"last_epoch": step}],
        "loops": {}, "callbacks": {}, "hyper_parameters": {"seed": seed},
        "transformer_mt": {"model_config": model.config.to_dict(), "sentencepiece": spm,
                           "src_lang": "en", "tgt_lang": "de"},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return path


def expected_mean(*paths: Path) -> dict[str, torch.Tensor]:
    states = [torch.load(p, weights_only=True)["state_dict"] for p in paths]
    return {
        key: (sum(s[key].double() for s in states) / len(states)).to(value.dtype)
        if value.is_floating_point() else value
        for key, value in states[-1].items()
    }


def test_average_of_two_is_the_elementwise_mean(tmp_path, spm_bytes, capsys) -> None:
    a = make_checkpoint(tmp_path / "a.ckpt", seed=1, step=100, spm=spm_bytes)
    b = make_checkpoint(tmp_path / "b.ckpt", seed=2, step=200, spm=spm_bytes)
    out = tmp_path / "avg.ckpt"
    assert run_cli(["average", "--inputs", str(a), str(b), "--output", str(out)]) == 0
    err = capsys.readouterr().err
    assert "averaging 2 checkpoint(s)" in err and "(step 200)" in err
    assert "kept the last's: loss.counts" in err

    result = load_checkpoint_dict(out)
    expected = expected_mean(a, b)
    state = result["state_dict"]
    assert list(state) == list(expected)
    for key, value in expected.items():
        assert state[key].dtype == value.dtype, key
        assert torch.equal(state[key], value), key
    key = "model.encoder_layers.0.ffn.fc1.weight"
    manual = (torch.load(a)["state_dict"][key] + torch.load(b)["state_dict"][key]) / 2
    torch.testing.assert_close(state[key], manual)
    assert torch.equal(state["loss.counts"], torch.tensor([2, 7]))  # the last input's
    assert state["model.embed.weight"].data_ptr() == state["model.tgt_embed.weight"].data_ptr()

    assert result["optimizer_states"] == [] and result["lr_schedulers"] == []
    assert result["global_step"] == 200 and result["hyper_parameters"] == {"seed": 2}
    assert result["transformer_mt"]["averaged_from"] == [str(a), str(b)]
    assert result["transformer_mt"]["src_lang"] == "en"

    loaded = load_for_inference(out)
    for name, value in loaded.model.state_dict().items():
        assert torch.equal(value, model_state_dict(result)[name]), name
    assert loaded.tokenizer.vocab_size == 300


def averaged_from(run: Path, last: int, output: Path) -> list[str]:
    """`average --run-dir RUN --last N`'s choice of inputs, oldest first."""
    assert run_cli(["average", "--run-dir", str(run), "--last", str(last), "--output",
                    str(output)]) == 0
    return load_checkpoint_dict(output)["transformer_mt"]["averaged_from"]


def test_run_dir_picks_highest_global_steps(tmp_path, spm_bytes, capsys) -> None:
    run = tmp_path / "run"
    # Name and mtime order disagree with step order on purpose.
    z = make_checkpoint(run / "z.ckpt", 1, step=50, spm=spm_bytes)
    b = make_checkpoint(run / "b.ckpt", 2, step=300, spm=spm_bytes)
    a = make_checkpoint(run / "sub" / "a.ckpt", 3, step=100, spm=spm_bytes)
    c_new = make_checkpoint(run / "c1.ckpt", 4, step=200, spm=spm_bytes)
    c_old = make_checkpoint(run / "c2.ckpt", 5, step=200, spm=spm_bytes)
    os.utime(c_old, (1_000_000, 1_000_000))
    os.utime(c_new, (2_000_000, 2_000_000))
    (run / "best.ckpt").symlink_to(b)
    (run / "notes.txt").write_text("not a checkpoint")

    # One checkpoint per step: of two files with step 200, the newer (written last).
    first = run / "avg.ckpt"
    assert averaged_from(run, 3, first) == [str(p) for p in (a, c_new, b)]
    result = load_checkpoint_dict(first)
    expected = expected_mean(a, c_new, b)
    assert all(torch.equal(result["state_dict"][k], v) for k, v in expected.items())

    # The earlier average inside the run directory is not picked up again.
    assert averaged_from(run, 4, tmp_path / "avg4.ckpt") == [str(p) for p in (z, a, c_new, b)]
    capsys.readouterr()


def test_run_dir_takes_the_end_of_a_run_from_last_ckpt(tmp_path, spm_bytes, capsys) -> None:
    """A run stopped by max_time between checkpoint steps (the 30-minute Multi30k recipe:
    periodic checkpoints at 500 and 1000, the end at 1464) has its final weights only in
    last.ckpt: `--last 3` takes 500, 1000 and the end, `--last 2` 1000 and the end."""
    run = tmp_path / "checkpoints"
    s500 = make_checkpoint(run / "step000500.ckpt", 1, step=500, spm=spm_bytes)
    s1000 = make_checkpoint(run / "step001000.ckpt", 2, step=1000, spm=spm_bytes)
    last = make_checkpoint(run / "last.ckpt", 3, step=1464, spm=spm_bytes)
    assert averaged_from(run, 3, tmp_path / "avg3.ckpt") == [str(s500), str(s1000), str(last)]
    assert averaged_from(run, 2, tmp_path / "avg2.ckpt") == [str(s1000), str(last)]
    # an interrupted run's end is taken the same way
    interrupted = make_checkpoint(run / "interrupted.ckpt", 4, step=1700, spm=spm_bytes)
    assert averaged_from(run, 2, tmp_path / "avg.ckpt") == [str(last), str(interrupted)]
    capsys.readouterr()


def test_run_dir_counts_each_step_once(tmp_path, spm_bytes, capsys) -> None:
    """last.ckpt and interrupted.ckpt saved at the step of a periodic checkpoint hold that
    step's weights again: the step is averaged once, from the periodic file (which keeps its
    name; last.ckpt is overwritten when training goes on)."""
    run = tmp_path / "checkpoints"
    steps = [make_checkpoint(run / f"step{k:06d}.ckpt", k, step=k * 100, spm=spm_bytes)
             for k in (4, 5, 6)]
    make_checkpoint(run / "last.ckpt", 6, step=600, spm=spm_bytes)
    make_checkpoint(run / "interrupted.ckpt", 6, step=600, spm=spm_bytes)
    assert averaged_from(run, 3, tmp_path / "avg.ckpt") == [str(p) for p in steps]
    assert run_cli(["average", "--run-dir", str(run), "--last", "4", "--output",
                    str(tmp_path / "avg4.ckpt")]) == 2
    assert "found 3 distinct global_step(s)" in capsys.readouterr().err


def test_fewer_checkpoints_than_asked(tmp_path, spm_bytes, capsys) -> None:
    run = tmp_path / "run"
    make_checkpoint(run / "a.ckpt", 1, step=100, spm=spm_bytes)
    make_checkpoint(run / "b.ckpt", 2, step=200, spm=spm_bytes)
    make_checkpoint(run / "last.ckpt", 2, step=200, spm=spm_bytes)
    out = tmp_path / "avg.ckpt"
    assert run_cli(["average", "--run-dir", str(run), "--last", "5", "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("transformer-mt: error: ") and "found 2 distinct global_step(s)" in err
    assert "--last 5" in err
    assert not out.exists()


def test_mismatched_shapes_or_config_name_the_file(tmp_path, spm_bytes, capsys) -> None:
    a = make_checkpoint(tmp_path / "a.ckpt", 1, step=100, spm=spm_bytes)
    wide = make_checkpoint(tmp_path / "wide.ckpt", 2, step=200, spm=spm_bytes,
                           config=tiny_config(d_ff=64))
    out = tmp_path / "avg.ckpt"
    assert run_cli(["average", "--inputs", str(a), str(wide), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{wide}: model config differs" in err and "d_ff: 64 vs 32" in err

    # Same config recorded, but a tensor of another shape.
    odd = make_checkpoint(tmp_path / "odd.ckpt", 3, step=300, spm=spm_bytes)
    checkpoint = torch.load(odd, weights_only=True)
    checkpoint["state_dict"]["loss.half_buffer"] = torch.zeros(4, dtype=torch.float16)
    torch.save(checkpoint, odd)
    assert run_cli(["average", "--inputs", str(a), str(odd), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{odd}: loss.half_buffer is (4,)" in err and "(3,)" in err

    other_vocab = make_checkpoint(tmp_path / "vocab.ckpt", 4, step=400, spm=spm_bytes + b"x")
    assert run_cli(["average", "--inputs", str(a), str(other_vocab), "--output",
                    str(out)]) == 2
    assert "sentencepiece vocabulary differs" in capsys.readouterr().err
    assert not out.exists()


def test_bad_inputs_are_user_errors(tmp_path, spm_bytes, capsys) -> None:
    a = make_checkpoint(tmp_path / "a.ckpt", 1, step=100, spm=spm_bytes)
    out = tmp_path / "avg.ckpt"
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(b"PK\x03\x04 truncated")
    cases = [
        (["--inputs", str(a), str(foreign)], "not a transformer-mt checkpoint"),
        (["--inputs", str(a), str(corrupt)], "not a readable checkpoint"),
        (["--inputs", str(a), str(tmp_path / "missing.ckpt")], "no such file"),
        (["--inputs", str(a), str(a)], "listed twice"),
        (["--inputs", str(a), "--last", "2"], "--last only applies to --run-dir"),
        (["--run-dir", str(tmp_path)], "--run-dir needs --last"),
        (["--run-dir", str(tmp_path / "nope"), "--last", "1"], "no such directory"),
    ]
    for argv, message in cases:
        assert run_cli(["average", *argv, "--output", str(out)]) == 2, argv
        err = capsys.readouterr().err
        assert message in err, (argv, err)
        assert err.strip().splitlines()[-1].startswith("transformer-mt: error: "), err
    assert run_cli(["average", "--inputs", str(a), "--output", str(a)]) == 2
    assert "is also the --output" in capsys.readouterr().err
    assert not out.exists()
    # A run directory holding a foreign .ckpt names it rather than skipping it silently.
    assert run_cli(["average", "--run-dir", str(tmp_path), "--last", "1", "--output",
                    str(tmp_path / "x" / "avg.ckpt")]) == 2
    assert "corrupt.ckpt" in capsys.readouterr().err
