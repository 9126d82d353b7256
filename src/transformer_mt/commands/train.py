"""LightningCLI for fit / validate / test / predict, with the project's defaults and fixes.

- `data.vocab_size` is linked into `model.vocab_size`, and the language pair likewise, so a
  config never states them twice.
- A `checkpoint:` section configures the ModelCheckpoint (save_last=True by default), which
  also saves last.ckpt at the step where training ends (`training.checkpoints.Checkpoint`).
- `--ckpt_path last` is resolved here to the run's newest last.ckpt or interrupted.ckpt:
  Lightning, in a new process, finds nothing and silently starts from scratch; we fail loudly.
- Checkpoints are written atomically (temp file + rename) and read with weights_only=True
  (`training.checkpoints.AtomicCheckpointIO`).
- SIGINT / SIGTERM during training save a resumable checkpoint, and a resumed run continues
  with the same batches and random numbers as an uninterrupted one
  (`training.resume.ResumableTraining`).
- A bad option or config value is reported in one line with exit status 2, like every other
  user error, instead of jsonargparse's usage block.
- The trainer never swaps in a DistributedSampler: our batch sampler shards by rank itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any, NoReturn

# Lightning 2.6 itself calls jsonargparse APIs deprecated in 4.49; the warnings are not the
# user's to act on.
os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")

from lightning.pytorch.callbacks import Callback, ModelSummary, ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from transformer_mt.checkpoint import load_checkpoint_dict
from transformer_mt.data.datamodule import TranslationDataModule
from transformer_mt.errors import UserError
from transformer_mt.textio import atomic_write
from transformer_mt.training import INTERRUPTED_NAME
from transformer_mt.training.checkpointing import AtomicCheckpointIO, Checkpoint
from transformer_mt.training.reporting import ModelLine, ReportBar, TrainingReport
from transformer_mt.training.resume import ResumableTraining, TrainingInterrupted
from transformer_mt.training.translation_model import TranslationModel

# Noise no user can act on: Lightning's own use of an API torch deprecated, and, among its INFO
# messages, advertisements for its cloud services, the absence of TPUs (this package runs on
# CPUs and GPUs) and a note that our one-line model summary replaces its table.
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                        category=FutureWarning)
_NOISE = ("\N{ELECTRIC LIGHT BULB} Tip:", "TPU available:",
          "Trainer already configured with model summary callbacks")


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_NOISE)


logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DropNoise())


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
        """The trainer, with what `fit` reports (`training.reporting`): plain log lines when
        standard output or error is not a terminal or the progress bar is off (the bar is then
        turned off too: in a file it is unreadable), else a bar with the same key numbers; one
        line for the model instead of Lightning's table; checkpoint paths as they are written."""
        config = self._get(self.config_init, "trainer", default={})
        callbacks = config.get("callbacks") or []
        terminal = sys.stdout.isatty() and sys.stderr.isatty()
        plain = not (terminal and config.get("enable_progress_bar") is not False)
        report = TrainingReport(plain=plain)
        added: list[Callback] = [report]
        if not any(isinstance(c, ProgressBar) for c in callbacks):  # else the user's own bar
            if plain:
                kwargs["enable_progress_bar"] = False
            else:
                added.append(ReportBar(report))
        if config.get("enable_model_summary") is not False \
                and not any(isinstance(c, ModelSummary) for c in callbacks):
            added.append(ModelLine())
        defaults = self.trainer_defaults.get("callbacks") or []
        self.trainer_defaults = {**self.trainer_defaults, "callbacks": [*defaults, *added]}
        try:
            trainer = super().instantiate_trainer(**kwargs)
        except (MisconfigurationException, TypeError, ValueError) as exc:
            # the Trainer checks its (user-given) options here, raising these with a message
            raise UserError(f"trainer: {_one_line(str(exc))}") from None
        trainer.strategy.checkpoint_io = AtomicCheckpointIO(on_saved=report.checkpoint_saved)
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
