"""The batcher's rules, without a server and without the `serve` extra: when a batch starts,
which sentences it takes (round robin over requests, within rows × tokens), how a request that
gave up leaves the queue, and how a failing merged batch is retried."""

from __future__ import annotations

import asyncio
import threading

import torch

from transformer_mt.inference.search import Hypothesis, SearchOptions
from transformer_mt.serving.batcher import Batcher, Job
from transformer_mt.serving.settings import ServerSettings


def next_batch(batcher: Batcher, within: float) -> list[tuple[Job, int]] | None:
    """The batch the model loop would start within `within` seconds, or None."""
    got: list[list[tuple[Job, int]] | None] = []
    worker = threading.Thread(target=lambda: got.append(batcher._next_batch()), daemon=True)
    worker.start()
    worker.join(within)
    if worker.is_alive():
        batcher.stop()  # a stopping batcher starts what it has: the thread ends
        worker.join()
        return None
    return got[0]


def job(loop: asyncio.AbstractEventLoop, sentences: int, tokens: int = 3, **options) -> Job:
    return Job(loop=loop, texts=[f"s{i}" for i in range(sentences)], tokens=[tokens] * sentences,
               options=SearchOptions(**options))


def test_a_batch_starts_when_the_last_batchs_clients_are_back() -> None:
    """With an hour's --max-wait-ms, only the rule "as many requests as the last batch" can
    start a batch early: the first batch waits; after a batch of 1 a lone request starts at
    once; after a batch of 3, two requests wait and a third makes the batch start."""
    loop = asyncio.new_event_loop()
    settings = ServerSettings(checkpoint="unused", max_wait=3600.0)

    def batcher_after(last: int, waiting: int) -> Batcher:
        batcher = Batcher(None, settings)  # type: ignore[arg-type]  # no batch runs here
        batcher.last_size = last
        for _ in range(waiting):
            batcher.submit(job(loop, 1))
        return batcher

    assert next_batch(batcher_after(last=0, waiting=1), within=0.5) is None  # the first waits
    assert len(next_batch(batcher_after(last=1, waiting=1), within=60) or []) == 1
    assert next_batch(batcher_after(last=3, waiting=2), within=0.5) is None
    assert len(next_batch(batcher_after(last=3, waiting=3), within=60) or []) == 3
    loop.close()


def test_a_long_document_shares_every_batch_with_the_requests_behind_it() -> None:
    """A 200-sentence document, then a one-line request: the first batch holds the one-liner
    next to the document's first sentences (round robin), within the budget of beam 4 × 10
    tokens × 20 sentences; the document goes on in later batches, in order."""
    loop = asyncio.new_event_loop()
    batcher = Batcher(None, ServerSettings(checkpoint="unused", batch_tokens=4 * 10 * 20,
                                           max_wait=0.0))  # type: ignore[arg-type]
    document, line = job(loop, 200, tokens=10), job(loop, 1, tokens=10)
    batcher.submit(document)
    batcher.submit(line)
    first = next_batch(batcher, within=60) or []
    assert len(first) == 20  # rows × tokens: 20 sentences of 10 tokens at beam 4
    assert (line, 0) in first and [k for j, k in first if j is document] == list(range(19))
    assert list(batcher.pending) == [document] and batcher.requests == 2
    second = next_batch(batcher, within=60) or []
    assert [k for _, k in second] == list(range(19, 39))
    loop.close()


def test_the_budget_counts_beam_rows_and_sampling_rows() -> None:
    """The same sentences fill a batch 4 times faster at beam 16 than at beam 4; n samples
    count n rows each; requests with other options wait for their own batch."""
    loop = asyncio.new_event_loop()
    for options, expected in (({"beam_size": 4}, 32), ({"beam_size": 16, "nbest": 2}, 8),
                              ({"sampling": True, "nbest": 8}, 16)):
        batcher = Batcher(None, ServerSettings(checkpoint="unused", batch_tokens=4 * 8 * 32,
                                               max_wait=0.0))  # type: ignore[arg-type]
        batcher.submit(job(loop, 100, tokens=8, **options))
        batcher.submit(job(loop, 5, tokens=8, beam_size=2))  # other options: not in it
        batch = next_batch(batcher, within=60) or []
        assert len(batch) == expected and {j.options for j, _ in batch} == {
            SearchOptions(**options)}
    loop.close()


def test_a_request_that_gave_up_leaves_the_queue_at_once() -> None:
    """`cancel` (a timeout, a disconnect) takes the job off the queue: it never runs, no
    longer counts against --queue-size, and is counted by reason."""
    loop = asyncio.new_event_loop()
    batcher = Batcher(None, ServerSettings(checkpoint="unused", queue_size=2,
                                           max_wait=0.0))  # type: ignore[arg-type]
    gave_up, other = job(loop, 1), job(loop, 1)
    batcher.submit(gave_up)
    batcher.submit(other)
    batcher.cancel(gave_up, "timed out")
    batcher.submit(job(loop, 1))  # room again: the queue holds 2
    batch = next_batch(batcher, within=60) or []
    assert gave_up not in {j for j, _ in batch} and other in {j for j, _ in batch}
    assert batcher.dropped == {"timed out": 1} and batcher.requests == 2
    loop.close()


def test_a_failing_batch_retries_only_the_requests_not_answered_yet() -> None:
    """A merged batch of three requests whose search answers the first text, then fails on
    the second: the first keeps its answer (not re-run), the bad request alone gets the
    error, the third is translated again on its own."""
    calls: list[list[str]] = []

    class FailingTranslator:
        device = torch.device("cpu")

        def search(self, texts, options, *, batch_tokens, generator, on_finished, token_ids):
            calls.append(list(texts))
            for i, text in enumerate(texts):
                if text == "bad":
                    raise ValueError("a text this model cannot take")
                on_finished(i, [Hypothesis(tokens=[len(text)], score=0.0, log_prob=0.0)])

    loop = asyncio.new_event_loop()
    batcher = Batcher(FailingTranslator(),  # type: ignore[arg-type]
                      ServerSettings(checkpoint="unused"))
    jobs = [Job(loop=loop, texts=[text], tokens=[2]) for text in ("first", "bad", "third")]
    batcher._run([(j, 0) for j in jobs])
    settled = loop.run_until_complete(asyncio.gather(*(j.future for j in jobs),
                                                     return_exceptions=True))
    loop.close()
    assert calls == [["first", "bad", "third"], ["bad"], ["third"]]
    assert settled[0] == [[Hypothesis(tokens=[5], score=0.0, log_prob=0.0)]]
    assert isinstance(settled[1], ValueError)
    assert settled[2] == [[Hypothesis(tokens=[5], score=0.0, log_prob=0.0)]]
