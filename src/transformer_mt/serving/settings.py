"""What `transformer-mt serve` was told: one record the batcher, the routes and the runner
read, so that no limit is stated twice."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class ServerSettings:
    """Everything `transformer-mt serve` was told (see its --help)."""

    checkpoint: str
    device: str = "auto"
    quantize: str | None = None
    cpu_gemm: str = "auto"
    batch_tokens: int = 4096
    max_wait: float = 0.01  # seconds
    batching: bool = True
    max_chars: int = 2000
    max_texts: int = 64
    queue_size: int = 256
    timeout: float = 30.0  # seconds
