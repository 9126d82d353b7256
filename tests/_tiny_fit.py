"""Helpers for tests that run `transformer-mt fit` at toy scale (resume, DDP, bad input).

`tiny_fit_args` is the demo config shrunk to seconds: a one-layer d32 model, 512-token
batches, deterministic kernels and a one-batch validation on `small_corpus()` (the first pairs
of each split in data/), with every file under the run's own folder.
`StepRecorder`, passed to `fit` with `recorder_args`, appends one JSON line per
training step to `<path>.rank<R>` (global step, rank, loss, the batch's dataset indices), so
tests can compare what runs trained on, even across processes; with `signal_at_step`, rank 0
sends itself a signal at the end of that step, as a scheduler or Ctrl+C would.
"""

from __future__ import annotations

import atexit
import functools
import json
import lzma
import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

REPO = Path(__file__).resolve().parents[1]

SMALL_SPLITS = {"train": 4000, "valid": 200, "test": 200}  # pairs per split
SMALL_VOCAB = "1000"


@functools.cache
def small_corpus() -> Path:
    """A folder with the first pairs of each demo split (data/*.xz) under the same names,
    written once per test process: the whole corpus would make every toy run slower."""
    folder = Path(tempfile.mkdtemp(prefix="transformer-mt-small-corpus-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    for split, n in SMALL_SPLITS.items():
        for lang in ("en", "de"):
            with lzma.open(REPO / "data" / f"{split}.{lang}.xz", "rt", encoding="utf-8") as f:
                lines = [next(f) for _ in range(n)]
            with lzma.open(folder / f"{split}.{lang}.xz", "wt", encoding="utf-8") as f:
                f.writelines(lines)
    return folder


TINY_MODEL = [
    "--model.d_model", "32", "--model.n_heads", "2", "--model.d_ff", "64",
    "--model.n_encoder_layers", "1", "--model.n_decoder_layers", "1",
    "--data.max_tokens", "512", "--trainer.deterministic", "true",
]


def tiny_fit_args(run: Path, spm_cache: Path, *extra: str) -> list[str]:
    """`fit` options for a toy run writing under `run`; sentencepiece models are cached in
    `spm_cache` (share it between runs: training the vocabulary takes longer than the run)."""
    return [
        "fit",
        "--config", str(REPO / "configs" / "demo.yaml"),
        "--data.data_dir", str(small_corpus()),
        "--data.vocab_size", SMALL_VOCAB,
        "--data.cache_dir", str(spm_cache),
        "--trainer.default_root_dir", str(run),
        "--trainer.logger.init_args.save_dir", str(run),
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.limit_val_batches", "1",
        "--checkpoint.dirpath", str(run / "checkpoints"),
        "--model.val_bleu_sentences", "2",
        *TINY_MODEL,
        *extra,
    ]


def recorder_args(path: Path, signal_at_step: int = 0, signal_name: str = "SIGTERM",
                  step_clock: bool = False) -> list[str]:
    """`--trainer.callbacks` adding a `StepRecorder` (the demo config sets no callbacks), and
    with `step_clock` a `StepClockTick`."""
    callbacks = [{"class_path": f"{__name__}.StepRecorder",
                  "init_args": {"path": str(path), "signal_at_step": signal_at_step,
                                "signal_name": signal_name}}]
    if step_clock:
        callbacks.append({"class_path": f"{__name__}.StepClockTick"})
    return ["--trainer.callbacks", json.dumps(callbacks)]


class StepClock:
    """A stand-in for the `time` module where Lightning's Timer reads it: one second passes
    per training batch (`StepClockTick`), so `max_time` N seconds ends a run after step N on a
    fast or a slow machine alike."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


STEP_CLOCK = StepClock()


class StepClockTick(Callback):
    """Advances `STEP_CLOCK` at the start of every training batch, so that when the Timer
    checks at the end of step N, N seconds have passed since training started."""

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        STEP_CLOCK.now += 1.0


class StepRecorder(Callback):
    def __init__(self, path: str, signal_at_step: int = 0, signal_name: str = "SIGTERM") -> None:
        self.path = path
        self.signal_at_step = signal_at_step
        self.signal_name = signal_name

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        record = {"step": trainer.global_step, "rank": trainer.global_rank,
                  "loss": float(outputs["loss"]), "index": batch["index"].tolist()}
        with open(f"{self.path}.rank{trainer.global_rank}", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        if trainer.global_step == self.signal_at_step and trainer.global_rank == 0:
            os.kill(os.getpid(), getattr(signal, self.signal_name))


def read_records(path: Path, rank: int = 0) -> list[dict[str, Any]]:
    """The records one rank wrote, in step order."""
    with open(f"{path}.rank{rank}", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]
