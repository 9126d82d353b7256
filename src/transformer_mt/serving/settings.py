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
    batch_tokens: int = 16384  # decoder rows × source tokens of one batch (beam 4: 4,096 tokens)
    max_wait: float = 0.01  # seconds
    batching: bool = True
    max_chars: int = 2000
    max_texts: int = 64
    max_text_tokens: int = 1024  # subword tokens of one text (all its sentences)
    max_request_tokens: int = 8192  # subword tokens of all texts of one request
    max_beam: int = 16  # beam size, and samples drawn per sentence
    queue_size: int = 256
    timeout: float = 30.0  # seconds
    limit_concurrency: int = 1024  # connections and requests at once (uvicorn: 503 beyond)
    api_keys: str | None = None  # file of keys (and their requests per minute), or none
    req_limit: int = 0  # requests per minute per key, or per address without keys; 0 = off
    cors_origins: tuple[str, ...] = ()
    drain_timeout: float = 60.0  # seconds a drain waits for requests in flight

    @property
    def max_body(self) -> int:
        """The largest request body accepted, in bytes: the largest request of valid texts
        (4 bytes per character as UTF-8, doubled for JSON escapes) and room for options."""
        return self.max_texts * (self.max_chars * 8 + 16) + 4096
