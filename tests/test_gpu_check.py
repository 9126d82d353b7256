"""scripts/gpu_check.sh, the one-command GPU check of issue 26, cannot rot: its `--dry-run`
runs every step on the CPU with tiny shapes (training throughput of both presets against
`transformers` with a profile, a short Multi30k fit, beam-4 BLEU of its checkpoint, decoding
against `transformers` and CTranslate2) and must write what a GPU run writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, import_extra

RESULTS = ["bleu.json", "decode.json", "fit.log", "run.log", "summary.md", "train_base.json",
           "train_big.json"]
STEPS = ["train_base", "train_big", "fit", "bleu", "decode"]


def test_usage_without_a_results_folder() -> None:
    proc = subprocess.run(["bash", "scripts/gpu_check.sh"], cwd=REPO, capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 2 and "usage: bash scripts/gpu_check.sh RESULTS_DIR" in proc.stderr


def test_dry_run_writes_every_result(tmp_path: Path, shared_data: Path) -> None:
    import_extra("ctranslate2", "export")
    out = tmp_path / "results"
    env = {**os.environ, "PYTHON": sys.executable, "TRANSFORMER_MT_DATA": str(shared_data),
           "GPU_CHECK_WORK": str(tmp_path / "work")}
    proc = subprocess.run(["bash", "scripts/gpu_check.sh", str(out), "--dry-run"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
    log = (out / "run.log").read_text() if (out / "run.log").exists() else ""
    assert proc.returncode == 0, proc.stderr[-2000:] + log[-4000:]
    # What the device tool brings back: at most 8 plain files, no sub-folder.
    assert sorted(p.name for p in out.iterdir()) == RESULTS
    assert all(p.is_file() and p.stat().st_size > 0 for p in out.iterdir())

    summary = (out / "summary.md").read_text()
    assert "DRY RUN on the CPU" in summary and "every step passed" in summary
    for step in STEPS:
        assert f"## {step}: ok," in summary, step
    assert "last.ckpt: step 4" in (out / "fit.log").read_text()

    for preset in ("base", "big"):
        train = json.loads((out / f"train_{preset}.json").read_text())
        assert train["args"]["synthetic"] and train["args"]["precision"] == "bf16-mixed"
        for system in ("ours", "transformers"):
            assert train["summary"][system]["tokens_per_s"] > 0
        assert train["summary"]["ratio_transformers"]["median"] > 0
        profile = train["runs"]["ours"][-1]["profile"]
        assert "Self CPU" in profile and profile.count("aten::") >= 10  # a top-15 table

    bleu = json.loads((out / "bleu.json").read_text())
    assert bleu["n_sentences"] == 40 and 0 <= bleu["bleu"]["score"] <= 100
    assert bleu["bleu"]["signature"].startswith("nrefs:1|case:mixed")

    decode = json.loads((out / "decode.json").read_text())
    rows = decode["results"]["4"]
    assert set(rows) == {"ours", "transformers", "ct2-float32", "ct2-int8"}
    for name, row in rows.items():
        assert row["sent_per_s"] > 0 and len(row["texts"]) == 16, name
    # The same exported weights: every system translates the same 16 sentences.
    assert decode["args"]["checkpoint"].endswith("multi30k_gpu/checkpoints/last.ckpt")


@pytest.mark.parametrize("script", ["gpu_check.sh", "gpu_carry.sh"])
def test_scripts_are_valid_bash(script: str) -> None:
    proc = subprocess.run(["bash", "-n", f"scripts/{script}"], cwd=REPO, capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
