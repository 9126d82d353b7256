"""LightningCLI for fit / validate / test / predict, with the project's defaults and fixes.

- `data.vocab_size` is linked into `model.vocab_size`, and the language pair likewise, so a
  config never states them twice.
- A `checkpoint:` section configures the ModelCheckpoint (save_last=True by default), which
  also saves last.ckpt at the step where training ends (`Checkpoint`).
- `--ckpt_path last` is resolved here to the run's newest last.ckpt or interrupted.ckpt:
  Lightning, in a new process, finds nothing and silently starts from scratch; we fail loudly.
- Checkpoints are written atomically (temp file + rename) and read with weights_only=True.
- SIGINT / SIGTERM during training save a resumable checkpoint, and a resumed run continues
  with the same batches and random numbers as an uninterrupted one (`ResumableTraining`).
- A bad option or config value is reported in one line with exit status 2, like every other
  user error, instead of jsonargparse's usage block.
- The trainer never swaps in a DistributedSampler: our batch sampler shards by rank itself.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import numpy as np
import torch
import torch.distributed as dist

# Lightning 2.6 itself calls jsonargparse APIs deprecated in 4.49; the warnings are not the
# user's to act on.
os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")

import lightning as L
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from transformer_mt.checkpoint import load_checkpoint_dict
from transformer_mt.data.datamodule import TranslationDataModule
from transformer_mt.errors import UserError
from transformer_mt.lit import TranslationModel
from transformer_mt.textio import atomic_write

# What SIGINT/SIGTERM during `fit` saves, beside last.ckpt (`--ckpt_path last` takes the newer).
INTERRUPTED_NAME = "interrupted.ckpt"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write each checkpoint to a temporary file in the same folder, then rename it.

    Lightning's own writer opens the destination and streams into it, so a crash mid-write
    leaves a truncated `last.ckpt`; a rename is atomic on POSIX file systems.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None
    ) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, "wb") as handle:
            torch.save(checkpoint, handle)

    def load_checkpoint(
        self, path: _PATH, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        """Load without unpickling arbitrary objects (whatever `--weights_only` says), and turn
        a missing, truncated, corrupt or foreign file into a one-line UserError."""
        if "://" in str(path):  # fsspec URL: Lightning's reader, still weights only
            return super().load_checkpoint(path, map_location, weights_only=True)
        return load_checkpoint_dict(path, map_location)


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
        last_epoch = (trainer.max_epochs is not None and trainer.max_epochs > 0
                      and trainer.current_epoch + 1 >= trainer.max_epochs
                      and trainer.fit_loop.epoch_loop.batch_progress.is_last_batch)
        ending = (trainer.should_stop or last_epoch
                  or 0 < trainer.max_steps <= trainer.global_step)
        if self.save_last and ending and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


class OneLineLightningParser(LightningArgumentParser):
    """LightningCLI's parser, reporting a bad option, config key or value in one line.

    jsonargparse prints a usage block of a hundred lines before the message, which buries it;
    the project's rule for user mistakes is one line on stderr and exit status 2.
    """

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error:  # a nested parser: its parent reports the error
            super().error(message, ex)
        command = self.prog.replace(" [options]", "")
        print(f"transformer-mt: error: {_one_line(message)} (see `{command} --help`)",
              file=sys.stderr)
        self.exit(2)


def _one_line(message: str) -> str:
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


class TransformerMTCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(Checkpoint, "checkpoint")
        parser.set_defaults({"checkpoint.save_last": True,
                             "trainer.use_distributed_sampler": False})
        parser.link_arguments("data.vocab_size", "model.vocab_size", apply_on="instantiate")
        parser.link_arguments("data.src_lang", "model.src_lang")
        parser.link_arguments("data.tgt_lang", "model.tgt_lang")

    def _parse_ckpt_path(self) -> None:
        """Lightning reads `--ckpt_path`'s hyper-parameters here, right after parsing; a
        truncated, corrupt or unsafe file fails in torch.load with a long traceback. Load it
        our way to raise the one-line error instead.

        Before that, `--ckpt_path last` is resolved (Lightning, in a new process, would find
        nothing and silently start from scratch), and validate/test/predict take the
        vocabulary from the checkpoint (`data.tokenizer_from`), so they never read the
        training corpora."""
        subcommand = self.config.get("subcommand")
        config = self.config[subcommand] if subcommand else None
        if config is not None and config.get("ckpt_path") == "last":
            config["ckpt_path"] = str(_last_checkpoint(config))
        if config is not None and subcommand in ("validate", "test", "predict") \
                and config.get("ckpt_path") and not config["data"].get("tokenizer_from"):
            config["data"]["tokenizer_from"] = config["ckpt_path"]
        try:
            super()._parse_ckpt_path()
        except Exception:
            load_checkpoint_dict(self.config[self.config.subcommand]["ckpt_path"])
            raise

    def _check_output_folders(self) -> None:
        """Fail now, in one line, if the run's folders cannot be created: Lightning would
        find out after loading the data, with a traceback."""
        callback = self.trainer.checkpoint_callback
        folders = [self.trainer.default_root_dir, callback.dirpath if callback else None]
        folders += [getattr(logger, "save_dir", None) for logger in self.trainer.loggers]
        for folder in filter(None, folders):
            if "://" in str(folder):
                continue
            try:
                Path(folder).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UserError(f"{folder}: cannot create the folder ({exc.strerror})") from None
            if not os.access(folder, os.W_OK):
                raise UserError(f"{folder}: folder is not writable")

    def before_fit(self) -> None:
        self._check_output_folders()

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
        try:
            trainer = super().instantiate_trainer(**kwargs)
        except (MisconfigurationException, TypeError, ValueError) as exc:
            # the Trainer checks its (user-given) options here, raising these with a message
            raise UserError(f"trainer: {_one_line(str(exc))}") from None
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        return trainer


def _last_checkpoint(config: Any) -> Path:
    """`--ckpt_path last`: the newer of last.ckpt and interrupted.ckpt in the run's checkpoint
    folder (`checkpoint.dirpath`, else Lightning's default under `trainer.default_root_dir`),
    or a one-line error when there is none."""
    dirpath = config["checkpoint"].get("dirpath")
    root = Path(config["trainer"].get("default_root_dir") or os.getcwd())
    candidates = []
    for name in ("last.ckpt", INTERRUPTED_NAME):
        if dirpath:
            candidates.append(Path(dirpath) / name)
        else:
            candidates.extend(root.glob(f"lightning_logs/version_*/checkpoints/{name}"))
    existing = [p for p in candidates if p.is_file()]
    if not existing:
        where = dirpath or f"{root}/lightning_logs/*/checkpoints"
        raise UserError(f"--ckpt_path last: no last.ckpt in {where}; give the checkpoint's "
                        "path, or train first")
    return max(existing, key=lambda p: p.stat().st_mtime)


def run_lightning_cli(argv: list[str]) -> int:
    """Run a LightningCLI command; 128 + signal number when `fit` was interrupted and saved.

    A UserError raised anywhere inside (Lightning re-raises it unchanged after its cleanup)
    reaches `cli.main`, which prints it in one line and exits 2.
    """
    try:
        TransformerMTCLI(
            TranslationModel,
            TranslationDataModule,
            # None = read sys.argv, which LightningCLI prefers (it warns when given both)
            args=None if argv == sys.argv[1:] else argv,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"default_env": False, "prog": "transformer-mt"},
            parser_class=OneLineLightningParser,
            trainer_defaults={"callbacks": [ResumableTraining()]},
            seed_everything_default=1234,
        )
    except TrainingInterrupted as exc:
        if exc.report:
            print(f"transformer-mt: {exc}", file=sys.stderr)
        return 128 + exc.signum
    except MisconfigurationException as exc:  # Lightning's "the options do not fit" error
        raise UserError(_one_line(str(exc))) from None
    return 0
