"""The batcher's rules, without a server and without the `serve` extra: when a batch starts,
and how a failing merged batch is retried."""

from __future__ import annotations

import asyncio
import threading

import torch

from transformer_mt.inference.search import Hypothesis
from transformer_mt.serving.batcher import Batcher, Job
from transformer_mt.serving.settings import ServerSettings


def next_batch(batcher: Batcher, within: float) -> list[Job] | None:
    """The batch the model loop would start within `within` seconds, or None."""
    got: list[list[Job] | None] = []
    worker = threading.Thread(target=lambda: got.append(batcher._next_batch()), daemon=True)
    worker.start()
    worker.join(within)
    if worker.is_alive():
        batcher.stop()  # a stopping batcher starts what it has: the thread ends
        worker.join()
        return None
    return got[0]


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
            batcher.submit(Job(loop=loop, texts=["a text"], tokens=3))
        return batcher

    assert next_batch(batcher_after(last=0, waiting=1), within=0.5) is None  # the first waits
    assert len(next_batch(batcher_after(last=1, waiting=1), within=60) or []) == 1
    assert next_batch(batcher_after(last=3, waiting=2), within=0.5) is None
    assert len(next_batch(batcher_after(last=3, waiting=3), within=60) or []) == 3
    loop.close()


def test_a_failing_batch_retries_only_the_requests_not_answered_yet() -> None:
    """A merged batch of three requests whose search answers the first text, then fails on
    the second: the first keeps its answer (not re-run), the bad request alone gets the
    error, the third is translated again on its own."""
    calls: list[list[str]] = []

    class FailingTranslator:
        device = torch.device("cpu")

        def search(self, texts, options, *, batch_tokens, generator, on_finished):
            calls.append(list(texts))
            for i, text in enumerate(texts):
                if text == "bad":
                    raise ValueError("a text this model cannot take")
                on_finished(i, [Hypothesis(tokens=[len(text)], score=0.0, log_prob=0.0)])

    loop = asyncio.new_event_loop()
    batcher = Batcher(FailingTranslator(),  # type: ignore[arg-type]
                      ServerSettings(checkpoint="unused"))
    jobs = [Job(loop=loop, texts=[text], tokens=2) for text in ("first", "bad", "third")]
    batcher._run(jobs)
    settled = loop.run_until_complete(asyncio.gather(*(j.future for j in jobs),
                                                     return_exceptions=True))
    loop.close()
    assert calls == [["first", "bad", "third"], ["bad"], ["third"]]
    assert settled[0] == [[Hypothesis(tokens=[5], score=0.0, log_prob=0.0)]]
    assert isinstance(settled[1], ValueError)
    assert settled[2] == [[Hypothesis(tokens=[5], score=0.0, log_prob=0.0)]]
