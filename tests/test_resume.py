"""Interrupted training resumes exactly; same seed, same weights; checkpoints survive crashes.

Run A trains 12 steps uninterrupted. Other runs are stopped by SIGTERM or SIGINT (sent to this
process from a callback, as a scheduler or Ctrl+C would) and resumed with `--ckpt_path`; on CPU
in deterministic mode their per-step losses, batches and final weights must equal A's exactly.
Epochs are cut to 5 batches (`limit_train_batches`) and validation runs every 4 steps, so the
runs cross epoch boundaries and validations: the data order (`ResumableLoader`) and the random
generators (`ResumableTraining`, dropout) must both come back right.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import timer as timer_module

from tests._tiny_fit import STEP_CLOCK, read_records, recorder_args, tiny_fit_args
from transformer_mt.commands.main import main
from transformer_mt.training.checkpointing import AtomicCheckpointIO

STEPS = ["--trainer.max_steps", "12", "--trainer.limit_train_batches", "5",
         "--trainer.val_check_interval", "4", "--checkpoint.every_n_train_steps", "4",
         "--trainer.log_every_n_steps", "1"]


pytestmark = pytest.mark.usefixtures("nondeterministic_afterwards")


@pytest.fixture(scope="module")
def run_a(tmp_path_factory: pytest.TempPathFactory, spm: Path) -> Path:
    run = tmp_path_factory.mktemp("run_a")
    assert main(tiny_fit_args(run, spm, *STEPS, *recorder_args(run / "steps"))) == 0
    return run


def fit(run: Path, spm: Path, *extra: str, **recorder) -> int:
    return main(tiny_fit_args(run, spm, *STEPS, *recorder_args(run / "steps", **recorder),
                              *extra))


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize(("signal_name", "at_step", "resume_with"), [
    ("SIGTERM", 7, "last"),  # mid-epoch (epoch 1, batch 2), resumed via --ckpt_path last
    ("SIGINT", 5, "path"),  # on the last batch of epoch 0, resumed via the file's path
])
def test_interrupted_fit_resumes_with_identical_losses(
    run_a: Path, spm: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
    signal_name: str, at_step: int, resume_with: str,
) -> None:
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    assert fit(tmp_path, spm, signal_at_step=at_step, signal_name=signal_name) \
        == 128 + getattr(signal, signal_name)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers
    saved = tmp_path / "checkpoints" / "interrupted.ckpt"
    err = capsys.readouterr().err
    assert f"interrupted by {signal_name} at step {at_step}; saved {saved}" in err
    assert "Traceback" not in err
    assert torch.load(saved, weights_only=True)["global_step"] == at_step

    ckpt = "last" if resume_with == "last" else str(saved)
    assert fit(tmp_path, spm, "--ckpt_path", ckpt) == 0
    expected = read_records(run_a / "steps")
    resumed = read_records(tmp_path / "steps")
    assert [r["step"] for r in expected] == list(range(1, 13))
    assert [r["step"] for r in resumed] == list(range(1, 13))  # each step trained once
    assert [r["index"] for r in resumed] == [r["index"] for r in expected]
    assert [r["loss"] for r in resumed] == [r["loss"] for r in expected]
    assert_same_weights(tmp_path / "checkpoints" / "last.ckpt",
                        run_a / "checkpoints" / "last.ckpt")


def test_resume_from_a_periodic_checkpoint_is_exact(run_a: Path, spm: Path,
                                                    tmp_path: Path) -> None:
    """step000004.ckpt was written by ModelCheckpoint before step 4's validation ran."""
    assert fit(tmp_path, spm, "--ckpt_path",
               str(run_a / "checkpoints" / "step000004.ckpt")) == 0
    expected = read_records(run_a / "steps")[4:]
    assert read_records(tmp_path / "steps") == expected
    assert_same_weights(tmp_path / "checkpoints" / "last.ckpt",
                        run_a / "checkpoints" / "last.ckpt")


def test_same_seed_and_config_give_the_same_weights(run_a: Path, spm: Path,
                                                    tmp_path: Path) -> None:
    assert fit(tmp_path, spm) == 0
    assert_same_weights(tmp_path / "checkpoints" / "last.ckpt",
                        run_a / "checkpoints" / "last.ckpt")
    assert read_records(tmp_path / "steps") == read_records(run_a / "steps")


def test_failed_checkpoint_write_keeps_the_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    io = AtomicCheckpointIO()
    target = tmp_path / "last.ckpt"
    io.save_checkpoint({"global_step": 1, "state_dict": {"w": torch.ones(3)}}, target)
    before = target.read_bytes()

    def half_then_crash(obj: object, handle) -> None:
        handle.write(b"PK\x03\x04 partial checkpoint bytes")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", half_then_crash)
    with pytest.raises(OSError, match="No space left"):
        io.save_checkpoint({"global_step": 2, "state_dict": {"w": torch.zeros(3)}}, target)
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["last.ckpt"]  # no temporary file left behind
    monkeypatch.undo()
    assert torch.load(target, weights_only=True)["global_step"] == 1


def test_run_ending_between_checkpoint_steps_saves_last_at_its_final_step(
    run_a: Path, spm: Path, tmp_path: Path,
) -> None:
    """max_steps 7 with a checkpoint every 4 steps (max_time ends runs likewise): last.ckpt
    must hold step 7, not step 4, and continuing from it must train as run_a did."""
    assert fit(tmp_path, spm, "--trainer.max_steps", "7") == 0
    folder = tmp_path / "checkpoints"
    assert torch.load(folder / "last.ckpt", weights_only=True)["global_step"] == 7
    assert torch.load(folder / "step000004.ckpt", weights_only=True)["global_step"] == 4
    assert fit(tmp_path, spm, "--ckpt_path", "last") == 0
    resumed = read_records(tmp_path / "steps")
    assert [r["step"] for r in resumed] == list(range(1, 13))
    assert [r["loss"] for r in resumed] == [r["loss"] for r in read_records(run_a / "steps")]
    assert_same_weights(folder / "last.ckpt", run_a / "checkpoints" / "last.ckpt")


def test_run_stopped_by_max_time_saves_last_at_its_final_step(
    spm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Timer stops the run mid-epoch at the step where max_time runs out; last.ckpt must
    be that step. The Timer reads a clock that advances one second per step (`StepClock`),
    so 5 seconds end the run at step 5 however fast the machine is. (Lightning itself saves
    last.ckpt at the end only when no periodic checkpoint was written, hence one every 3
    steps here.)"""
    monkeypatch.setattr(timer_module, "time", STEP_CLOCK)
    assert main(tiny_fit_args(tmp_path, spm, *STEPS, "--trainer.max_time", "00:00:00:05",
                              "--trainer.max_steps", "100000",
                              "--trainer.limit_train_batches", "1.0",
                              "--checkpoint.every_n_train_steps", "3",
                              *recorder_args(tmp_path / "steps", step_clock=True))) == 0
    assert [r["step"] for r in read_records(tmp_path / "steps")] == [1, 2, 3, 4, 5]
    folder = tmp_path / "checkpoints"
    assert sorted(p.name for p in folder.glob("*.ckpt")) == ["last.ckpt", "step000003.ckpt"]
    assert torch.load(folder / "last.ckpt", weights_only=True)["global_step"] == 5
