"""How the server answers errors, whichever layer finds them, and what every request goes
through first (`Guard`): JSON `{"error": message}` with the status that says what went wrong.

400 malformed JSON or a language pair the model does not translate (LibreTranslate's routes
answer 400 for every invalid request, as LibreTranslate does), 403 a missing or wrong API key,
413 a body, text or request over the limits, 422 a well-formed /v1 body with missing or wrong
fields or impossible options, 429 over the request rate, 503 a full queue or a draining
server (with Retry-After), 504 a request that waited longer than the timeout, 500 a bug: its
exception is logged with the request id, which the answer carries, never its text.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from transformer_mt.serving.batcher import ApiError
from transformer_mt.serving.service import Gate

log = logging.getLogger("transformer_mt.serve")


def error_response(status: int, message: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def validation_message(exc: RequestValidationError) -> tuple[int, str]:
    """400 for a body that is not JSON at all, else 422 with the first problem in one line."""
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return 400, "malformed JSON body"
    first = errors[0] if errors else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
    return 422, f"{where}: {first.get('msg', 'invalid value')}"


def install_error_handlers(app: FastAPI) -> None:
    """Every exception a route may raise on purpose becomes one JSON error answer (bugs are
    answered by `Guard`)."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(*validation_message(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), getattr(exc, "headers", None))


class BodyTooLarge(HTTPException):
    """Raised by the body reader at the first byte over the limit. An HTTPException, so that
    FastAPI's body parsing lets it through (it turns other errors into 400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body over the limit ({limit} bytes)")


class Guard:
    """A plain ASGI middleware (Starlette's BaseHTTPMiddleware costs ~0.3 ms a request) that
    gives every request an id (`X-Request-Id`), answers 503 while the server drains, counts
    the requests in flight, counts body bytes as they arrive (chunked bodies included) and
    stops at the first byte over the limit, and answers a bug with 500 and the request id,
    logging the exception."""

    def __init__(self, app: Callable, max_body: int, gate: Gate) -> None:
        self.app, self.max_body, self.gate = app, max_body, gate

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = request_id
        id_header = (b"x-request-id", request_id.encode())
        started = False

        async def send_with_id(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), id_header]
            await send(message)

        early = self.refuse(scope)
        if early is not None:
            await early(scope, receive, send_with_id)
            return
        self.gate.in_flight += 1
        try:
            await self.app(scope, self.counting(receive), send_with_id)
        except BodyTooLarge as exc:  # a route that does not answer it itself
            if not started:
                await error_response(413, str(exc.detail))(scope, receive, send_with_id)
        except Exception:  # noqa: BLE001 - a bug: log it, never show it
            log.exception("request %s (%s %s) failed", request_id, scope.get("method"),
                          scope.get("path"))
            if not started:
                await error_response(500, f"internal error (request id {request_id}; the "
                                     "server's log has the details)")(scope, receive, send_with_id)
        finally:
            self.gate.in_flight -= 1

    def refuse(self, scope: dict) -> JSONResponse | None:
        """The answer to a request refused before it is read: 503 while draining, 413 for a
        declared Content-Length over the limit."""
        if self.gate.draining:
            return error_response(503, "the server is shutting down", {"Retry-After": "5"})
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if length.isdigit() and int(length) > self.max_body:
            return error_response(413, f"request body of {length.decode()} bytes is over the "
                                  f"limit ({self.max_body} bytes)")
        return None

    def counting(self, receive: Callable) -> Callable:
        """`receive`, raising BodyTooLarge at the first byte over the limit."""
        seen = 0

        async def receive_counted() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLarge(self.max_body)
            return message

        return receive_counted
