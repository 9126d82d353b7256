"""The model's one loop: dynamic batching of the sentences of concurrent requests, with no
web import.

Requests never run the model themselves: they hand their sentences (already tokenized) to the
`Batcher` as a `Job`, whose loop (on the main thread; HTTP runs on another) merges what is
waiting into batches. The unit of scheduling is the sentence, not the request: a batch takes
sentences from every waiting request in turn (round robin, oldest request first) until its
budget of beam × source tokens is full, so a 200-sentence document shares each batch with the
one-line requests that arrived after it instead of holding them back, and a request is
answered as soon as its last sentence is done. Requests with different search options never
share a batch; a sampling request with a seed runs alone (its samples must not depend on its
neighbours). A failing merged batch is retried request by request, so a bad request cannot
spoil another one's result or stop the model loop. A request that timed out or whose client
went away leaves the queue at once (`cancel`): what it had not started never runs.

Only asyncio, threading and torch are imported here, so the batching rules are tested without
the `serve` extra.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter, deque
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


def rows_per_sentence(options: SearchOptions) -> int:
    """How many decoder rows one sentence occupies: the beam, or the samples drawn."""
    return options.nbest if options.sampling else options.beam_size


@dataclass(eq=False, kw_only=True)
class Job:
    """One request's work: sentences to translate with `options` (their subword ids in `ids`,
    their source lengths with EOS in `tokens`), or, when `call` is set, a function to run alone
    on the translator (attention). The model loop fills in `future` as soon as the last of the
    job's sentences is done (not when its batch is)."""

    loop: asyncio.AbstractEventLoop
    texts: list[str] = field(default_factory=list)
    ids: list[list[int]] | None = None
    tokens: list[int] = field(default_factory=list)
    options: SearchOptions = SearchOptions()
    seed: int | None = None
    call: Callable[[Translator], Any] | None = None
    future: asyncio.Future = field(init=False)
    arrived: float = field(default_factory=time.monotonic)
    scheduled: int = 0  # sentences handed to a batch so far (in order)
    failed: bool = False  # answered with an error: the rest of it never runs
    results: list[list[Hypothesis] | None] = field(init=False)
    left: int = field(init=False)  # sentences still being translated
    costs: list[int] = field(init=False)  # each sentence's share of a batch budget

    def __post_init__(self) -> None:
        self.future = self.loop.create_future()
        self.results, self.left = [None] * len(self.texts), len(self.texts)
        rows = rows_per_sentence(self.options)  # decoder rows × source tokens
        self.costs = [rows * n for n in self.tokens]

    @property
    def alone(self) -> bool:
        """Must run in a batch of its own."""
        return self.call is not None or (self.options.sampling and self.seed is not None)

    def collect(self, k: int, hypotheses: list[Hypothesis]) -> None:
        """Keep sentence k's n-best list; answer the request once every sentence has one."""
        if self.results[k] is not None:
            return
        self.results[k] = hypotheses
        self.left -= 1
        if self.left == 0:
            self.finish(self.results)

    def finish(self, result: Any = None, error: BaseException | None = None) -> None:
        """Hand the result (or error) to the waiting request, from the model loop."""
        self.failed = self.failed or error is not None

        def settle() -> None:
            if self.future.done():  # the request gave up (timeout, disconnect) meanwhile
                return
            if error is None:
                self.future.set_result(result)
            else:
                self.future.set_exception(error)

        try:
            self.loop.call_soon_threadsafe(settle)
        except RuntimeError:  # the HTTP loop has ended (a forced stop): nobody is waiting
            pass


# A batch: (job, sentence index in the job) for every sentence it translates.
Batch = list[tuple[Job, int]]


class Batcher:
    """The model's one loop, fed by a bounded queue of jobs. `run` is called on the main
    thread: MKL's matrix products run at about half speed from any other thread (measured
    with 2 threads, docs/benchmarks.md), so HTTP gets the other thread."""

    def __init__(self, translator: Translator, settings: ServerSettings) -> None:
        self.translator = translator
        self.settings = settings
        self.pending: deque[Job] = deque()  # jobs with sentences not yet in a batch
        self.cond = threading.Condition()
        self.stopping = False
        self.batches = 0
        self.requests = 0  # jobs started, in all batches
        self.sentences = 0  # sentences run, in all batches
        self.busy = 0.0  # seconds the model loop spent running batches (utilisation)
        self.dropped: Counter[str] = Counter()  # jobs dropped before they ran, by reason
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
                self.dropped["queue full"] += 1
                raise ApiError(503, f"too many requests waiting ({self.settings.queue_size}); "
                               "retry shortly", {"Retry-After": "1"})
            self.pending.append(job)
            self.cond.notify()

    def cancel(self, job: Job, reason: str) -> None:
        """Take a job whose request gave up (timeout, disconnect) off the queue: what it has
        not started never runs, and it no longer counts against the queue size."""
        with self.cond:
            if job in self.pending:
                self.pending.remove(job)
                self.dropped[reason] += 1

    def _select(self) -> tuple[Batch, bool]:
        """The sentences of the next batch and whether it is full (nothing more may join).
        Sentences are taken in turn from the oldest job and every waiting job that can share
        its batch, within the budget of rows × tokens."""
        first = self.pending[0]
        if first.call is not None:
            return [(first, 0)], True
        if first.alone or not self.settings.batching:
            return [(first, k) for k in range(first.scheduled, len(first.texts))], True
        jobs = [j for j in self.pending if not j.alone and j.options == first.options]
        cursor = {id(job): job.scheduled for job in jobs}
        batch: Batch = []
        used, budget = 0, self.settings.batch_tokens
        while True:
            took = False
            for job in jobs:
                k = cursor[id(job)]
                if k == len(job.texts):
                    continue
                cost = job.costs[k]
                if batch and used + cost > budget:
                    return batch, True
                batch.append((job, k))
                cursor[id(job)], used, took = k + 1, used + cost, True
            if not took:
                return batch, used >= budget

    def _take(self, batch: Batch) -> None:
        """Mark the batch's sentences as scheduled; jobs with none left leave the queue."""
        started = {id(job) for job, _ in batch if job.scheduled == 0}
        self.requests += len(started)
        for job, k in batch:
            job.scheduled = k + 1
        for job in {id(job): job for job, _ in batch}.values():
            if job.scheduled == len(job.texts) or job.alone:
                self.pending.remove(job)
        self.last_size = len({id(job) for job, _ in batch})

    def _next_batch(self) -> Batch | None:
        """Wait until a batch should start, take it off the queue; None once stopping with
        nothing left. A batch starts when one of these holds:
        - its budget is full;
        - it has as many requests as the last batch (none before the first): that batch's
          clients are back. Clients that wait for each answer before sending again would
          otherwise split into two cohorts of half-size batches that take turns, and a lone
          client would wait max_wait for nobody at every request;
        - its oldest request has waited max_wait, counted from the later of its arrival and
          the end of the last batch (so the clients just answered have time to come back).
        """
        with self.cond:
            while True:
                for job in [j for j in self.pending if j.failed]:
                    self.pending.remove(job)
                if not self.pending:
                    if self.stopping:
                        return None
                    self.cond.wait()
                    continue
                batch, full = self._select()
                start = max(self.pending[0].arrived, self.free_since)
                wait = start + self.settings.max_wait - time.monotonic()
                back = 0 < self.last_size <= len({id(job) for job, _ in batch})
                if full or back or wait <= 0 or self.stopping:
                    self._take(batch)
                    return batch
                self.cond.wait(wait)

    def run(self) -> None:
        """Run batches until `stop` and an empty queue."""
        while (batch := self._next_batch()) is not None:
            self.batches += 1
            self.sentences += len(batch)
            started = time.monotonic()
            self._run(batch)
            self.free_since = time.monotonic()
            self.busy += self.free_since - started

    def _run(self, batch: Batch) -> None:
        """Translate a batch, answering each job as soon as its sentences are done; a failing
        merged batch is retried job by job (the sentences not answered yet), so that only the
        job at fault gets the error."""
        first = batch[0][0]
        try:
            if first.call is not None:
                first.finish(first.call(self.translator))
                return
            generator = None
            if first.seed is not None:
                generator = torch.Generator(device=self.translator.device)
                generator.manual_seed(first.seed)
            ids = None if first.ids is None else [job.ids[k] for job, k in batch]
            self.translator.search(
                [job.texts[k] for job, k in batch], first.options,
                batch_tokens=max(1, self.settings.batch_tokens
                                 // rows_per_sentence(first.options)),
                generator=generator, token_ids=ids,
                on_finished=lambda i, hypotheses: batch[i][0].collect(batch[i][1], hypotheses),
            )
        except Exception as exc:  # noqa: BLE001 - any failure must reach its request
            jobs = {id(job): job for job, _ in batch}
            if len(jobs) > 1:
                for job in jobs.values():
                    if rest := [(j, k) for j, k in batch if j is job and j.results[k] is None]:
                        self._run(rest)
            else:
                first.finish(error=exc)
