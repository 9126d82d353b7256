"""Shared test fixtures: where the real corpora are, and a torch thread setting for 2 cores."""

from __future__ import annotations

import os
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
