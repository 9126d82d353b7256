"""Shared test fixtures: where the real corpora are, training-run helpers, optional extras,
and a torch thread setting for 2 cores."""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

torch.set_num_threads(min(2, os.cpu_count() or 1))

# Start of the skip reason of `import_extra`, which the terminal summary below looks for.
MISSING_EXTRA = "optional extra missing:"


def import_extra(module: str, extra: str) -> ModuleType:
    """Import `module` of the optional `extra` (pyproject.toml), or skip the calling test or
    test module, saying which extra to install.

    A module-level skip hides every test of the module behind one line. Where the extras are
    installed (CI, `CI=true`), a missing one is therefore an error, not a skip: the tests it
    would hide must run. Elsewhere the skips are listed at the end of the run.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        why = f"{MISSING_EXTRA} {module} ({exc}); pip install -e '.[{extra}]'"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"CI=true, where every extra is installed: {why}", pytrace=False)
        pytest.skip(why, allow_module_level=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say, after the results, which tests did not run for lack of an optional extra: a whole
    module skipped counts as one line in pytest's own summary."""
    reasons = sorted({
        f"{report.location[0]}: {report.longrepr[2].removeprefix('Skipped: ')}"
        for report in terminalreporter.stats.get("skipped", [])
        if isinstance(report.longrepr, tuple) and MISSING_EXTRA in report.longrepr[2]
    })
    if reasons:
        terminalreporter.section("tests not run: optional extras missing (CI=true fails here)")
        for reason in reasons:
            terminalreporter.write_line(reason)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (or $TRANSFORMER_MT_DATA); tests that need it skip, saying why, if absent."""
    path = Path(os.environ.get("TRANSFORMER_MT_DATA", REPO.parent / "shared" / "data"))
    if not (path / "multi30k").is_dir():
        pytest.skip(f"shared corpora not found at {path} (set TRANSFORMER_MT_DATA)")
    return path


@pytest.fixture(scope="module")
def nondeterministic_afterwards() -> Iterator[None]:
    """For modules that train with `trainer.deterministic`, which switches torch to
    deterministic kernels process-wide: switch them off when the module is done."""
    yield
    torch.use_deterministic_algorithms(False)


@pytest.fixture(scope="module")
def spm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One sentencepiece cache per module, shared by its training runs."""
    return tmp_path_factory.mktemp("spm")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One random tiny checkpoint (tests/_tiny_ckpt.py) for the API, evaluate and serve tests."""
    from tests._tiny_ckpt import make_tiny_checkpoint

    directory = tmp_path_factory.mktemp("tiny_checkpoint")
    return make_tiny_checkpoint(directory / "tiny.ckpt", directory / "spm")
