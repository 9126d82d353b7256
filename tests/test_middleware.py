"""`middleware.Guard`, driven as an ASGI application: a bug is a 500 that carries the request
id and no exception text (which goes to the log), a body is counted as it arrives, and a
draining server refuses new requests."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from tests.conftest import import_extra

import_extra("fastapi", "serve")

from transformer_mt.serving.middleware import Guard  # noqa: E402
from transformer_mt.serving.service import Gate  # noqa: E402


def call(guard: Guard, chunks: list[bytes], headers: list | None = None) -> tuple[int, dict, dict]:
    """One request through `guard`: (status, headers, JSON body)."""
    scope = {"type": "http", "method": "POST", "path": "/v1/translate",
             "headers": headers or []}
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
                for i, c in enumerate(chunks)]
    sent: list[dict] = []

    async def receive() -> dict:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(guard(scope, receive, send))
    start, body = sent[0], b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], dict(start["headers"]), json.loads(body)


async def failing_app(scope: dict, receive, send) -> None:
    await receive()
    raise RuntimeError("secret detail /etc/passwd")


async def reading_app(scope: dict, receive, send) -> None:
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"ok": true}'})


def test_a_bug_is_a_500_with_a_request_id_and_the_details_only_in_the_log(
        caplog: pytest.LogCaptureFixture) -> None:
    gate = Gate()
    with caplog.at_level(logging.ERROR, logger="transformer_mt.serve"):
        status, headers, body = call(Guard(failing_app, 1000, gate), [b"{}"])
    request_id = headers[b"x-request-id"].decode()
    assert status == 500 and request_id in body["error"]
    assert "secret" not in body["error"] and "RuntimeError" not in body["error"]
    assert request_id in caplog.text and "secret detail" in caplog.text
    assert gate.in_flight == 0


def test_the_body_is_counted_as_it_arrives_and_draining_refuses() -> None:
    gate = Gate()
    guard = Guard(reading_app, 100, gate)
    assert call(guard, [b"x" * 60, b"x" * 40])[0] == 200  # exactly the limit
    status, _, body = call(guard, [b"x" * 60, b"x" * 41, b"x" * 10**6])
    assert status == 413 and "over the limit (100 bytes)" in body["error"]
    assert call(guard, [b"x"], [(b"content-length", b"101")])[:1] == (413,)
    gate.draining = True
    status, headers, body = call(guard, [b"{}"])
    assert (status, headers[b"retry-after"]) == (503, b"5")
    assert "shutting down" in body["error"]
