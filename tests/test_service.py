"""What a request leaves behind in the server: nothing. The service and the batcher run
in-process (the model loop in a thread); after 200 requests (good ones, refused ones, ones
that time out) no request object survives, which guards the memory growth of issue 28."""

from __future__ import annotations

import asyncio
import gc
import threading
from pathlib import Path

from transformer_mt import Translator
from transformer_mt.inference.search import SearchOptions
from transformer_mt.inference.sentences import Segmented
from transformer_mt.serving.batcher import ApiError, Batcher, Job
from transformer_mt.serving.service import Prepared, TextResult, TranslationService
from transformer_mt.serving.settings import ServerSettings

PER_REQUEST = (Job, Prepared, TextResult, Segmented, asyncio.Future)


def live() -> dict[str, int]:
    gc.collect()
    counts = {cls.__name__: 0 for cls in PER_REQUEST}
    for obj in gc.get_objects():
        if type(obj) in PER_REQUEST:
            counts[type(obj).__name__] += 1
    return counts


def test_no_request_object_survives_200_requests(tiny_checkpoint: Path) -> None:
    translator = Translator.from_checkpoint(tiny_checkpoint, device="cpu")
    batcher = Batcher(translator, ServerSettings(checkpoint="unused", max_wait=0.0,
                                                 timeout=0.05))
    service = TranslationService(batcher)
    model_loop = threading.Thread(target=batcher.run, daemon=True)
    model_loop.start()
    short = SearchOptions(beam_size=2, max_len_b=4)

    async def one(i: int) -> str:
        try:
            if i % 10 == 0:  # refused before it is queued
                await service.translate(["the cat"], SearchOptions(beam_size=99))
            texts = [f"the cat sleeps. a dog runs {i}.", "the big house"]
            results = await service.translate(texts, short)
            return results[0].nbest[0].text
        except ApiError as exc:
            return str(exc.status)

    async def many() -> list[str]:
        answers = []
        for start in range(0, 200, 20):  # 20 at a time, sharing batches
            answers += await asyncio.gather(*(one(i) for i in range(start, start + 20)))
        return answers

    before = live()
    try:
        answers = asyncio.run(many())
    finally:
        batcher.stop()
        model_loop.join()
    assert answers.count("422") == 20 and len(answers) == 200
    # the other 180 ran, or timed out (50 ms) and were dropped or cut short
    assert batcher.requests + batcher.dropped["timed out"] >= 180
    assert live() == before, "objects of a finished request are still referenced"
