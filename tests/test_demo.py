"""`make demo` end to end (train, average, translate, score) at a reduced step count."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from tests.conftest import REPO


def load_demo():
    spec = importlib.util.spec_from_file_location("demo", REPO / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_pipeline(tmp_path: Path, capsys: pytest.CaptureFixture,
                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the spm cache and any stray output land in the tmp dir
    run_dir = tmp_path / "run"
    assert load_demo().main(["--run-dir", str(run_dir), "--steps", "40", "--average", "2",
                             "--samples", "2", "--test-lines", "20", "--no-progress-bar"]) == 0
    out = capsys.readouterr().out
    hypotheses = (run_dir / "test.hyp.de").read_text(encoding="utf-8").split("\n")
    assert len(hypotheses) == 21 and hypotheses[-1] == ""  # one line per input line
    assert (run_dir / "averaged.ckpt").is_file()
    assert re.search(r"^BLEU = \d+\.\d+ ", out, re.MULTILINE)
    assert re.search(r"nrefs:1\|case:mixed\|eff:no\|tok:13a\|smooth:exp\|version:", out)
    assert out.count("  EN  ") == 2
    assert "$ transformer-mt average --run-dir" in out
