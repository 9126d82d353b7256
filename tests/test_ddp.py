"""Multi-process training: `fit` with DDP on 2 CPU processes (gloo), as a user would run it.

`fit` runs as a subprocess (`python -m transformer_mt.commands.main fit ...`): Lightning starts
rank 1 by re-running that command line. Compared with a single-process run on the same config
and seed:
- each rank trains on its own share of the batches: at step s rank 0 gets the single run's
  batch 2s - 1 and rank 1 batch 2s (our sampler deals the same batch list out round-robin);
- the losses agree: close at step 1 for rank 0 (same weights and batch), and on average
  afterwards (a DDP step averages two batches' gradients);
- one set of checkpoint files is written (by rank 0); an interrupted run (SIGTERM to the
  launching process, as `kill` would send) stops both ranks at the same step, and resuming it
  reproduces the uninterrupted run's losses exactly, on both ranks.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests._tiny_fit import REPO, read_records, recorder_args, tiny_fit_args
from transformer_mt.commands.main import main

STEPS = 4
DDP = ["--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"]


def options(run: Path, spm: Path, steps: int, *extra: str) -> list[str]:
    return tiny_fit_args(run, spm, "--trainer.max_steps", str(steps),
                         "--trainer.val_check_interval", str(steps),
                         "--trainer.log_every_n_steps", "2",
                         "--checkpoint.every_n_train_steps", str(steps), *extra)


def ddp_fit(run: Path, spm: Path, *extra: str) -> subprocess.CompletedProcess:
    return in_subprocess(options(run, spm, STEPS, *DDP, *recorder_args(run / "steps"), *extra))


def in_subprocess(argv: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MASTER_PORT", None)  # let Lightning pick a free port
    return subprocess.run([sys.executable, "-m", "transformer_mt.commands.main", *argv],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=400)


pytestmark = pytest.mark.usefixtures("nondeterministic_afterwards")


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory, spm: Path) -> list[dict]:
    """Records of a single-process run of 2 * STEPS steps (it also fills the vocabulary cache
    before two processes would race to build it)."""
    run = tmp_path_factory.mktemp("single")
    assert main(options(run, spm, 2 * STEPS, *recorder_args(run / "steps"))) == 0
    return read_records(run / "steps")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, spm: Path,
                  single: list[dict]) -> Path:
    run = tmp_path_factory.mktemp("ddp")
    result = ddp_fit(run, spm)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    (run / "fit.stderr").write_text(result.stderr, encoding="utf-8")
    return run


def test_ranks_share_out_the_batches_and_losses_agree(uninterrupted: Path,
                                                      single: list[dict]) -> None:
    ranks = [read_records(uninterrupted / "steps", rank) for rank in (0, 1)]
    for rank, records in enumerate(ranks):
        assert [r["step"] for r in records] == list(range(1, STEPS + 1))
        assert [r["index"] for r in records] == [s["index"] for s in single[rank::2]]
    for r0, r1 in zip(*ranks, strict=True):
        assert not set(r0["index"]) & set(r1["index"])
    # same weights and batch; only the dropout masks differ (Lightning reseeds each rank
    # when DDP starts, after the model was built)
    assert ranks[0][0]["loss"] == pytest.approx(single[0]["loss"], rel=0.01)
    ddp_mean = sum(r["loss"] for records in ranks for r in records) / (2 * STEPS)
    single_mean = sum(s["loss"] for s in single[:STEPS]) / STEPS
    assert ddp_mean == pytest.approx(single_mean, rel=0.05)


def test_one_set_of_checkpoint_files(uninterrupted: Path) -> None:
    checkpoints = uninterrupted / "checkpoints"
    assert sorted(os.listdir(checkpoints)) == ["last.ckpt", f"step{STEPS:06d}.ckpt"]
    assert [p.name for p in (uninterrupted / "logs").iterdir()] == ["version_0"]
    checkpoint = torch.load(checkpoints / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == STEPS
    assert len(checkpoint["rng_states"]) == 2  # both ranks' generators, for an exact resume


def test_rank_zero_alone_writes_the_report_lines(uninterrupted: Path) -> None:
    """Both ranks run the report (they sum their counts at each log step); rank 0 alone
    writes, so each line is there once."""
    text = (uninterrupted / "fit.stderr").read_text(encoding="utf-8")
    folder = uninterrupted / "checkpoints"
    for line in ("step 2/4 | epoch 1 |", "step 4/4 | epoch 1 |", "validation at step 4 |",
                 f"checkpoint at step 4: {folder / 'step000004.ckpt'}",
                 f"checkpoint at step 4: {folder / 'last.ckpt'}"):
        assert len(re.findall(rf"^transformer-mt: {re.escape(line)}", text, re.M)) == 1, line


def test_interrupted_ddp_fit_resumes_exactly(uninterrupted: Path, spm: Path,
                                             tmp_path: Path) -> None:
    stopped = ddp_fit(tmp_path, spm, *recorder_args(tmp_path / "steps", signal_at_step=2))
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    assert "Traceback" not in stopped.stderr
    assert "interrupted by SIGTERM at step 2" in stopped.stderr
    for rank in (0, 1):  # both ranks stopped after step 2
        assert [r["step"] for r in read_records(tmp_path / "steps", rank)] == [1, 2]
    resumed = ddp_fit(tmp_path, spm, "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for rank in (0, 1):
        assert read_records(tmp_path / "steps", rank) \
            == read_records(uninterrupted / "steps", rank)


# What `test` prints of its scores: the sentence count and search, BLEU and chrF, signatures.
TEST_REPORT = re.compile(r"^test: .*?\nchrF2 = [^\n]*\nsignature: [^\n]*$", re.M | re.S)


def test_ddp_test_stage_scores_every_ranks_translations_in_order(
    uninterrupted: Path, spm: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """`test` on 2 ranks: each rank translates the sentences of its own batches, and the
    scores printed are those of one process translating the whole split, so every translation
    came back to its own reference."""
    checkpoint = uninterrupted / "checkpoints" / "last.ckpt"
    argv = ["test", *tiny_fit_args(tmp_path, spm, "--ckpt_path", str(checkpoint))[1:]]
    assert main(argv) == 0
    single = TEST_REPORT.search(capsys.readouterr().out)
    assert single and single.group().startswith("test: 200 sentences of data.test")
    ranks = in_subprocess([*argv, *DDP])
    assert ranks.returncode == 0, ranks.stderr[-3000:]
    assert TEST_REPORT.findall(ranks.stdout) == [single.group()]  # printed once, by rank 0
