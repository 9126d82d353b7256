"""LibreTranslate's API (`POST /translate`, `GET /languages`), so that its clients work
unchanged against our server."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from transformer_mt.inference.search import SearchOptions
from transformer_mt.serving.batcher import ApiError
from transformer_mt.serving.service import TranslationService

LANGUAGE_NAMES = {
    "ar": "Arabic", "cs": "Czech", "de": "German", "en": "English", "es": "Spanish",
    "fr": "French", "it": "Italian", "ja": "Japanese", "nl": "Dutch", "pl": "Polish",
    "pt": "Portuguese", "ro": "Romanian", "ru": "Russian", "tr": "Turkish", "uk": "Ukrainian",
    "zh": "Chinese",
}


class LibreRequest(BaseModel):
    """LibreTranslate's /translate fields (api_key is accepted and ignored)."""

    model_config = ConfigDict(extra="ignore")
    q: str | list[str]
    source: str
    target: str
    format: str = "text"
    alternatives: int = 0
    api_key: str | None = None


async def read_request(request: Request) -> LibreRequest:
    """The fields of a JSON, URL-encoded or multipart body, as LibreTranslate accepts them."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.form()
        body: Any = {k: form.getlist(k) if k == "q" else form.get(k) for k in form.keys()}
        if isinstance(body.get("q"), list) and len(body["q"]) == 1:
            body["q"] = body["q"][0]
    else:
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "malformed JSON body (send JSON or a form)") from None
    try:
        return LibreRequest.model_validate(body)
    except ValueError as exc:
        raise RequestValidationError(exc.errors()) from None  # type: ignore[attr-defined]


def router(service: TranslationService) -> APIRouter:
    """The LibreTranslate routes over `service`."""
    routes = APIRouter()
    translator = service.translator
    src, tgt = translator.src_lang, translator.tgt_lang

    @routes.get("/languages")
    async def languages() -> list[dict[str, Any]]:
        return [{"code": code, "name": LANGUAGE_NAMES.get(code, code), "targets": targets}
                for code, targets in ((src, [tgt]), (tgt, []))]

    @routes.post("/translate")
    async def translate(request: Request) -> JSONResponse:
        req = await read_request(request)
        if req.source not in (src, "auto") or req.target != tgt:
            raise ApiError(400, f"language pair {req.source}-{req.target} is not available; "
                           f"this server translates {src}-{tgt}")
        if req.format != "text":
            raise ApiError(400, f"format {req.format!r} is not supported; use \"text\"")
        if not 0 <= req.alternatives <= 8:
            raise ApiError(422, "alternatives must be in 0..8")
        texts = [req.q] if isinstance(req.q, str) else req.q
        nbest = req.alternatives + 1
        results = await service.translate(
            texts, SearchOptions(beam_size=max(4, nbest), nbest=nbest))
        best = [translator.texts(hyps[:1])[0] for hyps in results]
        answer: dict[str, Any] = {"translatedText": best[0] if isinstance(req.q, str) else best}
        if req.alternatives:
            others = [translator.texts(hyps[1:]) for hyps in results]
            answer["alternatives"] = others[0] if isinstance(req.q, str) else others
        return JSONResponse(answer)

    return routes
