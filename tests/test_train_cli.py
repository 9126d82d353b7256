"""`transformer-mt fit / validate / test / predict` through LightningCLI, in process."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from tests._tiny_fit import SMALL_VOCAB, small_corpus
from tests.conftest import REPO
from transformer_mt.cli import main


def demo_args(run: Path, *extra: str) -> list[str]:
    """The demo config, shrunk to seconds: few steps, a small validation, files under `run`."""
    return [
        "--config", str(REPO / "configs" / "demo.yaml"),
        "--data.data_dir", str(small_corpus()),
        "--data.vocab_size", SMALL_VOCAB,
        "--data.spm_cache_dir", str(run / "spm"),
        "--trainer.default_root_dir", str(run),
        "--trainer.logger.init_args.save_dir", str(run),
        "--trainer.enable_progress_bar", "false",
        "--trainer.limit_val_batches", "2",
        "--checkpoint.dirpath", str(run / "checkpoints"),
        "--model.val_bleu_sentences", "8",
        *extra,
    ]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("fit")
    argv = ["fit", *demo_args(run, "--trainer.max_steps", "40",
                             "--trainer.val_check_interval", "20",
                             "--checkpoint.every_n_train_steps", "20")]
    assert main(argv) == 0
    return run


def read_metrics(run: Path) -> list[dict[str, str]]:
    files = sorted(run.glob("logs/version_*/metrics.csv"))
    with open(files[-1], newline="") as handle:
        return list(csv.DictReader(handle))


def test_fit_writes_checkpoints_and_validation_loss_falls(trained: Path) -> None:
    checkpoints = trained / "checkpoints"
    assert (checkpoints / "last.ckpt").is_file()
    assert sorted(p.name for p in checkpoints.glob("step*.ckpt")) == [
        "step000020.ckpt", "step000040.ckpt"]
    val_loss = [float(r["val/loss"]) for r in read_metrics(trained) if r.get("val/loss")]
    assert len(val_loss) == 2 and val_loss[1] < val_loss[0]
    checkpoint = torch.load(checkpoints / "last.ckpt", weights_only=True)
    meta = checkpoint["transformer_mt"]
    assert (meta["src_lang"], meta["tgt_lang"]) == ("en", "de")
    assert meta["model_config"]["d_model"] == 128
    assert meta["model_config"]["vocab_size"] == int(SMALL_VOCAB)
    assert isinstance(meta["sentencepiece"], bytes)


def test_validate_and_test_report_metrics(trained: Path, capsys: pytest.CaptureFixture) -> None:
    ckpt = str(trained / "checkpoints" / "last.ckpt")
    assert main(["validate", *demo_args(trained, "--ckpt_path", ckpt)]) == 0
    out = capsys.readouterr().out
    for metric in ("val/loss", "val/ppl", "val/bleu"):
        assert metric in out
    assert main(["test", *demo_args(trained, "--ckpt_path", ckpt,
                                    "--trainer.limit_test_batches", "1")]) == 0
    assert "test/bleu" in capsys.readouterr().out


def test_ckpt_path_last_resolves_or_fails_loudly(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["validate", *demo_args(trained, "--ckpt_path", "last")]) == 0
    assert "val/loss" in capsys.readouterr().out
    empty = tmp_path / "empty_run"
    assert main(["validate", *demo_args(empty, "--ckpt_path", "last")]) == 2
    err = capsys.readouterr().err
    assert "--ckpt_path last: no last.ckpt in" in err and str(empty) in err


def test_predict_writes_one_line_per_input(trained: Path, tmp_path: Path) -> None:
    source = tmp_path / "source.en"
    source.write_text("The dog sleeps.\n\nA woman reads a book in the garden.\n   \nHello\n")
    output = tmp_path / "out.de"
    argv = ["predict", *demo_args(trained, "--ckpt_path", str(trained / "checkpoints/last.ckpt"),
                                  "--data.predict", str(source),
                                  "--data.predict_output", str(output))]
    assert main(argv) == 0
    lines = output.read_text(encoding="utf-8").split("\n")
    assert len(lines) == 6 and lines[-1] == ""  # 5 lines, each ending in a newline
    assert lines[1] == "" and lines[3] == ""  # empty and blank input lines stay empty
    # predict runs the one implementation of translation, with its own beam and penalty
    from transformer_mt.translator import Translator

    translator = Translator.from_checkpoint(trained / "checkpoints/last.ckpt", device="cpu")
    sources = source.read_text(encoding="utf-8").split("\n")[:-1]
    assert lines[:-1] == translator.translate(sources, beam_size=4, length_penalty=0.6)


def test_unknown_config_key_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *demo_args(tmp_path, "--model.no_such_option", "3")])
    assert exit_info.value.code == 2
    assert "no_such_option" in capsys.readouterr().err
