"""Running `transformer-mt serve`: the model loop on the main thread, uvicorn on a second one.

MKL's CPU matrix products run at about half speed from any thread but the main one, so the
model gets the main thread. Shutdown (SIGTERM, Ctrl+C) drains: at the signal, new requests
and /health get 503 with Retry-After (a load balancer stops sending), the requests in flight
finish, then uvicorn stops and the model loop ends. A second signal stops at once.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import uvicorn

from transformer_mt.errors import UserError
from transformer_mt.inference.translator import Translator
from transformer_mt.serving.access import Access, read_api_keys
from transformer_mt.serving.app import create_app
from transformer_mt.serving.batcher import Batcher
from transformer_mt.serving.service import Gate
from transformer_mt.serving.settings import ServerSettings


def drain_then_stop(gate: Gate, server: uvicorn.Server, timeout: float) -> None:
    """Wait (in a thread of its own) until no request is in flight, then stop HTTP."""
    deadline = time.monotonic() + timeout
    while gate.in_flight > 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    server.should_exit = True


def signal_handlers(gate: Gate, server: uvicorn.Server, timeout: float) -> dict[int, Any]:
    """Install SIGTERM / SIGINT handlers that drain; return the previous handlers."""

    def handle(signum: int, frame: Any) -> None:
        if gate.draining:  # the second signal: stop now
            server.should_exit = server.force_exit = True
            return
        gate.draining = True
        threading.Thread(target=drain_then_stop, args=(gate, server, timeout),
                         name="transformer-mt-drain", daemon=True).start()

    return {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}


def serve_forever(settings: ServerSettings, host: str, port: int, log_level: str) -> None:
    """Load the model (a bad checkpoint fails here, before the port opens), then serve: HTTP
    on a thread of its own, the model on this (main) thread."""
    keys = read_api_keys(settings.api_keys) if settings.api_keys else None
    translator = Translator.from_checkpoint(settings.checkpoint, device=settings.device,
                                            quantize=settings.quantize,
                                            cpu_gemm=settings.cpu_gemm)
    batcher = Batcher(translator, settings)
    app = create_app(batcher, Access(keys, settings.req_limit))
    gate = app.state.service.gate
    server = uvicorn.Server(uvicorn.Config(
        app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=None,
        limit_concurrency=settings.limit_concurrency))

    def http() -> None:
        try:
            server.run()
        finally:
            batcher.stop()

    previous = signal_handlers(gate, server, settings.drain_timeout)
    thread = threading.Thread(target=http, name="transformer-mt-http")
    thread.start()
    try:
        while not server.started and thread.is_alive():  # requests queue until batcher.run
            time.sleep(0.02)
        if not server.started:
            thread.join()
            raise UserError(f"serve: could not start on {host}:{port} (uvicorn's message is "
                            "above; a port in use: pick another --port or stop what uses it)")
        print(f"transformer-mt: serving {translator.src_lang}-{translator.tgt_lang} on "
              f"http://{host}:{port}/ (SIGTERM or Ctrl+C stops it after the requests in "
              "flight)", flush=True)
        batcher.run()
        thread.join()
    finally:
        server.should_exit = True  # the model loop failed: stop HTTP too (no-op after a drain)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
