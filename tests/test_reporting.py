"""What `fit` reports while it runs (training.reporting) and the curves it leaves
(`transformer-mt plot`, training.curves).

`fit` runs as a subprocess, as a user or a scheduler runs it: with its output redirected to a
file it writes plain, flushed lines (a step line every `log_every_n_steps` with a plausible
throughput and an ETA, a validation line with BLEU and how it was measured, a checkpoint line
per file) and none of Lightning's noise; in a terminal (a pseudo-terminal here) it draws a
progress bar carrying the same key numbers instead of the step lines."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import lightning as L
import pytest
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.callbacks import timer as timer_module

from tests._tiny_fit import REPO, STEP_CLOCK, recorder_args, tiny_fit_args
from tests.conftest import import_extra
from transformer_mt.commands.main import main
from transformer_mt.training.reporting import duration
from transformer_mt.training.translation_model import bleu_description

STEPS = 6
STEP_LINE = re.compile(
    r"^transformer-mt: step (\d+)/(\d+) \| epoch (\d+) \| loss ([\d.]+) \| nll ([\d.]+) \| "
    r"ppl ([\d.]+) \| lr ([\d.e+-]+) \| gnorm ([\d.]+) \| ([\d,]+) tgt tok/s \| "
    r"([\d,.]+) sent/s \| peak RSS ([\d.]+) GiB \| elapsed ([\d:]+) \| ETA ([\d:]+)$")
VALIDATION_LINE = re.compile(
    r"^transformer-mt: validation at step (\d+) \| loss [\d.]+ \| nll [\d.]+ \| ppl [\d.]+ \| "
    r"BLEU ([\d.]+) \(greedy, (the first 8|\d+ of the first 8) of 200 sentences\) \| "
    r"(best BLEU so far|best BLEU [\d.]+ at step \d+)$")
NOISE = ("Total FLOPs", "Tip:", "LeafSpec", "litlogger", "it/s]")

pytestmark = pytest.mark.usefixtures("nondeterministic_afterwards")


def fit_command(run: Path, spm: Path, *extra: str) -> list[str]:
    """A 6-step toy fit, logging every 2 steps, one checkpoint at step 3 (plus last.ckpt), the
    progress bar and model summary left at their defaults (tiny_fit_args turns both off)."""
    return [sys.executable, "-m", "transformer_mt.commands.main", *tiny_fit_args(
        run, spm, "--trainer.max_steps", str(STEPS), "--trainer.log_every_n_steps", "2",
        "--checkpoint.every_n_train_steps", "3", "--model.val_bleu_sentences", "8",
        "--trainer.enable_progress_bar", "true", "--trainer.enable_model_summary", "true",
        *extra)]


def environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}


class LogProbe(Callback):
    """At step 4, copies what the log file holds by then: the step-2 line must be there
    already (flushed when written, not in a burst at the end)."""

    def __init__(self, log_file: str, copy: str) -> None:
        self.log_file, self.copy = log_file, copy  # not `log`: Lightning sets callback.log

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        if trainer.global_step == 4:
            Path(self.copy).write_text(Path(self.log_file).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def redirected(tmp_path_factory: pytest.TempPathFactory, spm: Path) -> tuple[Path, str]:
    """`fit ... > fit.log 2>&1`: the run folder and the log's text."""
    run = tmp_path_factory.mktemp("redirected")
    log = run / "fit.log"
    probe = [f"--trainer.callbacks+={__name__}.LogProbe", f"--trainer.callbacks.log_file={log}",
             f"--trainer.callbacks.copy={run / 'at_step_4.log'}"]
    with open(log, "w") as handle:
        result = subprocess.run(fit_command(run, spm, "--trainer.val_check_interval", "6",
                                            *probe),
                                cwd=REPO, env=environment(), stdout=handle,
                                stderr=subprocess.STDOUT, timeout=300)
    text = log.read_text(encoding="utf-8")
    assert result.returncode == 0, text[-3000:]
    return run, text


def test_redirected_fit_writes_step_lines_with_throughput_and_eta(
        redirected: tuple[Path, str]) -> None:
    _, text = redirected
    steps = [STEP_LINE.match(line) for line in text.splitlines()
             if line.startswith("transformer-mt: step ")]
    assert all(steps), [line for line in text.splitlines() if "step " in line]
    assert [int(m[1]) for m in steps] == [2, 4, 6]
    assert {int(m[2]) for m in steps} == {STEPS}
    for m in steps:
        loss, nll, ppl = float(m[4]), float(m[5]), float(m[6])
        assert 0 < nll < loss < 20  # label smoothing adds to the NLL
        assert ppl == pytest.approx(2.718281828 ** nll, rel=0.01)
        tokens_per_s = float(m[9].replace(",", ""))
        sentences_per_s = float(m[10].replace(",", ""))
        # a step holds at most 512 padded tokens and runs in milliseconds to seconds here
        assert 20 < tokens_per_s < 1_000_000
        assert 0 < sentences_per_s < tokens_per_s
        assert 0.05 < float(m[11]) < 20  # peak RSS, GiB
    # the learning rate each step used, as the CSV log records it
    from transformer_mt.training.curves import find_metrics, read_metrics

    logged = dict(read_metrics(find_metrics(redirected[0])).lr)
    assert [float(m[7]) for m in steps] == pytest.approx([logged[2], logged[4], logged[6]],
                                                         rel=2e-3)
    # ETA: the remaining steps at the mean time per step so far, so 0 at the end
    assert steps[-1][13] == "0:00"
    seconds = [sum(int(x) * 60**i for i, x in enumerate(reversed(m[13].split(":"))))
               for m in steps]
    assert seconds[0] >= seconds[1] >= seconds[2]


def test_redirected_fit_writes_validation_and_checkpoint_lines(
        redirected: tuple[Path, str]) -> None:
    run, text = redirected
    validations = [VALIDATION_LINE.match(line) for line in text.splitlines()
                   if line.startswith("transformer-mt: validation")]
    assert len(validations) == 1 and validations[0], text[-2000:]
    assert validations[0][1] == "6" and validations[0][4] == "best BLEU so far"
    checkpoints = re.findall(r"^transformer-mt: checkpoint at step (\d+): (.+)$", text, re.M)
    folder = run / "checkpoints"
    # last.ckpt is written with every periodic checkpoint (save_last)
    assert checkpoints == [("3", str(folder / "step000003.ckpt")),
                           ("3", str(folder / "last.ckpt")),
                           ("6", str(folder / "step000006.ckpt")),
                           ("6", str(folder / "last.ckpt"))]
    assert all(Path(path).is_file() for _, path in checkpoints)


def test_redirected_fit_is_flushed_line_by_line_and_quiet(
        redirected: tuple[Path, str]) -> None:
    run, text = redirected
    at_step_4 = (run / "at_step_4.log").read_text(encoding="utf-8")
    assert "transformer-mt: step 2/6 |" in at_step_4  # there before the run went on
    assert "\r" not in text  # no progress bar in a file
    for noise in NOISE:
        assert noise not in text
    assert re.search(r"^transformer-mt: model: d_model 32, 1\+1 layers, 2 heads, d_ff 64, "
                     r"vocabulary 1,000; [\d.]+M parameters", text, re.M)


def read_pty(command: list[str], timeout: float = 300) -> tuple[int, str]:
    """Run `command` with stdout and stderr on a pseudo-terminal of 200 columns."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    process = subprocess.Popen(command, cwd=REPO, env=environment(), stdin=subprocess.DEVNULL,
                               stdout=slave, stderr=slave)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        if select.select([master], [], [], 1.0)[0]:
            try:
                data = os.read(master, 1 << 16)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif process.poll() is not None:
            break
    os.close(master)
    return process.wait(timeout=30), b"".join(chunks).decode("utf-8", "replace")


def test_terminal_fit_shows_the_key_numbers_on_a_progress_bar(tmp_path: Path,
                                                               spm: Path) -> None:
    status, text = read_pty(fit_command(tmp_path, spm, "--trainer.val_check_interval", "3"))
    assert status == 0, text[-3000:]
    assert "transformer-mt: step " not in text  # the bar replaces the step lines
    bar = text.split("\r")[-4:]  # the last updates of the training bar
    assert any(re.search(r"loss=[\d.]+, ppl=[\d.]+, lr=[\d.e-]+, tok/s=[\d,]+, ETA=[\d:]+, "
                         r"val BLEU=[\d.]+ "
                         r"\(greedy, .*of 200 sentences\)", update) for update in bar), bar
    assert re.search(r"transformer-mt: validation at step 3 \|", text)
    assert "transformer-mt: checkpoint at step 3:" in text


def test_under_max_time_the_eta_is_the_time_left(spm: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture) -> None:
    """In process (pytest captures the output: not a terminal), with the Timer on a clock that
    advances one second per step (tests/_tiny_fit.py), so 8 s of max_time end the run at step
    8 and the time left is known exactly at each line."""
    monkeypatch.setattr(timer_module, "time", STEP_CLOCK)
    assert main(tiny_fit_args(tmp_path, spm, "--trainer.max_time", "00:00:00:08",
                              "--trainer.max_steps", "100000", "--trainer.log_every_n_steps", "2",
                              *recorder_args(tmp_path / "steps", step_clock=True))) == 0
    lines = re.findall(r"^transformer-mt: step (\d+) \|.*\| ETA ([\d:]+) \(max_time\)$",
                       capsys.readouterr().err, re.M)
    assert lines == [("2", "0:06"), ("4", "0:04"), ("6", "0:02"), ("8", "0:00")]


def test_duration_reads_like_a_clock() -> None:
    assert [duration(s) for s in (0, 59.6, 61, 3599, 3600, 90061)] == \
        ["0:00", "1:00", "1:01", "59:59", "1:00:00", "25:01:01"]


def test_bleu_description_says_search_and_sentences() -> None:
    assert bleu_description(1, 0.6, 500, 500, 1014) == \
        "greedy, the first 500 of 1,014 sentences"
    assert bleu_description(4, 0.6, 5000, 1014, 1014) == \
        "beam 4, length penalty 0.6, all 1,014 sentences"
    assert bleu_description(1, 0.6, 500, 37, 1014) == \
        "greedy, 37 of the first 500 of 1,014 sentences"


# ---------------------------------------------------------------------------- plot
def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


def test_plot_writes_one_png_of_the_run(redirected: tuple[Path, str],
                                        capsys: pytest.CaptureFixture) -> None:
    import_extra("matplotlib", "viz")
    from transformer_mt.training.curves import SIZE_INCHES, draw, find_metrics, read_metrics

    run, _ = redirected
    assert main(["plot", str(run)]) == 0
    picture = run / "curves.png"
    assert f"wrote {picture}" in capsys.readouterr().err
    assert png_size(picture) == (1500, 420) == tuple(int(x * 100) for x in SIZE_INCHES)
    curves = read_metrics(find_metrics(run))
    # the CSV log's steps, counted as optimizer steps done; one validation, at step 6
    assert [s for s, _ in curves.train_loss] == [2, 4, 6]
    assert [s for s, _ in curves.val_bleu] == [6] and [s for s, _ in curves.val_loss] == [6]
    assert len(curves.lr) == 3 and curves.lr[0][1] < curves.lr[-1][1]  # warm-up rises
    assert curves.bleu_search == "greedy, first 8 validation sentences"
    figure = draw(curves, "run")
    assert [(ax.get_xlabel(), ax.get_ylabel()) for ax in figure.axes] == [
        ("step", "loss per target token (label-smoothed)"), ("step", "BLEU"),
        ("step", "learning rate")]
    assert [len(ax.lines) for ax in figure.axes] == [2, 1, 1]


def test_plot_metrics_file_and_its_errors(redirected: tuple[Path, str], tmp_path: Path,
                                          capsys: pytest.CaptureFixture) -> None:
    import_extra("matplotlib", "viz")
    from transformer_mt.training.curves import find_metrics

    metrics = find_metrics(redirected[0])
    out = tmp_path / "picture.png"
    assert main(["plot", "--metrics", str(metrics), "--out", str(out)]) == 0
    assert png_size(out) == (1500, 420)
    capsys.readouterr()
    for argv, message in ((["plot", str(tmp_path)], "no metrics.csv under it"),
                          (["plot", str(tmp_path / "nowhere")], "no such folder"),
                          (["plot"], "give a run folder or --metrics FILE"),
                          (["plot", "--metrics", str(out)], "not a CSV log of fit")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err


# ---------------------------------------------------------------------------- TensorBoard
def test_tensorboard_logger_records_training_and_validation(tmp_path: Path, spm: Path) -> None:
    import_extra("tensorboard", "viz")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = ('{"class_path": "lightning.pytorch.loggers.TensorBoardLogger", '
              f'"init_args": {{"save_dir": "{tmp_path}", "name": "tb"}}}}')
    result = subprocess.run(
        fit_command(tmp_path, spm, "--trainer.val_check_interval", "6",
                    "--trainer.logger", logger),
        cwd=REPO, env=environment(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    events = EventAccumulator(str(tmp_path / "tb" / "version_0"))
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert {"train/loss", "lr", "val/loss", "val/bleu", "train/grad_norm"} <= set(scalars)
    assert [e.step for e in events.Scalars("train/loss")] == [1, 3, 5]
