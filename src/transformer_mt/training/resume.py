"""Exact resumption of an interrupted `fit`: SIGINT/SIGTERM save a checkpoint at a step
boundary, and every checkpoint holds the random generator states that training restores."""

from __future__ import annotations

import random
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn

from transformer_mt.training import INTERRUPTED_NAME


class TrainingInterrupted(Exception):
    """`fit` stopped on SIGINT/SIGTERM after saving a resumable checkpoint (every rank raises
    it; only rank 0, `report`, tells the user)."""

    def __init__(self, signum: int, step: int, path: Path, report: bool) -> None:
        self.signum = signum
        self.report = report
        super().__init__(
            f"interrupted by {signal.Signals(signum).name} at step {step}; saved {path}; "
            f"resume with: transformer-mt fit <same options> --ckpt_path {path} "
            "(or --ckpt_path last)"
        )


def _rng_states() -> dict[str, Any]:
    """This process's random generator states, as tensors and plain data (weights_only-safe)."""
    numpy_state = np.random.get_state(legacy=False)
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
                  "pos": numpy_state["state"]["pos"], "has_gauss": numpy_state["has_gauss"],
                  "gauss": numpy_state["gauss"]},
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        # this rank's device only: get_rng_state_all would open a context on every GPU
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    numpy_state = states["numpy"]
    np.random.set_state({
        "bit_generator": "MT19937",
        "state": {"key": numpy_state["key"].numpy().astype(np.uint32), "pos": numpy_state["pos"]},
        "has_gauss": numpy_state["has_gauss"], "gauss": numpy_state["gauss"],
    })
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"])


class ResumableTraining(Callback):
    """What makes an interrupted `fit` resume exactly where it stopped.

    Signals: SIGINT (Ctrl+C) and SIGTERM (schedulers, `kill`) during training only set a flag.
    At the end of the current optimizer step (or of a running validation) all ranks agree to
    stop, `interrupted.ckpt` is written to the checkpoint folder and the process exits with
    status 128 + signal number (130 for SIGINT, 143 for SIGTERM). A second signal aborts at
    once, unsaved. Lightning's own handling does not do this: SIGINT raises KeyboardInterrupt
    wherever it lands (even mid optimizer step) and saves nothing; SIGTERM exits unsaved.

    Random numbers: Lightning checkpoints do not hold the generators, so after a resume the
    dropout masks would differ from those of the uninterrupted run. The torch (CPU and CUDA),
    numpy and Python generator states of every rank go into each checkpoint and are restored
    when training restarts. Nothing draws from these generators between a save and the next
    training step (the data loaders have their own), so the restored state is the one the
    uninterrupted run continued with. The batch order is restored by `ResumableLoader`.
    """

    def __init__(self) -> None:
        self._signum: int | None = None
        self._previous_handlers: dict[int, Any] = {}
        self._rng_to_restore: dict[str, Any] | None = None

    # ------------------------------------------------------------------ signals
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._rng_to_restore is not None:
            _set_rng_states(self._rng_to_restore)
            self._rng_to_restore = None
        self._signum = None
        if threading.current_thread() is threading.main_thread():  # signal.signal's rule
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous_handlers[signum] = signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._signum is not None:
            raise KeyboardInterrupt
        self._signum = signum
        print(f"transformer-mt: {signal.Signals(signum).name} received: saving a checkpoint "
              "after this step, then stopping (signal again to abort unsaved)", file=sys.stderr)

    def _restore_handlers(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers = {}

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        # is_last_batch is private Lightning API, pinned by tests/test_lightning_internals.py
        accumulating = (batch_idx + 1) % trainer.accumulate_grad_batches != 0 \
            and not trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
        if not accumulating:  # a checkpoint cannot hold half-accumulated gradients
            self._stop_if_signalled(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            self._stop_if_signalled(trainer)

    def _stop_if_signalled(self, trainer: L.Trainer) -> None:
        """Save and raise TrainingInterrupted if any rank got a signal (all ranks call this at
        the same points, so they stop at the same step)."""
        signum = self._signum or 0
        if trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
            flag = torch.tensor([signum], device=trainer.strategy.root_device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            signum = int(flag.item())
        if not signum:
            return
        callback = trainer.checkpoint_callback
        folder = Path(callback.dirpath if callback and callback.dirpath
                      else trainer.default_root_dir)
        path = folder / INTERRUPTED_NAME
        trainer.save_checkpoint(path, weights_only=False)
        raise TrainingInterrupted(signum, trainer.global_step, path, trainer.is_global_zero)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_handlers()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule,
                     exception: BaseException) -> None:
        self._restore_handlers()

    # ------------------------------------------------------------------ random generators
    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        """Every rank's generator states (all ranks build the checkpoint; rank 0 writes it)."""
        states: list[Any] = [_rng_states()]
        if trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
            states = [None] * trainer.world_size
            dist.all_gather_object(states, _rng_states())
        checkpoint["rng_states"] = states

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        """Keep this rank's saved states for `on_train_start`: sanity-check validation and
        loader setup come between loading and training."""
        states = checkpoint.get("rng_states")
        if states:
            self._rng_to_restore = states[trainer.global_rank % len(states)]
