"""The HTTP application of `transformer-mt serve`: the page, health and info, and the API
routers (`libretranslate`, `api_v1`) over one batcher.

One process holds one model copy. Requests never run the model themselves: the routes hand
their sentences to the `Batcher` (through `TranslationService`), whose loop runs elsewhere
(`runner`). Every request passes `middleware.Guard` first (request id, drain, body limit),
and, with --cors-origins, Starlette's CORS middleware before it.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse

from transformer_mt.serving import api_v1, libretranslate
from transformer_mt.serving.access import Access
from transformer_mt.serving.batcher import Batcher
from transformer_mt.serving.middleware import Guard, install_error_handlers
from transformer_mt.serving.service import MAX_LEN_A, MAX_LEN_B, TranslationService


def info(service: TranslationService) -> dict[str, Any]:
    """GET /info: the model, the batching settings and counters, and the limits; no
    filesystem path (the checkpoint's file name only)."""
    settings, translator, batcher = service.settings, service.translator, service.batcher
    config = translator.loaded.model.config
    return {
        "source": translator.src_lang, "target": translator.tgt_lang,
        "checkpoint": Path(settings.checkpoint).name,
        "model": config.to_dict(),
        "parameters": sum(p.numel() for p in translator.loaded.model.parameters()),
        "vocabulary": {"kind": "sentencepiece", "size": translator.loaded.tokenizer.vocab_size},
        "device": str(translator.device), "quantize": settings.quantize,
        "batching": {"enabled": settings.batching, "batch_tokens": settings.batch_tokens,
                     "max_wait_ms": settings.max_wait * 1000,
                     # started so far, and the model loop's busy time (utilisation)
                     "batches_run": batcher.batches, "requests_run": batcher.requests,
                     "sentences_run": batcher.sentences, "busy_s": round(batcher.busy, 3),
                     # requests that left the queue before they ran, by reason
                     "dropped": dict(batcher.dropped)},
        "limits": {"max_chars": settings.max_chars, "max_texts": settings.max_texts,
                   "max_text_tokens": settings.max_text_tokens,
                   "max_request_tokens": settings.max_request_tokens,
                   "max_sentence_tokens": config.max_positions - 1,
                   "max_output_tokens": f"min({MAX_LEN_A:g} × source + {MAX_LEN_B}, "
                                        f"{config.max_positions - 1}) per sentence",
                   "max_beam": settings.max_beam, "max_body_bytes": settings.max_body,
                   "queue_size": settings.queue_size, "timeout_s": settings.timeout,
                   "api_keys": service.access.key_required, "req_limit": settings.req_limit},
    }


def create_app(batcher: Batcher, access: Access | None = None) -> FastAPI:
    """The FastAPI application over a batcher (whose loop runs elsewhere)."""
    service = TranslationService(batcher, access)
    settings = service.settings
    app = FastAPI(title="transformer-mt", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = service
    page = (resources.files(__package__) / "static" / "index.html").read_text("utf-8")
    install_error_handlers(app)
    app.add_middleware(Guard, max_body=settings.max_body, gate=service.gate)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "POST"], max_age=86400,
                           allow_headers=["Authorization", "Content-Type", "X-API-Key"],
                           expose_headers=["Retry-After", "X-Request-Id"])

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/health")
    async def health() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @app.get("/info")
    async def get_info() -> dict[str, Any]:
        return info(service)

    app.include_router(libretranslate.router(service))
    app.include_router(api_v1.router(service))
    return app
