"""The private Lightning API that training/checkpoints.py and training/resume.py rely on.

Lightning offers no public way to save last.ckpt at a step of our choosing, or to tell in
`on_train_batch_end` whether the batch closes its epoch, so `Checkpoint` and
`ResumableTraining` use these private members:

- `ModelCheckpoint._monitor_candidates(trainer)`: the values a checkpoint name is formatted with;
- `ModelCheckpoint._should_skip_saving_checkpoint(trainer)`: True when nothing may be saved now,
  in particular when a checkpoint was already saved at this global step;
- `ModelCheckpoint._save_last_checkpoint(trainer, monitor_candidates)`: writes last.ckpt;
- `trainer.fit_loop.epoch_loop.batch_progress.is_last_batch`: True in `on_train_batch_end` of
  an epoch's last batch.

Each test below pins what we use of one of them, on a plain Lightning model (no data module,
seconds), and says in its message what to update when a Lightning upgrade changes it.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from transformer_mt.training.checkpointing import Checkpoint

UPDATE = (f"Lightning {L.__version__} changed private API that training/checkpoints.py or "
          "training/resume.py uses; update them")


class _Regression(L.LightningModule):
    """The smallest model Lightning trains: one linear layer on fixed random data."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(0)
        data = TensorDataset(torch.randn(8, 4, generator=generator),
                             torch.randn(8, 1, generator=generator))
        return DataLoader(data, batch_size=2)  # 4 batches per epoch


def _fit(tmp_path: Path, callbacks: list[Callback], **trainer_options: Any) -> L.Trainer:
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path,
                        callbacks=callbacks, **trainer_options)
    trainer.fit(_Regression())
    return trainer


@pytest.mark.parametrize(("name", "parameters"), [
    ("_monitor_candidates", ["self", "trainer"]),
    ("_should_skip_saving_checkpoint", ["self", "trainer"]),
    ("_save_last_checkpoint", ["self", "trainer", "monitor_candidates"]),
])
def test_model_checkpoint_private_methods_exist(name: str, parameters: list[str]) -> None:
    method = getattr(ModelCheckpoint, name, None)
    assert callable(method), f"{UPDATE}: ModelCheckpoint.{name} is gone"
    assert list(inspect.signature(method).parameters) == parameters, \
        f"{UPDATE}: ModelCheckpoint.{name}{inspect.signature(method)}"


class _Probe(ModelCheckpoint):
    """Records, after each training batch, what the private members answer."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.seen: list[dict[str, Any]] = []

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        super().on_train_batch_end(trainer, *args, **kwargs)  # saves every 2 steps
        candidates = self._monitor_candidates(trainer)
        self.seen.append({
            "step": trainer.global_step,
            "candidates": {k: int(v) for k, v in candidates.items() if k in ("step", "epoch")},
            "skip": self._should_skip_saving_checkpoint(trainer),
            "last_batch": trainer.fit_loop.epoch_loop.batch_progress.is_last_batch,
        })
        if trainer.global_step == 3:
            self._save_last_checkpoint(trainer, candidates)


def test_model_checkpoint_private_methods_behave(tmp_path: Path) -> None:
    probe = _Probe(dirpath=tmp_path / "ckpt", every_n_train_steps=2, save_top_k=-1,
                   save_last=True)
    _fit(tmp_path, [probe], max_steps=3)
    steps = [entry["step"] for entry in probe.seen]
    assert steps == [1, 2, 3]
    assert [entry["candidates"] for entry in probe.seen] == [
        {"step": 1, "epoch": 0}, {"step": 2, "epoch": 0}, {"step": 3, "epoch": 0}], \
        f"{UPDATE}: _monitor_candidates no longer holds step and epoch"
    # True right after the periodic save of step 2 (so last.ckpt is not written twice), else
    # False: a last.ckpt at an unsaved step is allowed
    assert [entry["skip"] for entry in probe.seen] == [False, True, False], \
        f"{UPDATE}: _should_skip_saving_checkpoint no longer tells a step already saved"
    last = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 3, f"{UPDATE}: _save_last_checkpoint did not write last.ckpt"


@pytest.mark.parametrize("limit", [None, 3])
def test_is_last_batch_marks_the_end_of_each_epoch(tmp_path: Path, limit: int | None) -> None:
    """4 batches per epoch (or 3 with limit_train_batches), 2 epochs."""
    probe = _Probe(dirpath=tmp_path / "ckpt", every_n_train_steps=2, save_last=True)
    _fit(tmp_path, [probe], max_epochs=2, limit_train_batches=limit)
    per_epoch = limit or 4
    expected = [(i + 1) % per_epoch == 0 for i in range(2 * per_epoch)]
    assert [entry["last_batch"] for entry in probe.seen] == expected, \
        f"{UPDATE}: fit_loop.epoch_loop.batch_progress.is_last_batch"


def test_checkpoint_saves_last_at_the_final_step(tmp_path: Path) -> None:
    """What the three ModelCheckpoint members give together: `Checkpoint` writes last.ckpt at
    a final step between periodic ones (max_steps 5, every 2 steps), where ModelCheckpoint
    alone leaves it at step 4."""
    for callback_class, final in ((ModelCheckpoint, 4), (Checkpoint, 5)):
        folder = tmp_path / callback_class.__name__
        callback = callback_class(dirpath=folder, every_n_train_steps=2, save_top_k=-1,
                                  save_last=True)
        _fit(folder, [callback], max_steps=5)
        assert torch.load(folder / "last.ckpt", weights_only=True)["global_step"] == final
