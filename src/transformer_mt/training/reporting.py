"""What `fit` tells its user while it runs: plain log lines in a file, a progress bar in a
terminal, and one line for the model instead of Lightning's summary table.

Under a scheduler (SLURM, `nohup`, CI) standard output is a file, where Lightning's progress bar
writes nothing readable and its metrics reach only the CSV log. So, as fairseq and Marian do,
`TrainingReport` writes one flushed line every `log_every_n_steps` optimizer steps (step, epoch,
loss, nll, perplexity, learning rate, gradient norm, target tokens/s, sentences/s, peak memory,
elapsed time, ETA), one line per validation (loss, perplexity, BLEU with its search and
sentences, whether it is the best so far) and one per checkpoint written (its path). In a
terminal the same key numbers go on the progress bar (`ReportBar`). Under DDP the counts are
summed over the ranks and only rank 0 writes.
"""

from __future__ import annotations

import math
import resource
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import Callback, ModelSummary, Timer, TQDMProgressBar
from lightning.pytorch.trainer.states import TrainerFn

PREFIX = "transformer-mt: "


def duration(seconds: float) -> str:
    """1:02:03 for an hour and more, 2:03 below."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def peak_memory(device: torch.device) -> str:
    """The peak of this process: CUDA memory allocated by torch, or the CPU resident set."""
    if device.type == "cuda":
        return f"peak CUDA mem {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss *= 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return f"peak RSS {rss / 2**30:.2f} GiB"


class TrainingReport(Callback):
    """Measures training between two log steps and reports it (module docstring).

    `plain`: write the lines to stderr, flushed (not a terminal, or the progress bar is off);
    otherwise `items` holds the key numbers for `ReportBar`, and the validation and checkpoint
    lines are printed above the bar.

    The counts come from `TranslationModel.training_step`'s outputs (label-smoothed loss and NLL
    sums, target tokens) and stay on the device between log steps, so reporting adds no
    synchronisation to ordinary steps. Losses are per target token over the whole interval, not
    the last step's; tokens/s and sentences/s count every rank and leave out the time spent in
    validation; the ETA is the remaining steps at the run's mean time per step (validation
    included), or the time left under `max_time` if that comes first.
    """

    def __init__(self, plain: bool) -> None:
        self.plain = plain
        self.items: dict[str, str] = {}
        self._trainer: L.Trainer | None = None
        self._sums: torch.Tensor | None = None  # loss sum, NLL sum, target tokens
        self._sentences = 0
        self._started = self._last_time = self._validation_began = 0.0
        self._validation_seconds = 0.0  # spent validating since the last step line
        self._first_step = self._last_step = 0
        self._lr = 0.0
        self._best: tuple[float, int] | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def _emit(self, text: str) -> None:
        """One line, from rank 0 only: on stderr at once, or above the terminal's bar."""
        trainer = self._trainer
        if trainer is None or not trainer.is_global_zero:
            return
        bar = trainer.progress_bar_callback
        if self.plain or bar is None:
            print(PREFIX + text, file=sys.stderr, flush=True)
        else:
            bar.print(PREFIX + text)

    # ------------------------------------------------------------------ training steps
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = self._last_time = time.monotonic()
        self._first_step = self._last_step = trainer.global_step  # > 0 when resumed
        self._sums = torch.zeros(3, dtype=torch.float64, device=pl_module.device)
        self._sentences = 0
        self._validation_seconds = 0.0

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        # the rate this step uses: Lightning moves the schedule on before on_train_batch_end
        self._lr = trainer.optimizers[0].param_groups[0]["lr"]

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        assert self._sums is not None
        self._sums += torch.stack([outputs[k].double() for k in ("loss_sum", "nll_sum", "tokens")])
        self._sentences += len(batch["index"])
        step = trainer.global_step
        if step != self._last_step and step % trainer.log_every_n_steps == 0:
            self._report_steps(trainer, pl_module)

    def _report_steps(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        assert self._sums is not None
        sums = torch.cat([self._sums, self._sums.new_tensor([self._sentences])])
        if trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
            dist.all_reduce(sums)  # every rank reaches the same log steps
        loss_sum, nll_sum, tokens, sentences = sums.tolist()
        self._sums.zero_()
        self._sentences = 0
        now = time.monotonic()
        seconds = max(now - self._last_time - self._validation_seconds, 1e-9)
        step = trainer.global_step
        nll = nll_sum / max(tokens, 1.0)
        numbers = {"loss": f"{loss_sum / max(tokens, 1.0):.3f}",
                   "ppl": f"{math.exp(min(nll, 50.0)):.2f}", "lr": f"{self._lr:.3g}",
                   "tok/s": f"{tokens / seconds:,.0f}"}
        total = trainer.estimated_stepping_batches
        eta, by_time = self._eta(trainer, total, step, now)
        progress = f"step {step:,}/{int(total):,}" if math.isfinite(total) and not by_time \
            else f"step {step:,}"  # no total when max_time ends the run first
        fields = [progress, f"epoch {trainer.current_epoch + 1}", f"loss {numbers['loss']}",
                  f"nll {nll:.3f}", f"ppl {numbers['ppl']}", f"lr {numbers['lr']}"]
        grad_norm = getattr(pl_module, "grad_norm", None)
        if grad_norm is not None:
            fields.append(f"gnorm {float(grad_norm):.3f}")
        fields += [f"{numbers['tok/s']} tgt tok/s", f"{sentences / seconds:,.1f} sent/s",
                   peak_memory(pl_module.device), f"elapsed {duration(now - self._started)}"]
        if eta is not None:
            numbers["ETA"] = duration(eta)
            fields.append(f"ETA {numbers['ETA']}" + (" (max_time)" if by_time else ""))
        self._last_time, self._last_step, self._validation_seconds = now, step, 0.0
        self.items = {**self.items, **numbers}
        if self.plain:
            self._emit(" | ".join(fields))

    def _eta(self, trainer: L.Trainer, total: float, step: int, now: float
             ) -> tuple[float | None, bool]:
        """Seconds until training ends, and whether `max_time` is what ends it: the remaining
        of `total` steps at the run's mean time per step, or the time left, if sooner."""
        done = step - self._first_step
        steps_eta = (total - step) * (now - self._started) / done \
            if math.isfinite(total) and done > 0 else math.inf
        time_left = _time_left(trainer)
        if time_left is not None and time_left < steps_eta:
            return max(time_left, 0.0), True
        return (steps_eta if math.isfinite(steps_eta) else None), False

    # ------------------------------------------------------------------ validation
    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._validation_began = time.monotonic()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._validation_seconds += time.monotonic() - self._validation_began
        if trainer.sanity_checking:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()
                   if k.startswith("val/")}
        if "val/loss" not in metrics:
            return
        step = trainer.global_step
        fields = [f"validation at step {step:,}", f"loss {metrics['val/loss']:.3f}"]
        if "val/nll" in metrics:
            fields.append(f"nll {metrics['val/nll']:.3f}")
        if "val/ppl" in metrics:
            fields.append(f"ppl {metrics['val/ppl']:.2f}")
        # the best is the highest BLEU, or the lowest loss when no BLEU is measured
        name, value = ("BLEU", metrics["val/bleu"]) if "val/bleu" in metrics \
            else ("loss", -metrics["val/loss"])
        if "val/bleu" in metrics:
            how = pl_module.val_bleu_description()
            fields.append(f"BLEU {value:.2f} ({how})")
            self.items["val BLEU"] = f"{value:.2f} ({how})"
        if trainer.state.fn == TrainerFn.FITTING:
            if self._best is None or value > self._best[0]:
                self._best = (value, step)
                fields.append(f"best {name} so far")
            else:
                fields.append(f"best {name} {abs(self._best[0]):.2f} at step {self._best[1]:,}")
        self._emit(" | ".join(fields))

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_saved(self, path: Path, checkpoint: dict[str, Any]) -> None:
        """Called by `AtomicCheckpointIO` once a checkpoint file is complete (rank 0)."""
        self._emit(f"checkpoint at step {checkpoint.get('global_step', 0):,}: {path}")


def _time_left(trainer: L.Trainer) -> float | None:
    """Seconds until `max_time` stops training, if it is set."""
    for callback in trainer.callbacks:
        if isinstance(callback, Timer):
            return callback.time_remaining()
    return None


class ReportBar(TQDMProgressBar):
    """Lightning's progress bar, showing `TrainingReport`'s key numbers (loss, perplexity,
    target tokens/s, ETA of the run, validation BLEU with its search and sentences) instead of
    the raw metrics it would show."""

    def __init__(self, report: TrainingReport) -> None:
        super().__init__()
        self.report = report

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        return dict(self.report.items)


class ModelLine(ModelSummary):
    """One line for the model instead of Lightning's summary table, which ends in
    "Total FLOPs: 0" for a model it cannot trace and lists only the top module."""

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        config = pl_module.config
        parameters = sum(p.numel() for p in pl_module.parameters())
        print(f"{PREFIX}model: d_model {config.d_model}, {config.n_encoder_layers}+"
              f"{config.n_decoder_layers} layers, {config.n_heads} heads, d_ff {config.d_ff}, "
              f"vocabulary {config.vocab_size:,}; {parameters / 1e6:.1f}M parameters "
              f"({parameters * 4 / 2**20:.1f} MiB in float32)", file=sys.stderr, flush=True)
