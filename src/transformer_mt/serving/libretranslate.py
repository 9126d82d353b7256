"""LibreTranslate's API as its clients use it (browser extensions, libretranslatepy, its web
UI, tools that speak it): `POST /translate` (`source: "auto"` with `detectedLanguage`,
`format: "html"`, `alternatives`), `POST /detect`, `GET /languages`, `GET /frontend/settings`.

Parameters are read as LibreTranslate reads them: from a JSON body, a form (URL-encoded or
multipart) or the query string; language codes with a region (`de-DE`, `pt_BR`) mean their
language. Every invalid request is a 400 with `{"error": ...}`, as in LibreTranslate (which
checks q, source, target, format, alternatives and the character limit, in that order), 403 a
missing or wrong API key, 429 over the rate limit.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from transformer_mt.inference.search import SearchOptions
from transformer_mt.serving import html_text
from transformer_mt.serving.batcher import ApiError
from transformer_mt.serving.client import admit, gone
from transformer_mt.serving.service import TranslationService, language_name

MAX_ALTERNATIVES = 8
FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


async def read_params(request: Request) -> dict[str, Any]:
    """The request's parameters: the query string, then the JSON body or form on top."""
    params: dict[str, Any] = {k: v[0] if len(v) == 1 else v for k in request.query_params
                              if (v := request.query_params.getlist(k))}
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in FORMS:
        form = await request.form()
        params.update({k: v[0] if len(v) == 1 else v for k in form.keys()
                       if (v := [x for x in form.getlist(k) if isinstance(x, str)])})
        return params
    raw = await request.body()
    if raw.strip():
        try:
            body = json.loads(raw, parse_constant=_no_constant)
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "Invalid request: malformed JSON body (send JSON or a "
                           "form)") from None
        if not isinstance(body, dict):
            raise ApiError(400, "Invalid JSON format: expected an object")
        params.update(body)
    return params


def language_code(value: Any) -> str | None:
    """`de-DE`, `de_de` and `DE` mean `de`; `auto` stays; anything else is None."""
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip().lower().replace("_", "-").split("-")[0]


def texts_of(params: dict[str, Any]) -> tuple[list[str], bool]:
    """The texts of `q` and whether it was a single string; 400 when missing or empty."""
    q = params.get("q")
    if q is None or q == "" or q == []:
        raise ApiError(400, "Invalid request: missing q parameter")
    if isinstance(q, str):
        return [q], True
    if isinstance(q, list) and all(isinstance(t, str) for t in q):
        return q, False
    raise ApiError(400, "Invalid request: q must be a string or a list of strings")


def alternatives_of(params: dict[str, Any]) -> int:
    """The number of alternatives asked for, 0 .. MAX_ALTERNATIVES; 400 otherwise."""
    value = params.get("alternatives", 0)
    try:
        if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
            raise ValueError
        count = max(0, int(value))
    except (TypeError, ValueError):
        raise ApiError(400, "Invalid request: alternatives parameter is not a number") from None
    if count > MAX_ALTERNATIVES:
        raise ApiError(400, f"Invalid request: alternatives parameter must be <= "
                       f"{MAX_ALTERNATIVES}")
    return count


@contextmanager
def libretranslate_errors() -> Iterator[None]:
    """The service's 413 and 422 answers become LibreTranslate's 400."""
    try:
        yield
    except ApiError as exc:
        if exc.status in (413, 422):
            raise ApiError(400, f"Invalid request: {exc.message}") from None
        raise


def check_pair(params: dict[str, Any], src: str, tgt: str) -> str:
    """The source code asked for (`auto` or the model's source); 400 otherwise."""
    source, target = language_code(params.get("source")), language_code(params.get("target"))
    for name, code in (("source", source), ("target", target)):
        if code is None:
            raise ApiError(400, f"Invalid request: missing {name} parameter")
    unsupported = source if source not in (src, "auto") else target if target != tgt else None
    if unsupported is not None:
        raise ApiError(400, f"{unsupported} is not supported: this server translates "
                       f"{language_name(src)} ({src}) to {language_name(tgt)} ({tgt})")
    fmt = params.get("format") or "text"
    if fmt not in ("text", "html"):
        raise ApiError(400, f"{fmt} format is not supported (use text or html)")
    return source  # type: ignore[return-value]


async def translate_html(service: TranslationService, documents: list[str],
                         request: Request) -> list[str]:
    """Each HTML document with its text nodes translated (`html_text`)."""
    nodes = await service.off_loop(lambda: [html_text.text_nodes(d) for d in documents])
    flat = [node.text for doc in nodes for node in doc]
    results = []
    if flat:
        with libretranslate_errors():
            results = await service.translate_checked(flat, SearchOptions(), gone=gone(request))
    out, start = [], 0
    for document, doc_nodes in zip(documents, nodes, strict=True):
        end = start + len(doc_nodes)
        out.append(html_text.rebuild(document, doc_nodes,
                                     [r.nbest[0].text for r in results[start:end]]))
        start = end
    return out


def router(service: TranslationService) -> APIRouter:
    """The LibreTranslate routes over `service`."""
    routes = APIRouter()
    src, tgt = service.translator.src_lang, service.translator.tgt_lang

    @routes.get("/languages")
    async def languages() -> list[dict[str, Any]]:
        return [{"code": code, "name": language_name(code), "targets": targets}
                for code, targets in ((src, [tgt]), (tgt, []))]

    @routes.get("/frontend/settings")
    async def frontend_settings() -> dict[str, Any]:
        keys = service.access.key_required
        return {"charLimit": service.settings.max_chars,
                "frontendTimeout": int(service.settings.timeout * 1000),
                "apiKeys": keys, "keyRequired": keys, "suggestions": False,
                "filesTranslation": False, "supportedFilesFormat": [],
                "language": {"source": {"code": src, "name": language_name(src)},
                             "target": {"code": tgt, "name": language_name(tgt)}}}

    @routes.post("/detect")
    async def detect(request: Request) -> JSONResponse:
        params = await read_params(request)
        admit(service, request, params.get("api_key"))
        texts, single = texts_of(params)
        with libretranslate_errors():
            service.check_texts(texts)
        found = await service.off_loop(lambda: [service.detect(t) for t in texts])
        return JSONResponse(found[0] if single else found)

    @routes.post("/translate")
    async def translate(request: Request) -> JSONResponse:
        params = await read_params(request)
        admit(service, request, params.get("api_key"))
        texts, single = texts_of(params)
        source = check_pair(params, src, tgt)
        count = alternatives_of(params)
        with libretranslate_errors():
            service.check_texts(texts)
        answer: dict[str, Any] = {}
        if source == "auto":
            found = await service.off_loop(service.source_language, texts)
            answer["detectedLanguage"] = found[0] if single else found
        if params.get("format") == "html":
            best = await translate_html(service, texts, request)
            others: list = [[] for _ in texts]
        else:
            nbest = count + 1
            with libretranslate_errors():
                results = await service.translate(
                    texts, SearchOptions(beam_size=max(4, nbest), nbest=nbest),
                    gone=gone(request))
            best = [r.nbest[0].text for r in results]
            others = [[h.text for h in r.nbest[1:]] for r in results]
        answer["translatedText"] = best[0] if single else best
        if count:
            answer["alternatives"] = others[0] if single else others
        return JSONResponse(answer)

    return routes
