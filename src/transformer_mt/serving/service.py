"""What every HTTP route does with the model: check the request against the limits, split its
texts into sentences and tokenize them (once, in a worker thread, off the event loop), queue
them as one job for the batcher's loop, wait for the answer (up to the timeout, or until the
client goes away), and put each text back together. No web import: the routes
(`libretranslate`, `api_v1`) turn requests into these calls and results into JSON.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from transformer_mt.inference.search import SearchOptions
from transformer_mt.inference.sentences import Segmented, split_sentences, whole
from transformer_mt.inference.translator import Scored, Translator
from transformer_mt.serving.access import Access
from transformer_mt.serving.batcher import ApiError, Batcher, Job
from transformer_mt.serving.language_id import REFUSE_ABOVE, LanguageIdentifier

T = TypeVar("T")
Gone = Callable[[], Awaitable[Any]]  # returns an awaitable that completes when the client leaves
MAX_LEN_A, MAX_LEN_B = 4.0, 512  # the longest output a sentence may ask for: 4 × source + 512


@dataclass(kw_only=True)
class Prepared:
    """A request's texts ready for the batcher: each text's sentences and layout, and every
    sentence's subword ids and source length (EOS included, capped to fit the model)."""

    parts: list[Segmented]
    ids: list[list[int]]
    tokens: list[int]
    truncated: list[bool]  # per text: a sentence was cut to fit the model


@dataclass(kw_only=True)
class TextResult:
    """One text's n-best list (best first) and whether a sentence of it was cut to fit."""

    nbest: list[Scored]
    truncated: bool


class Gate:
    """The HTTP requests in flight and the drain flag: after SIGTERM, new requests get 503
    while those in flight finish (the runner stops HTTP when none is left)."""

    def __init__(self) -> None:
        self.draining = False
        self.in_flight = 0


class TranslationService:
    """The batcher, its translator and the server's settings, as the routes use them."""

    def __init__(self, batcher: Batcher, access: Access | None = None) -> None:
        self.batcher = batcher
        self.settings = batcher.settings
        self.translator = batcher.translator
        self.access = access or Access(None, self.settings.req_limit)
        self.languages = LanguageIdentifier()
        self.gate = Gate()
        # one thread: tokenization holds the GIL anyway; it only has to leave the event loop
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="transformer-mt-text")

    async def off_loop(self, function: Callable[..., T], *args: Any) -> T:
        """`function(*args)` in the worker thread, so the event loop keeps serving."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, function, *args)

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

    def check_options(self, options: SearchOptions, seed: int | None) -> None:
        """422 for options the search refuses, numbers that are not finite, and anything over
        the server's bounds (a beam of 5,000 would allocate batch × beam × vocabulary)."""
        for f in fields(options):
            value = getattr(options, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ApiError(422, f"{f.name} must be a finite number, got {value}")
        try:
            options.check()
        except ValueError as exc:
            raise ApiError(422, str(exc)) from None
        most, vocab = self.settings.max_beam, self.translator.loaded.tokenizer.vocab_size
        bounds = [("beam_size", options.beam_size, most), ("nbest", options.nbest, most),
                  ("top_k", options.top_k, vocab), ("max_len_a", options.max_len_a, MAX_LEN_A),
                  ("max_len_b", options.max_len_b, MAX_LEN_B),
                  ("length_penalty", abs(options.length_penalty), 10.0),
                  ("temperature", options.temperature, 100.0)]
        for name, value, limit in bounds:
            if value > limit:
                raise ApiError(422, f"{name} must be at most {limit:g} on this server")
        if seed is not None and not 0 <= seed < 2**63:
            raise ApiError(422, "seed must be in 0 .. 2**63 - 1")

    def prepare(self, texts: list[str], split: bool = True) -> Prepared:
        """Sentences (or, unless `split`, each text as one), ids and lengths of `texts` (run
        in the worker thread); 413 for a text or a request over its subword-token limit."""
        cap = self.translator.loaded.model.config.max_positions - 1
        tokenizer, settings = self.translator.loaded.tokenizer, self.settings
        prepared = Prepared(parts=[], ids=[], tokens=[], truncated=[])
        total = 0
        for i, text in enumerate(texts):
            part = split_sentences(text, self.translator.src_lang) if split else whole(text)
            ids = tokenizer.encode(part.sentences)
            count = sum(len(s) for s in ids)
            if count > settings.max_text_tokens:
                raise ApiError(413, f"text {i} has {count} subword tokens; the limit is "
                               f"{settings.max_text_tokens}")
            total += count
            if total > settings.max_request_tokens:
                raise ApiError(413, f"the request has over {settings.max_request_tokens} "
                               "subword tokens, its limit; send fewer or shorter texts")
            prepared.parts.append(part)
            prepared.ids += ids
            prepared.tokens += [min(len(s), cap) + 1 for s in ids]
            prepared.truncated.append(any(len(s) > cap for s in ids))
        return prepared

    async def translate(self, texts: list[str], options: SearchOptions, seed: int | None = None,
                        gone: Gone | None = None, split: bool = True,
                        ) -> list[TextResult]:
        """Each text's n-best list, its sentences searched with `options` in shared batches
        (each text as one sentence unless `split`); `gone()` completes when the client
        disconnects (the job is then dropped)."""
        self.check_texts(texts)
        return await self.translate_checked(texts, options, seed, gone, split)

    async def translate_checked(self, texts: list[str], options: SearchOptions,
                                seed: int | None = None, gone: Gone | None = None,
                                split: bool = True) -> list[TextResult]:
        """`translate` for texts whose count and characters were checked by the caller (the
        text nodes of an HTML document, checked as the document)."""
        self.check_options(options, seed)
        prepared = await self.off_loop(self.prepare, texts, split)
        sentences = [s for part in prepared.parts for s in part.sentences]
        hypotheses = []
        if sentences:
            hypotheses = await self.run(Job(
                loop=asyncio.get_running_loop(), texts=sentences, ids=prepared.ids,
                tokens=prepared.tokens, options=options, seed=seed), gone)
        results, start = [], 0
        for part, cut in zip(prepared.parts, prepared.truncated, strict=True):
            end = start + len(part.sentences)
            results.append(TextResult(nbest=self.translator.joined(part, hypotheses[start:end]),
                                      truncated=cut))
            start = end
        return results

    async def run(self, job: Job, gone: Gone | None = None) -> Any:
        """Queue `job` and wait for its result: 504 after the timeout; if the client goes
        away first, the job is dropped. Either way what it has not started never runs."""
        self.batcher.submit(job)
        watcher = asyncio.ensure_future(gone()) if gone is not None else None
        waiting = [job.future] + ([watcher] if watcher is not None else [])
        try:
            await asyncio.wait(waiting, timeout=self.settings.timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            if watcher is not None:
                watcher.cancel()
        if job.future.done():
            return job.future.result()
        job.future.cancel()
        if watcher is not None and watcher.done() and not watcher.cancelled():
            self.batcher.cancel(job, "disconnected")
            raise ApiError(499, "the client disconnected")
        self.batcher.cancel(job, "timed out")
        raise ApiError(504, f"the translation took longer than {self.settings.timeout:g} s; "
                       "retry, or send shorter texts")

    async def call(self, function: Callable[[Translator], Any],
                   gone: Gone | None = None) -> Any:
        """Run `function(translator)` alone on the model loop (e.g. attention maps)."""
        return await self.run(Job(loop=asyncio.get_running_loop(), call=function), gone)

    def source_language(self, texts: list[str]) -> list[dict[str, Any]]:
        """For `source: "auto"`: per text `{"confidence", "language"}` (LibreTranslate's
        shape, confidence in %), the model's source language unless the text is clearly in
        another one, which is a 400 naming both. Run in the worker thread."""
        src, tgt = self.translator.src_lang, self.translator.tgt_lang
        detected = []
        for i, text in enumerate(texts):
            best, p_best, p_src = self.languages.probability(text, src)
            if best != src and p_best >= REFUSE_ABOVE:
                where = "" if len(texts) == 1 else f"text {i} "
                raise ApiError(400, f"{where}looks like {language_name(best)} ({best}), "
                               f"not {language_name(src)} ({src}): this server translates "
                               f"{language_name(src)} ({src}) to {language_name(tgt)} ({tgt})")
            detected.append({"confidence": round(100 * p_src, 1), "language": src})
        return detected

    def detect(self, text: str) -> list[dict[str, Any]]:
        """POST /detect: the most probable languages of `text`, confidence in %."""
        return [{"confidence": round(100 * p, 1), "language": lang}
                for lang, p in self.languages.rank(text)]


LANGUAGE_NAMES = {
    "ar": "Arabic", "cs": "Czech", "de": "German", "en": "English", "es": "Spanish",
    "fr": "French", "it": "Italian", "ja": "Japanese", "nl": "Dutch", "pl": "Polish",
    "pt": "Portuguese", "ro": "Romanian", "ru": "Russian", "tr": "Turkish", "uk": "Ukrainian",
    "zh": "Chinese",
}


def language_name(code: str) -> str:
    """The English name of a language code, or the code itself."""
    return LANGUAGE_NAMES.get(code, code)
