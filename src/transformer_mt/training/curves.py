"""A run's training curves as one picture (`transformer-mt plot`): training and validation loss,
validation BLEU, and the learning-rate schedule, against optimizer steps, from the CSV log that
`fit` writes (Lightning's CSVLogger, `metrics.csv`).

Steps are counted as in the log lines and checkpoint names: a row the log records at its
0-based `step` s is drawn at s + 1, the number of optimizer steps done. matplotlib (the `viz`
extra) is imported only to draw, with the Agg canvas directly (no pyplot, no display).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from transformer_mt.errors import UserError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

METRICS_NAME = "metrics.csv"
# column of the CSV log -> series of `Curves`
COLUMNS = {"train/loss": "train_loss", "val/loss": "val_loss", "val/bleu": "val_bleu",
           "lr": "lr"}
SIZE_INCHES, DPI = (15.0, 4.2), 100


@dataclass(kw_only=True)
class Curves:
    """(step, value) points of each series, and what the BLEU measured."""

    train_loss: list[tuple[int, float]] = field(default_factory=list)
    val_loss: list[tuple[int, float]] = field(default_factory=list)
    val_bleu: list[tuple[int, float]] = field(default_factory=list)
    lr: list[tuple[int, float]] = field(default_factory=list)
    bleu_search: str = ""  # e.g. "greedy, first 500 validation sentences" (from hparams.yaml)


def find_metrics(run_dir: Path) -> Path:
    """The newest metrics.csv under a run folder (`trainer.default_root_dir`, its logger's
    save_dir or one version folder): a rerun writes a new version beside the old ones."""
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such folder")
    found = sorted(run_dir.rglob(METRICS_NAME), key=lambda p: p.stat().st_mtime)
    if not found:
        raise UserError(f"{run_dir}: no {METRICS_NAME} under it (fit writes one with the "
                        "CSVLogger of the shipped configs); give --metrics FILE")
    return found[-1]


def read_metrics(path: Path) -> Curves:
    """The series of a CSV log, and the validation search from its hparams.yaml if present."""
    curves = Curves()
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if "step" not in (reader.fieldnames or []):
                raise UserError(f"{path}: not a CSV log of fit (no 'step' column)")
            for line, row in enumerate(reader, start=2):
                for column, series in COLUMNS.items():
                    if row.get(column):
                        try:
                            point = (int(row["step"]) + 1, float(row[column]))
                        except ValueError:
                            raise UserError(f"{path}:{line}: {column} or step is not a "
                                            "number") from None
                        getattr(curves, series).append(point)
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a CSV log of fit (not UTF-8 text)") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    curves.bleu_search = _bleu_search(path.parent / "hparams.yaml")
    return curves


def _bleu_search(hparams: Path) -> str:
    """"greedy, first 500 validation sentences" from the run's model options, or ""."""
    if not hparams.is_file():
        return ""
    import yaml

    options = yaml.safe_load(hparams.read_text(encoding="utf-8")) or {}
    beam, sentences = options.get("val_beam_size"), options.get("val_bleu_sentences")
    if beam is None or sentences is None:
        return ""
    search = "greedy" if beam == 1 else f"beam {beam}"
    return f"{search}, first {sentences:,} validation sentences"


def draw(curves: Curves, title: str) -> Figure:
    """Three panels: loss (training and validation), validation BLEU, learning rate."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=SIZE_INCHES, dpi=DPI, layout="constrained")
    loss_ax, bleu_ax, lr_ax = fig.subplots(1, 3)
    _line(loss_ax, curves.train_loss, "training", marker="")
    _line(loss_ax, curves.val_loss, "validation", marker="o")
    loss_ax.set_ylabel("loss per target token (label-smoothed)")
    loss_ax.legend()
    _line(bleu_ax, curves.val_bleu, "validation BLEU", marker="o", color="tab:green")
    bleu_ax.set_ylabel("BLEU")
    bleu_ax.set_title("validation BLEU" + (f" ({curves.bleu_search})"
                                           if curves.bleu_search else ""), fontsize=10)
    _line(lr_ax, curves.lr, "learning rate", marker="", color="tab:purple")
    lr_ax.set_ylabel("learning rate")
    lr_ax.set_title("learning-rate schedule", fontsize=10)
    loss_ax.set_title("loss", fontsize=10)
    for ax in (loss_ax, bleu_ax, lr_ax):
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return fig


def _line(ax, points: list[tuple[int, float]], label: str, marker: str,
          color: str | None = None) -> None:
    if not points:
        ax.text(0.5, 0.5, f"no {label} values yet", ha="center", va="center",
                transform=ax.transAxes, color="gray")
        return
    steps, values = zip(*points, strict=True)
    ax.plot(steps, values, marker=marker, markersize=4, label=label, color=color)


def png_bytes(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
