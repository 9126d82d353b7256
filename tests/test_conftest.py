"""`conftest.import_extra`: a missing optional extra skips its tests visibly, and fails CI.

Run through a child pytest on a throw-away test module whose extra is missing, with the
project's conftest loaded as a plugin, since what matters is what the whole run reports.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

MODULE = '''
from tests.conftest import import_extra

import_extra("transformer_mt_no_such_module", "viz")


def test_hidden() -> None:
    pass
'''


def run_pytest(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess:
    """A child pytest on a module that needs a missing extra, beside one that needs none."""
    (tmp_path / "test_needs_extra.py").write_text(MODULE)
    (tmp_path / "test_plain.py").write_text("def test_runs() -> None:\n    pass\n")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-q", "-p", "no:cacheprovider",
         "test_needs_extra.py", "test_plain.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )


def test_a_missing_extra_is_reported_at_the_end(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, ci=None)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = result.stdout.split("tests not run: optional extras missing")[-1]
    assert "test_needs_extra.py: optional extra missing: transformer_mt_no_such_module" in summary
    assert "pip install -e '.[viz]'" in summary


@pytest.mark.parametrize("ci", ["true", "1"])
def test_a_missing_extra_fails_ci(tmp_path: Path, ci: str) -> None:
    result = run_pytest(tmp_path, ci=ci)
    assert result.returncode == pytest.ExitCode.INTERRUPTED  # a collection error
    assert "CI=true, where every extra is installed" in result.stdout
    assert "1 skipped" not in result.stdout
