"""What the routes learn about the client of a request: its API key, whether it may call now
(`Access`), and when it goes away (so that its job is dropped before it runs)."""

from __future__ import annotations

from fastapi import Request

from transformer_mt.serving.service import TranslationService


def api_key(request: Request, in_body: str | None = None) -> str | None:
    """The key of a request: the body's or query's `api_key` (LibreTranslate's way), else an
    `Authorization: Bearer KEY` or `X-API-Key` header."""
    if in_body:
        return in_body
    if key := request.query_params.get("api_key"):
        return key
    bearer = request.headers.get("authorization", "")
    if bearer.lower().startswith("bearer "):
        return bearer[7:].strip()
    return request.headers.get("x-api-key")


def admit(service: TranslationService, request: Request, in_body: str | None = None) -> None:
    """403 / 429 unless this client may call the API now."""
    address = request.client.host if request.client else "unknown"
    service.access.check(api_key(request, in_body), address)


async def gone(request: Request) -> None:
    """Returns when the client disconnects (call it once the body has been read: the next
    message of the connection is then its end)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
