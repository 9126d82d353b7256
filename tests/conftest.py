"""Shared test fixtures: where the real corpora are, training-run helpers, and a torch thread
setting for 2 cores."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

torch.set_num_threads(min(2, os.cpu_count() or 1))


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
