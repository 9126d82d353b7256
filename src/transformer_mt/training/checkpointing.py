"""Checkpoint files of `fit`: written atomically, read safely, and last.ckpt kept up to date.

- `AtomicCheckpointIO` writes through a temporary file and a rename, and reads with
  weights_only=True, turning a bad file into a one-line UserError.
- `Checkpoint` is the ModelCheckpoint of the `checkpoint:` section; it also saves last.ckpt at
  the step where training ends.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from transformer_mt.checkpoint import load_checkpoint_dict
from transformer_mt.textio import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write each checkpoint to a temporary file in the same folder, then rename it.

    Lightning's own writer opens the destination and streams into it, so a crash mid-write
    leaves a truncated `last.ckpt`; a rename is atomic on POSIX file systems. `on_saved(path,
    checkpoint)` is told about each file once it is complete (`fit` reports its path); every
    checkpoint Lightning writes passes here, on rank 0 only.
    """

    def __init__(self, on_saved: Callable[[Path, dict[str, Any]], None] | None = None) -> None:
        super().__init__()
        self.on_saved = on_saved

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None
    ) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, "wb") as handle:
            torch.save(checkpoint, handle)
        if self.on_saved is not None:
            self.on_saved(Path(path), checkpoint)

    def load_checkpoint(
        self, path: _PATH, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        """Load without unpickling arbitrary objects (whatever `--weights_only` says), and turn
        a missing, truncated, corrupt or foreign file into a one-line UserError."""
        if "://" in str(path):  # fsspec URL: Lightning's reader, still weights only
            return super().load_checkpoint(path, map_location, weights_only=True)
        return load_checkpoint_dict(path, map_location)


class Checkpoint(ModelCheckpoint):
    """ModelCheckpoint that also writes last.ckpt at the step where training ends.

    Lightning 2.6 saves last.ckpt with the periodic (every N steps) checkpoints, and at the end
    of training only if it saved none. A run that ends between two of them (`max_time`, or
    `max_steps` / `max_epochs` not on a multiple of N) kept last.ckpt up to N - 1 steps behind
    the trained model: a 30-minute Multi30k run lost its last 467 steps. This runs after the
    Timer has decided to stop (Lightning orders checkpoint callbacks last) and saves at the
    same point of the step as the periodic checkpoints, so resuming from it is exact too
    (tests/test_resume.py).
    """

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        # Private Lightning API (no public way to save last.ckpt now, or to tell an epoch's
        # last batch): tests/test_lightning_internals.py fails loudly if an upgrade changes it.
        last_epoch = (trainer.max_epochs is not None and trainer.max_epochs > 0
                      and trainer.current_epoch + 1 >= trainer.max_epochs
                      and trainer.fit_loop.epoch_loop.batch_progress.is_last_batch)
        ending = (trainer.should_stop or last_epoch
                  or 0 < trainer.max_steps <= trainer.global_step)
        if self.save_last and ending and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
