"""What every HTTP route does with the model: check the texts against the limits, queue them
as a job for the batcher's loop, and wait (up to the timeout) for the answer. No web import:
the routes (`libretranslate`, `api_v1`) turn requests into these calls and results into
JSON."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from transformer_mt.inference.search import Hypothesis, SearchOptions
from transformer_mt.inference.translator import Translator
from transformer_mt.serving.batcher import ApiError, Batcher, Job


class TranslationService:
    """The batcher, its translator and the server's settings, as the routes use them."""

    def __init__(self, batcher: Batcher) -> None:
        self.batcher = batcher
        self.settings = batcher.settings
        self.translator = batcher.translator

    def check_texts(self, texts: list[str]) -> None:
        """422 for no text, 413 for too many texts or a text over the character limit."""
        if not texts:
            raise ApiError(422, "no text to translate")
        if len(texts) > self.settings.max_texts:
            raise ApiError(413, f"{len(texts)} texts in one request; the limit is "
                           f"{self.settings.max_texts}")
        for i, text in enumerate(texts):
            if len(text) > self.settings.max_chars:
                raise ApiError(413, f"text {i} has {len(text)} characters; the limit is "
                               f"{self.settings.max_chars}")

    async def run(self, job: Job) -> Any:
        """Queue `job` and wait for its result; 504 after the timeout (the job is then
        skipped if it has not started)."""
        self.batcher.submit(job)
        try:
            return await asyncio.wait_for(asyncio.shield(job.future), self.settings.timeout)
        except asyncio.TimeoutError:
            job.abandoned = True
            raise ApiError(504, f"the translation took longer than {self.settings.timeout:g} "
                           "s; retry, or send shorter texts") from None

    async def translate(self, texts: list[str], options: SearchOptions,
                        seed: int | None = None) -> list[list[Hypothesis]]:
        """The n-best lists of `texts`, searched with `options` in a shared batch."""
        self.check_texts(texts)
        try:
            options.check()
        except ValueError as exc:
            raise ApiError(422, str(exc)) from None
        job = Job(loop=asyncio.get_running_loop(), texts=texts, options=options, seed=seed,
                  tokens=sum(self.translator.count_tokens(texts)))
        return await self.run(job)

    async def call(self, function: Callable[[Translator], Any]) -> Any:
        """Run `function(translator)` alone on the model loop (e.g. attention maps)."""
        return await self.run(Job(loop=asyncio.get_running_loop(), call=function))
