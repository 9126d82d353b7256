"""Training speed through the whole `transformer-mt fit` loop, against the model step alone on
the same batches, and where the rest of a step's time goes.

`scripts/bench_train.py` times the model step alone (forward, fused loss, backward, Adam), so it
cannot see what `fit` does around it: loading batches from the memory-mapped cache, collation,
Lightning's loop and hooks, `self.log`, the token-exact gradient scaling, the LR schedule,
callbacks, loggers and progress output. Each round here runs two fresh processes on the same
config, taking turns:

  model step  the config's model, optimizer and LR schedule (`configure_optimizers`) on the
              first batches of epoch 0 from the config's own training loader, which are the
              batches `fit` trains on: per optimizer step, forward + loss and backward of each
              micro-batch (`accumulate_grad_batches`), `optimizer.step()`, `scheduler.step()`,
              `zero_grad()`; batches are loaded before the clock starts;
  fit         `transformer-mt fit --config CONFIG` for warm-up + measured + 1 steps (validation
              off, the config's logger, checkpoint callback and progress output on), with
              `FitTimer`, a callback that timestamps every step and times the model's parts in
              place: forward = `TranslationModel._loss`, backward = `on_before_backward` to
              `on_after_backward`, optimizer = the end of `on_before_optimizer_step` (our
              gradient scaling) to the end of `optimizer.step()` (clipping, if configured, and
              the Adam update). Everything else in a step is "outside the model": between
              batches (fetching and collating the next batch, logging metrics, progress output)
              and around the model inside the step (`self.log` calls, hooks, gradient scaling,
              zero_grad, the LR schedule).

A step runs from the start of its first micro-batch to the start of the next step's. Target
tokens/s = the measured steps' non-padding target tokens / their time. On CUDA every timestamp
synchronizes first. Figures are the median of the rounds.

  python scripts/bench_fit.py --config configs/multi30k.yaml
  python scripts/bench_fit.py --config configs/wmt14_en_de_base.yaml --steps 5 --warmup 2 -- \\
      --trainer.accelerator cpu --trainer.precision 32-true ...   # any `fit` override after --

`--profile-step K` also profiles fit's step K (torch.profiler: operators by self CPU time;
cProfile: Python functions by own time) into FILE.profile.txt next to `--json FILE`.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import multiprocessing
import os
import platform
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import lightning as L
import torch
from bench_train import train_step
from lightning.pytorch.callbacks import Callback

PARTS = ("forward", "backward", "optimizer")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True,
                        help="a `fit` config, e.g. configs/multi30k.yaml")
    parser.add_argument("--steps", type=int, default=30, help="measured optimizer steps")
    parser.add_argument("--warmup", type=int, default=5, help="unmeasured steps first")
    parser.add_argument("--rounds", type=int, default=3,
                        help="model step / fit pairs of fresh processes")
    parser.add_argument("--workdir", default=None,
                        help="run folders (default: a temporary folder, removed at the end)")
    parser.add_argument("--profile-step", type=int, default=0, metavar="K",
                        help="profile fit's step K (warm-up steps count) of the first round "
                        "(needs --json)")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write results here")
    parser.add_argument("overrides", nargs="*", help="`fit` options after --, for both runs")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 1 or args.rounds < 1:
        parser.error("--steps, --warmup and --rounds must be >= 1")
    if args.profile_step and not args.json:
        parser.error("--profile-step needs --json (the profile goes beside it)")
    return args


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class FitTimer(Callback):
    """Timestamps every training step of `fit` and times the model's parts in place (module
    docstring); writes one record per optimizer step to `out` (JSON) when training ends."""

    def __init__(self, out: str, profile_step: int = 0) -> None:
        self.out = out
        self.profile_step = profile_step
        self.steps: list[dict[str, Any]] = []
        self._after_hook = 0.0
        self._backward_start = 0.0
        self._last_end: float | None = None
        self._profilers: tuple[Any, cProfile.Profile] | None = None
        self._device = torch.device("cpu")

    def _now(self) -> float:
        _sync(self._device)
        return time.perf_counter()

    def _timed(self, part: str, method: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = self._now()
            result = method(*args, **kwargs)
            end = self._now()
            if part == "forward":
                self.steps[-1]["forward"] += end - start
                self.steps[-1]["tokens"] += int(result[2])
            else:  # the gradient scaling hook: the optimizer's own work starts after it
                self._after_hook = end
            return result
        return timed

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._device = pl_module.device
        # instance attributes shadow the methods; Lightning looks hooks up by name
        pl_module._loss = self._timed("forward", pl_module._loss)
        pl_module.on_before_optimizer_step = self._timed("hook", pl_module.on_before_optimizer_step)
        trainer.optimizers[0].register_step_post_hook(self._after_update)

    def _after_update(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self.steps[-1]["optimizer"] += self._now() - self._after_hook

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        new_step = batch_idx % trainer.accumulate_grad_batches == 0
        profiling = bool(self.profile_step) and len(self.steps) == self.profile_step
        if new_step and profiling:  # the profiled step has ended; it absorbs this work
            self._stop_profiling()
        now = self._now()
        if self._last_end is not None:
            self.steps[-1]["between_batches"] += now - self._last_end
        if new_step:
            self.steps.append({"start": now, "tokens": 0, "sentences": 0, "forward": 0.0,
                               "backward": 0.0, "optimizer": 0.0, "between_batches": 0.0,
                               "profiled": len(self.steps) + 1 == self.profile_step})
            if self.steps[-1]["profiled"]:
                self._profilers = (torch.profiler.profile(
                    activities=[torch.profiler.ProfilerActivity.CPU]), cProfile.Profile())
                self._profilers[0].__enter__()
                self._profilers[1].enable()
        self.steps[-1]["sentences"] += len(batch["index"])

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           loss: torch.Tensor) -> None:
        self._backward_start = self._now()

    def on_after_backward(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.steps[-1]["backward"] += self._now() - self._backward_start

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        self._last_end = self._now()

    def _stop_profiling(self) -> None:
        """Write the profiled step's tables: operators by self CPU time, Python functions by
        their own time."""
        assert self._profilers is not None
        profiler, python = self._profilers
        python.disable()
        profiler.__exit__(None, None, None)
        text = io.StringIO()
        text.write(f"fit step {self.profile_step}: torch.profiler, by self CPU time\n")
        text.write(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
        text.write(f"\nfit step {self.profile_step}: cProfile, by own time\n")
        pstats.Stats(python, stream=text).sort_stats("tottime").print_stats(30)
        Path(self.out).with_suffix(".profile.txt").write_text(text.getvalue())
        self._profilers = None

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # a step's time runs to the next step's start, so the last step is not measured
        for step, following in zip(self.steps, self.steps[1:], strict=False):
            step["period"] = following["start"] - step["start"]
        Path(self.out).write_text(json.dumps({
            "steps": self.steps[:-1], "device": str(self._device),
            "threads": torch.get_num_threads(),
            "accumulate": trainer.accumulate_grad_batches}))


def _cli(argv: list[str]) -> Any:
    """The config's model, data module and trainer, built as `fit` builds them."""
    from transformer_mt.commands.train import OneLineLightningParser, TransformerMTCLI
    from transformer_mt.data.datamodule import TranslationDataModule
    from transformer_mt.training.translation_model import TranslationModel

    return TransformerMTCLI(TranslationModel, TranslationDataModule, args=argv, run=False,
                            parser_class=OneLineLightningParser, seed_everything_default=1234,
                            save_config_kwargs={"overwrite": True})


def run_model_step(config_args: list[str], warmup: int, steps: int) -> dict[str, Any]:
    """Child process: the model step alone on fit's first batches (module docstring)."""
    cli = _cli(config_args)
    model, data, trainer = cli.model, cli.datamodule, cli.trainer
    data.trainer = model.trainer = trainer  # what fit attaches; the loader reads its epoch
    data.setup("fit")
    device = trainer.strategy.root_device
    model.to(device).train()
    optimizers = model.configure_optimizers()
    optimizer, scheduler = optimizers["optimizer"], optimizers["lr_scheduler"]["scheduler"]
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16)
                if "bf16" in str(trainer.precision) else nullcontext())
    loader = iter(data.train_dataloader())
    records = []
    for _ in range(warmup + steps):
        micro = [{k: v.to(device) for k, v in next(loader).items()}
                 for _ in range(trainer.accumulate_grad_batches)]
        _sync(device)
        start = time.perf_counter()
        tokens = train_step(model._loss, micro, optimizer, scheduler, autocast)
        _sync(device)
        records.append({"period": time.perf_counter() - start, "tokens": tokens,
                        "sentences": sum(len(b["index"]) for b in micro)})
    return {"steps": records[warmup:], "device": str(device), "threads": torch.get_num_threads()}


def run_fit(fit_args: list[str], out: str) -> dict[str, Any]:
    """Child process: `transformer-mt fit` with the timer; returns the timer's records."""
    from transformer_mt.commands.main import main

    status = main(fit_args)
    if status:
        raise RuntimeError(f"fit exited with status {status}")
    return json.loads(Path(out).read_text())


def summarise(run: dict[str, Any]) -> dict[str, Any]:
    """Totals over the measured steps of one process."""
    steps = [s for s in run["steps"] if not s.get("profiled")]
    total = sum(s["period"] for s in steps)
    summary = {"tokens_per_s": sum(s["tokens"] for s in steps) / total,
               "sentences_per_s": sum(s["sentences"] for s in steps) / total,
               "s_per_step": statistics.median(s["period"] for s in steps)}
    if "forward" in steps[0]:
        parts = {p: sum(s[p] for s in steps) for p in (*PARTS, "between_batches")}
        outside = total - sum(parts[p] for p in PARTS)
        summary["share"] = {p: parts[p] / total for p in PARTS}
        summary["share"]["outside"] = outside / total
        summary["share"]["outside_between_batches"] = parts["between_batches"] / total
        summary["share"]["outside_in_step"] = (outside - parts["between_batches"]) / total
    return summary


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-fit-"))
    config_args = ["--config", args.config, *args.overrides]
    context = multiprocessing.get_context("spawn")  # a fresh process per run
    load_start = os.getloadavg()
    rounds: list[dict[str, Any]] = []
    for round_ in range(args.rounds):
        run_dir = workdir / f"round{round_ + 1}"
        out = str(Path(args.json).with_suffix("")) + f".round{round_ + 1}.timer.json" \
            if args.json else str(run_dir / "timer.json")
        profile = args.profile_step if round_ == 0 else 0
        run_args = [*config_args, "--trainer.default_root_dir", str(run_dir),
                    "--trainer.logger.init_args.save_dir", str(run_dir),
                    "--checkpoint.dirpath", str(run_dir / "checkpoints")]
        fit_args = ["fit", *run_args,
                    "--trainer.max_steps", str(args.warmup + args.steps + 1),
                    "--trainer.max_time", "null", "--trainer.limit_val_batches", "0",
                    "--trainer.num_sanity_val_steps", "0",
                    "--trainer.callbacks+=bench_fit.FitTimer",
                    f"--trainer.callbacks.out={out}",
                    f"--trainer.callbacks.profile_step={profile}"]
        result = {}
        for name, function, call_args in (
                ("model_step", run_model_step, (run_args, args.warmup, args.steps)),
                ("fit", run_fit, (fit_args, out))):
            load = os.getloadavg()[0]
            # an executor, not a Pool: a child that dies raises instead of hanging
            with ProcessPoolExecutor(1, mp_context=context) as executor:
                run = executor.submit(function, *call_args).result()
            if name == "fit":
                run["steps"] = run["steps"][args.warmup:]
            run["load"] = [load, os.getloadavg()[0]]
            run["summary"] = summarise(run)
            result[name] = run
            print(f"  round {round_ + 1} {name}: {run['summary']['tokens_per_s']:.1f} tgt tok/s, "
                  f"load {run['load'][0]:.2f} -> {run['load'][1]:.2f}", file=sys.stderr,
                  flush=True)
        rounds.append(result)
    load_end = os.getloadavg()
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    report = report_lines(args, rounds, load_start, load_end)
    print("\n".join(report))
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"args": vars(args), "rounds": rounds, "load_avg": [load_start, load_end],
             "report": report, "cpu": platform.processor(), "torch": torch.__version__},
            indent=1) + "\n")
    return 0


def report_lines(args: argparse.Namespace, rounds: list[dict[str, Any]],
                 load_start: tuple[float, ...], load_end: tuple[float, ...]) -> list[str]:
    def median(name: str, key: str) -> float:
        return statistics.median(r[name]["summary"][key] for r in rounds)

    def per_round(name: str) -> str:
        return ", ".join(f"{r[name]['summary']['tokens_per_s']:.0f}" for r in rounds)

    fit0 = rounds[0]["fit"]
    lines = [f"bench_fit: {args.config} {' '.join(args.overrides)}".rstrip(),
             f"  device {fit0['device']} ({fit0['threads']} threads), torch {torch.__version__},"
             f" {args.steps} measured steps x {args.rounds} round(s) after {args.warmup} warm-up,"
             f" accumulate {fit0['accumulate']}",
             f"  model step alone: {median('model_step', 'tokens_per_s'):8.1f} tgt tok/s "
             f"(rounds {per_round('model_step')}), {median('model_step', 's_per_step'):.3f} s/step"]
    ratio = statistics.median(r["fit"]["summary"]["tokens_per_s"]
                              / r["model_step"]["summary"]["tokens_per_s"] for r in rounds)
    lines.append(f"  fit:              {median('fit', 'tokens_per_s'):8.1f} tgt tok/s (rounds "
                 f"{per_round('fit')}), {median('fit', 's_per_step'):.3f} s/step, "
                 f"{median('fit', 'sentences_per_s'):.1f} sentences/s; "
                 f"{100 * ratio:.1f} % of the model step")
    shares = {key: statistics.median(r["fit"]["summary"]["share"][key] for r in rounds)
              for key in rounds[0]["fit"]["summary"]["share"]}
    lines.append("  fit step: " + ", ".join(f"{p} {100 * shares[p]:.1f} %" for p in PARTS)
                 + f"; outside the model {100 * shares['outside']:.2f} % (between batches "
                 f"{100 * shares['outside_between_batches']:.2f} %, in the step "
                 f"{100 * shares['outside_in_step']:.2f} %)")
    lines.append(f"  load average {load_start[0]:.2f} at start, {load_end[0]:.2f} at end")
    return lines


if __name__ == "__main__":
    sys.exit(main())
