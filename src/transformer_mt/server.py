"""The HTTP application of `transformer-mt serve`: FastAPI routes over one model and one batcher.

One process holds one model copy. Requests never run the model themselves: they hand their
texts to the `Batcher`, whose loop (on the main thread; HTTP runs on another) merges what is
waiting into batches by a source-token budget (dynamic batching: the more clients, the fuller
each batch, the more sentences per second) and answers each request as soon as its own texts
are done. Requests with different search options never share a batch; a sampling request with
a seed runs alone (its samples must not depend on its neighbours). A failing merged batch is
retried request by request, so a bad request cannot spoil another one's result or stop the
model loop.

Errors are JSON `{"error": message}` with the status that says what went wrong: 400 malformed
JSON or a language pair the model does not translate, 422 a well-formed body with missing or
wrong fields or impossible options, 413 a text or request over the limits, 503 a full queue
(with Retry-After), 504 a request that waited longer than the timeout.

Shutdown (SIGTERM, Ctrl+C) is uvicorn's: it stops accepting connections and waits for the
requests in flight, which the model loop keeps serving; then the loop stops.
"""

from __future__ import annotations

import asyncio
import json
import math
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from typing import Any, get_type_hints

import torch
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, create_model
from starlette.exceptions import HTTPException

from transformer_mt.decoding import Hypothesis, SearchOptions
from transformer_mt.errors import UserError
from transformer_mt.translator import Translator

LANGUAGE_NAMES = {
    "ar": "Arabic", "cs": "Czech", "de": "German", "en": "English", "es": "Spanish",
    "fr": "French", "it": "Italian", "ja": "Japanese", "nl": "Dutch", "pl": "Polish",
    "pt": "Portuguese", "ro": "Romanian", "ru": "Russian", "tr": "Turkish", "uk": "Ukrainian",
    "zh": "Chinese",
}


@dataclass(frozen=True)
class ServerSettings:
    """Everything `transformer-mt serve` was told (see its --help)."""

    checkpoint: str
    device: str = "auto"
    quantize: str | None = None
    cpu_gemm: str = "auto"
    batch_tokens: int = 4096
    max_wait: float = 0.01  # seconds
    batching: bool = True
    max_chars: int = 2000
    max_texts: int = 64
    queue_size: int = 256
    timeout: float = 30.0  # seconds


class ApiError(Exception):
    """An error answer: status, one-line message, extra headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


@dataclass(eq=False)
class Job:
    """One request's work: texts to translate with `options`, or, when `call` is set, a
    function to run alone on the translator (attention). The model loop fills in `future`, as
    soon as the last of the job's texts is done (not when its whole batch is)."""

    loop: asyncio.AbstractEventLoop
    texts: list[str] = field(default_factory=list)
    options: SearchOptions = SearchOptions()
    seed: int | None = None
    tokens: int = 0
    call: Callable[[Translator], Any] | None = None
    future: asyncio.Future = field(init=False)
    arrived: float = field(default_factory=time.monotonic)
    abandoned: bool = False  # its request timed out: skip it if it has not started
    results: list[list[Hypothesis] | None] = field(init=False)
    left: int = field(init=False)  # texts still being translated

    def __post_init__(self) -> None:
        self.future = self.loop.create_future()
        self.begin()

    def begin(self) -> None:
        """Forget any partial results (a failed merged batch runs again job by job)."""
        self.results, self.left = [None] * len(self.texts), len(self.texts)

    def collect(self, k: int, hypotheses: list[Hypothesis]) -> None:
        """Keep text k's n-best list; answer the request once every text has one."""
        self.results[k] = hypotheses
        self.left -= 1
        if self.left == 0:
            self.finish(self.results)

    @property
    def alone(self) -> bool:
        """Must run in a batch of its own."""
        return self.call is not None or (self.options.sampling and self.seed is not None)

    def finish(self, result: Any = None, error: BaseException | None = None) -> None:
        """Hand the result (or error) to the waiting request, from the model loop."""

        def settle() -> None:
            if self.future.done():  # the request gave up (timeout) meanwhile
                return
            if error is None:
                self.future.set_result(result)
            else:
                self.future.set_exception(error)

        try:
            self.loop.call_soon_threadsafe(settle)
        except RuntimeError:  # the HTTP loop has ended (a forced stop): nobody is waiting
            pass


class Batcher:
    """The model's one loop, fed by a bounded queue of jobs. `run` is called on the main
    thread: MKL's matrix products run at about half speed from any other thread (measured
    with 2 threads, docs/benchmarks.md), so HTTP gets the other thread."""

    def __init__(self, translator: Translator, settings: ServerSettings) -> None:
        self.translator = translator
        self.settings = settings
        self.pending: deque[Job] = deque()
        self.cond = threading.Condition()
        self.stopping = False
        self.batches = 0
        self.requests = 0  # jobs run, in all batches
        self.busy = 0.0  # seconds the model loop spent running batches (utilisation)
        self.free_since = 0.0  # when the last batch ended
        self.last_size = 0  # requests in the last batch

    def stop(self) -> None:
        """Refuse new jobs; `run` returns once the queued ones are done."""
        with self.cond:
            self.stopping = True
            self.cond.notify()

    def submit(self, job: Job) -> None:
        """Queue a job, or refuse it with 503 when the queue is full or the server stops."""
        with self.cond:
            if self.stopping:
                raise ApiError(503, "the server is shutting down", {"Retry-After": "5"})
            if len(self.pending) >= self.settings.queue_size:
                raise ApiError(503, f"too many requests waiting ({self.settings.queue_size}); "
                               "retry shortly", {"Retry-After": "1"})
            self.pending.append(job)
            self.cond.notify()

    def _select(self) -> tuple[list[Job], bool]:
        """The oldest job and the waiting jobs that can share its batch, oldest first, within
        the token budget; and whether the batch is full (nothing more may join)."""
        first = self.pending[0]
        if first.alone or not self.settings.batching:
            return [first], True
        batch, tokens = [first], first.tokens
        for job in list(self.pending)[1:]:
            if job.alone or job.options != first.options:
                continue
            if tokens + job.tokens > self.settings.batch_tokens:
                return batch, True
            batch.append(job)
            tokens += job.tokens
        return batch, tokens >= self.settings.batch_tokens

    def _next_batch(self) -> list[Job] | None:
        """Wait until a batch should start, take it off the queue; None once stopping with
        nothing left. A batch starts when one of these holds:
        - its token budget is full;
        - it has as many requests as the last batch (none before the first): that batch's
          clients are back. Clients that wait for each answer before sending again would
          otherwise split into two cohorts of half-size batches that take turns, and a lone
          client would wait max_wait for nobody at every request;
        - its oldest request has waited max_wait, counted from the later of its arrival and
          the end of the last batch (so the clients just answered have time to come back).
        """
        with self.cond:
            while True:
                for job in [j for j in self.pending if j.abandoned]:
                    self.pending.remove(job)
                if not self.pending:
                    if self.stopping:
                        return None
                    self.cond.wait()
                    continue
                batch, full = self._select()
                start = max(self.pending[0].arrived, self.free_since)
                wait = start + self.settings.max_wait - time.monotonic()
                back = 0 < self.last_size <= len(batch)
                if full or back or wait <= 0 or self.stopping:
                    for job in batch:
                        self.pending.remove(job)
                    self.last_size = len(batch)
                    return batch
                self.cond.wait(wait)

    def run(self) -> None:
        """Run batches until `stop` and an empty queue."""
        while (batch := self._next_batch()) is not None:
            self.batches += 1
            self.requests += len(batch)
            started = time.monotonic()
            self._run(batch)
            self.free_since = time.monotonic()
            self.busy += self.free_since - started

    def _run(self, batch: list[Job]) -> None:
        """Translate a batch, answering each job as soon as its texts are done; a failing
        merged batch is retried job by job (those not answered yet), so that only the job at
        fault gets the error."""
        first = batch[0]
        try:
            if first.call is not None:
                first.finish(first.call(self.translator))
                return
            generator = None
            if first.seed is not None:
                generator = torch.Generator(device=self.translator.device)
                generator.manual_seed(first.seed)
            owners = []  # text index in the batch -> (job, index in the job)
            for job in batch:
                job.begin()
                owners += [(job, k) for k in range(len(job.texts))]
            self.translator.search(
                [job.texts[k] for job, k in owners], first.options,
                batch_tokens=self.settings.batch_tokens, generator=generator,
                on_finished=lambda i, hypotheses: owners[i][0].collect(owners[i][1], hypotheses),
            )
        except Exception as exc:  # noqa: BLE001 - any failure must reach its request
            if len(batch) > 1:
                for job in batch:
                    if job.left:
                        self._run([job])
            else:
                first.finish(error=exc)


# Body of POST /v1/translate: the texts, every search option of `translate` (the fields of
# SearchOptions, so the two never drift apart) and a sampling seed.
V1Request = create_model(
    "V1Request", __config__=ConfigDict(extra="forbid"), text=(str | list[str], ...),
    seed=(int | None, None),
    **{f.name: (get_type_hints(SearchOptions)[f.name], f.default) for f in fields(SearchOptions)},
)


class AttentionRequest(BaseModel):
    """Body of POST /v1/attention: a source text and, optionally, the translation to explain
    (default: the model's greedy translation)."""

    model_config = ConfigDict(extra="forbid")
    text: str
    translation: str | None = None


class LibreRequest(BaseModel):
    """LibreTranslate's /translate fields (api_key is accepted and ignored)."""

    model_config = ConfigDict(extra="ignore")
    q: str | list[str]
    source: str
    target: str
    format: str = "text"
    alternatives: int = 0
    api_key: str | None = None


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> tuple[int, str]:
    """400 for a body that is not JSON at all, else 422 with the first problem in one line."""
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return 400, "malformed JSON body"
    first = errors[0] if errors else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
    return 422, f"{where}: {first.get('msg', 'invalid value')}"


class BodyLimit:
    """413 for a body whose Content-Length is over the limit, before it is read. A plain ASGI
    middleware: Starlette's BaseHTTPMiddleware costs ~0.3 ms a request."""

    def __init__(self, app: Callable, max_body: int) -> None:
        self.app, self.max_body = app, max_body

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http":
            length = dict(scope["headers"]).get(b"content-length", b"0")
            if length.isdigit() and int(length) > self.max_body:
                response = _error(413, f"request body of {length.decode()} bytes is over the "
                                  f"limit ({self.max_body} bytes)")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(batcher: Batcher) -> FastAPI:
    """The FastAPI application over a batcher (whose loop runs elsewhere)."""
    settings, translator = batcher.settings, batcher.translator
    src, tgt = translator.src_lang, translator.tgt_lang
    config = translator.loaded.model.config
    app = FastAPI(title="transformer-mt", docs_url=None, redoc_url=None, openapi_url=None)
    page = (resources.files("transformer_mt") / "static" / "index.html").read_text("utf-8")
    max_body = settings.max_texts * (settings.max_chars * 8 + 16) + 4096

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(*_validation_message(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        return _error(500, f"internal error: {type(exc).__name__}: {exc}"[:300])

    app.add_middleware(BodyLimit, max_body=max_body)

    def check_texts(texts: list[str]) -> None:
        if not texts:
            raise ApiError(422, "no text to translate")
        if len(texts) > settings.max_texts:
            raise ApiError(413, f"{len(texts)} texts in one request; the limit is "
                           f"{settings.max_texts}")
        for i, text in enumerate(texts):
            if len(text) > settings.max_chars:
                raise ApiError(413, f"text {i} has {len(text)} characters; the limit is "
                               f"{settings.max_chars}")

    async def wait_for(job: Job) -> Any:
        batcher.submit(job)
        try:
            return await asyncio.wait_for(asyncio.shield(job.future), settings.timeout)
        except asyncio.TimeoutError:
            job.abandoned = True
            raise ApiError(504, f"the translation took longer than {settings.timeout:g} s; "
                           "retry, or send shorter texts") from None

    async def translate(texts: list[str], options: SearchOptions,
                        seed: int | None = None) -> list[list[Hypothesis]]:
        check_texts(texts)
        try:
            options.check()
        except ValueError as exc:
            raise ApiError(422, str(exc)) from None
        job = Job(asyncio.get_running_loop(), texts, options, seed,
                  tokens=sum(translator.count_tokens(texts)))
        return await wait_for(job)

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/health")
    async def health() -> JSONResponse:
        if batcher.stopping:
            return _error(503, "shutting down", {"Retry-After": "5"})
        return JSONResponse({"status": "ok"})

    @app.get("/info")
    async def info() -> dict[str, Any]:
        return {
            "source": src, "target": tgt, "checkpoint": translator.checkpoint,
            "model": config.to_dict(),
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

    @app.get("/languages")
    async def languages() -> list[dict[str, Any]]:
        return [{"code": code, "name": LANGUAGE_NAMES.get(code, code), "targets": targets}
                for code, targets in ((src, [tgt]), (tgt, []))]

    @app.post("/translate")
    async def libre_translate(request: Request) -> JSONResponse:
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
            req = LibreRequest.model_validate(body)
        except ValueError as exc:
            raise RequestValidationError(exc.errors()) from None  # type: ignore[attr-defined]
        if req.source not in (src, "auto") or req.target != tgt:
            raise ApiError(400, f"language pair {req.source}-{req.target} is not available; "
                           f"this server translates {src}-{tgt}")
        if req.format != "text":
            raise ApiError(400, f"format {req.format!r} is not supported; use \"text\"")
        if not 0 <= req.alternatives <= 8:
            raise ApiError(422, "alternatives must be in 0..8")
        texts = [req.q] if isinstance(req.q, str) else req.q
        nbest = req.alternatives + 1
        results = await translate(texts, SearchOptions(beam_size=max(4, nbest), nbest=nbest))
        best = [translator.texts(hyps[:1])[0] for hyps in results]
        answer: dict[str, Any] = {"translatedText": best[0] if isinstance(req.q, str) else best}
        if req.alternatives:
            others = [translator.texts(hyps[1:]) for hyps in results]
            answer["alternatives"] = others[0] if isinstance(req.q, str) else others
        return JSONResponse(answer)

    @app.post("/v1/translate")
    async def v1_translate(req: V1Request) -> dict[str, Any]:  # type: ignore[valid-type]
        started = time.perf_counter()
        texts = [req.text] if isinstance(req.text, str) else req.text
        options = SearchOptions(**req.model_dump(exclude={"text", "seed"}))
        results = await translate(texts, options, req.seed if req.sampling else None)
        translations = []
        for hyps in results:
            scored = [asdict(s) for s in translator.scored(hyps)]
            for entry in scored:  # an empty text's hypothesis has score 0; -inf is not JSON
                entry["score"] = entry["score"] if math.isfinite(entry["score"]) else None
            translations.append({**scored[0], "nbest": scored})
        return {"source": src, "target": tgt, "translations": translations,
                "time_ms": round((time.perf_counter() - started) * 1000, 1)}

    @app.post("/v1/attention")
    async def v1_attention(req: AttentionRequest) -> dict[str, Any]:
        check_texts([req.text])

        def cross_attention(tr: Translator) -> dict[str, Any]:
            from transformer_mt.attention import attention_arrays, sentence_ids

            try:
                src_ids, tgt_ids = sentence_ids(tr.loaded, req.text, req.translation)
            except UserError as exc:
                raise ApiError(422, str(exc).replace("--src", "text").replace(
                    "--tgt", "translation")) from None
            arrays, tokens = attention_arrays(tr.loaded, src_ids, tgt_ids)
            return {
                "source_tokens": tokens["source_tokens"],
                "target_tokens": tokens["target_tokens"],
                "translation": tr.loaded.tokenizer.decode([tgt_ids])[0],
                # (layers, target, source): the mean over heads, as `attention` draws it
                "cross": arrays["cross"].mean(axis=1).round(4).tolist(),
            }

        return await wait_for(Job(asyncio.get_running_loop(), call=cross_attention))

    return app


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
