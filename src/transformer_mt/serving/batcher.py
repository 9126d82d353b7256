"""The model's one loop: dynamic batching of concurrent requests, with no web import.

Requests never run the model themselves: they hand their texts to the `Batcher` as a `Job`,
whose loop (on the main thread; HTTP runs on another) merges what is waiting into batches by a
source-token budget (dynamic batching: the more clients, the fuller each batch, the more
sentences per second) and answers each request as soon as its own texts are done. Requests with
different search options never share a batch; a sampling request with a seed runs alone (its
samples must not depend on its neighbours). A failing merged batch is retried request by
request, so a bad request cannot spoil another one's result or stop the model loop.

Only asyncio, threading and torch are imported here, so the batching rules are tested without
the `serve` extra.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from transformer_mt.inference.search import Hypothesis, SearchOptions
from transformer_mt.inference.translator import Translator
from transformer_mt.serving.settings import ServerSettings


class ApiError(Exception):
    """An error answer: status, one-line message, extra headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


@dataclass(eq=False, kw_only=True)
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
