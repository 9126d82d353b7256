"""What the routes learn about the client of a request: its API key, whether it may call now
(`Access`), and when it goes away (so that its job is dropped before it runs)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

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


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def gone(request: Request) -> Callable[[], Awaitable[None]]:
    """A function whose awaitable returns when the client disconnects (watched only once the
    body has been read and the job queued: the next message of the connection is its end)."""
    return lambda: _disconnected(request)
