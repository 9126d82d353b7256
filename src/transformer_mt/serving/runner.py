"""Running `transformer-mt serve`: the model loop on the main thread, uvicorn on a second one.

MKL's CPU matrix products run at about half speed from any thread but the main one, so the
model gets the main thread. Shutdown (SIGTERM, Ctrl+C) is uvicorn's: it stops accepting
connections and waits for the requests in flight, which the model loop keeps serving; then the
loop stops.
"""

from __future__ import annotations

import signal
import threading
import time

import uvicorn

from transformer_mt.errors import UserError
from transformer_mt.inference.translator import Translator
from transformer_mt.serving.app import create_app
from transformer_mt.serving.batcher import Batcher
from transformer_mt.serving.settings import ServerSettings


def serve_forever(settings: ServerSettings, host: str, port: int, log_level: str) -> None:
    """Load the model (a bad checkpoint fails here, before the port opens), then serve: HTTP
    on a thread of its own, the model on this (main) thread. SIGTERM / SIGINT tell uvicorn to
    stop accepting and drain the requests in flight, which the model keeps serving; then the
    model loop ends too."""
    translator = Translator.from_checkpoint(settings.checkpoint, device=settings.device,
                                            quantize=settings.quantize,
                                            cpu_gemm=settings.cpu_gemm)
    batcher = Batcher(translator, settings)
    app = create_app(batcher)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level,
                                           timeout_graceful_shutdown=None))

    def http() -> None:
        try:
            server.run()
        finally:
            batcher.stop()

    previous = {sig: signal.signal(sig, server.handle_exit)
                for sig in (signal.SIGTERM, signal.SIGINT)}
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
