"""The HTTP application of `transformer-mt serve`: the page, health and info, and the API
routers (`libretranslate`, `api_v1`) over one batcher.

One process holds one model copy. Requests never run the model themselves: the routes hand
their texts to the `Batcher` (through `TranslationService`), whose loop runs elsewhere
(`runner`). Errors are JSON `{"error": message}` (`middleware`).
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse

from transformer_mt.serving import api_v1, libretranslate
from transformer_mt.serving.batcher import Batcher
from transformer_mt.serving.middleware import BodyLimit, error_response, install_error_handlers
from transformer_mt.serving.service import TranslationService


def info(service: TranslationService) -> dict[str, Any]:
    """GET /info: the model, the batching settings and counters, and the limits."""
    settings, translator, batcher = service.settings, service.translator, service.batcher
    return {
        "source": translator.src_lang, "target": translator.tgt_lang,
        "checkpoint": translator.checkpoint,
        "model": translator.loaded.model.config.to_dict(),
        "parameters": sum(p.numel() for p in translator.loaded.model.parameters()),
        "vocabulary": {"kind": "sentencepiece", "size": translator.loaded.tokenizer.vocab_size},
        "device": str(translator.device), "quantize": settings.quantize,
        "batching": {"enabled": settings.batching, "batch_tokens": settings.batch_tokens,
                     "max_wait_ms": settings.max_wait * 1000,
                     # started so far, and the model loop's busy time (utilisation)
                     "batches_run": batcher.batches, "requests_run": batcher.requests,
                     "busy_s": round(batcher.busy, 3)},
        "limits": {"max_chars": settings.max_chars, "max_texts": settings.max_texts,
                   "queue_size": settings.queue_size, "timeout_s": settings.timeout},
    }


def create_app(batcher: Batcher) -> FastAPI:
    """The FastAPI application over a batcher (whose loop runs elsewhere)."""
    service = TranslationService(batcher)
    settings = service.settings
    app = FastAPI(title="transformer-mt", docs_url=None, redoc_url=None, openapi_url=None)
    page = (resources.files(__package__) / "static" / "index.html").read_text("utf-8")
    install_error_handlers(app)
    app.add_middleware(BodyLimit,
                       max_body=settings.max_texts * (settings.max_chars * 8 + 16) + 4096)

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/health")
    async def health() -> JSONResponse:
        if batcher.stopping:
            return error_response(503, "shutting down", {"Retry-After": "5"})
        return JSONResponse({"status": "ok"})

    @app.get("/info")
    async def get_info() -> dict[str, Any]:
        return info(service)

    app.include_router(libretranslate.router(service))
    app.include_router(api_v1.router(service))
    return app
