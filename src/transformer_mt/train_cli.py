"""LightningCLI for fit / validate / test / predict, with the project's defaults and fixes.

- `data.vocab_size` is linked into `model.vocab_size`, and the language pair likewise, so a
  config never states them twice.
- A `checkpoint:` section configures the ModelCheckpoint (save_last=True by default).
- `--ckpt_path last` is resolved here to the run's last.ckpt: Lightning, in a new process,
  finds nothing and silently starts from scratch; we fail loudly instead.
- Checkpoints are written atomically (temp file + rename).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

# Lightning 2.6 itself calls jsonargparse APIs deprecated in 4.49; the warnings are not the
# user's to act on.
os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.plugins.io import TorchCheckpointIO

from transformer_mt.data.datamodule import TranslationDataModule
from transformer_mt.errors import UserError
from transformer_mt.lit import TranslationModel
from transformer_mt.textio import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write each checkpoint to a temporary file in the same folder, then rename it.

    Lightning's own writer opens the destination and streams into it, so a crash mid-write
    leaves a truncated `last.ckpt`; a rename is atomic on POSIX file systems.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None
    ) -> None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class TransformerMTCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.save_last": True})
        parser.link_arguments("data.vocab_size", "model.vocab_size", apply_on="instantiate")
        parser.link_arguments("data.src_lang", "model.src_lang")
        parser.link_arguments("data.tgt_lang", "model.tgt_lang")

    def _resolve_last(self) -> None:
        config = self.config_init[self.subcommand]
        if config.get("ckpt_path") != "last":
            return
        candidates = []
        dirpath = self.trainer.checkpoint_callback.dirpath if self.trainer.checkpoint_callback \
            else None
        if dirpath:
            candidates.append(Path(dirpath) / "last.ckpt")
        else:
            root = Path(self.trainer.default_root_dir)
            candidates.extend(root.glob("lightning_logs/version_*/checkpoints/last.ckpt"))
        existing = [p for p in candidates if p.is_file()]
        if not existing:
            where = dirpath or f"{self.trainer.default_root_dir}/lightning_logs/*/checkpoints"
            raise UserError(
                f"--ckpt_path last: no last.ckpt in {where}; give the checkpoint's path, or "
                "train first"
            )
        config["ckpt_path"] = str(max(existing, key=lambda p: p.stat().st_mtime))

    def before_fit(self) -> None:
        self._resolve_last()

    before_validate = before_test = before_predict = before_fit

    def predict(self, model: TranslationModel, datamodule: TranslationDataModule,
                ckpt_path: str | None = None, **kwargs: Any) -> None:
        """Run Lightning's predict loop and write one translation per input line, in order."""
        if ckpt_path is None:
            raise UserError("predict needs a trained model: --ckpt_path CKPT")
        with contextlib.redirect_stdout(sys.stderr):  # progress bar off stdout: it holds results
            chunks = self.trainer.predict(model, datamodule=datamodule, ckpt_path=ckpt_path,
                                          return_predictions=True)
        lines = [line.replace("\n", " ").replace("\r", " ") for chunk in chunks
                 for line in chunk]
        output = datamodule.hparams.predict_output
        if output:
            with atomic_write(output) as handle:
                handle.writelines(line + "\n" for line in lines)
        else:
            sys.stdout.writelines(line + "\n" for line in lines)

    def instantiate_trainer(self, **kwargs: Any):
        trainer = super().instantiate_trainer(**kwargs)
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        return trainer


def run_lightning_cli(argv: list[str]) -> int:
    TransformerMTCLI(
        TranslationModel,
        TranslationDataModule,
        # None = read sys.argv, which LightningCLI prefers (it warns when given both)
        args=None if argv == sys.argv[1:] else argv,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"default_env": False},
        seed_everything_default=1234,
    )
    return 0
