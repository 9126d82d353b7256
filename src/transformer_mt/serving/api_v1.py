"""Our own API: `POST /v1/translate` (every search option of `translate`, with scores, n-best
lists and the truncation flag) and `POST /v1/attention` (the cross-attention the page
draws)."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, fields
from typing import Any, get_type_hints

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, create_model

from transformer_mt.errors import UserError
from transformer_mt.inference.search import SearchOptions
from transformer_mt.inference.translator import Translator
from transformer_mt.serving.batcher import ApiError
from transformer_mt.serving.client import admit, gone
from transformer_mt.serving.service import TranslationService

STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)

# Body of POST /v1/translate: the texts, every search option of `translate` (the fields of
# SearchOptions, so the two never drift apart), a sampling seed, and whether to split texts
# into sentences (on by default, as for the LibreTranslate API).
V1Request = create_model(
    "V1Request", __config__=STRICT, text=(str | list[str], ...),
    seed=(int | None, None), split_sentences=(bool, True),
    **{f.name: (get_type_hints(SearchOptions)[f.name], f.default) for f in fields(SearchOptions)},
)


class AttentionRequest(BaseModel):
    """Body of POST /v1/attention: a source text and, optionally, the translation to explain
    (default: the model's greedy translation)."""

    model_config = STRICT
    text: str
    translation: str | None = None


def cross_attention(translator: Translator, text: str, translation: str | None
                    ) -> dict[str, Any]:
    """The pieces of both sides and the head-averaged cross-attention of every decoder layer,
    computed on the model loop."""
    from transformer_mt.inference.attention_weights import (
        attention_arrays,
        attention_json,
        sentence_ids,
    )

    loaded = translator.loaded
    try:
        src_ids, tgt_ids = sentence_ids(loaded, text, translation)
    except UserError as exc:
        raise ApiError(422, str(exc).replace("--src", "text").replace(
            "--tgt", "translation")) from None
    arrays, tokens = attention_arrays(loaded, src_ids, tgt_ids)
    return {
        "source_tokens": tokens["source_tokens"],
        "target_tokens": tokens["target_tokens"],
        "translation": loaded.tokenizer.decode([tgt_ids])[0],
        # (layers, target, source): the mean over heads, as `attention` draws it
        "cross": attention_json(arrays["cross"].mean(axis=1)),
    }


def router(service: TranslationService) -> APIRouter:
    """The /v1 routes over `service`."""
    routes = APIRouter(prefix="/v1")

    @routes.post("/translate")
    async def translate(req: V1Request, request: Request) -> dict[str, Any]:  # type: ignore[valid-type]
        started = time.perf_counter()
        admit(service, request)
        texts = [req.text] if isinstance(req.text, str) else req.text
        options = SearchOptions(**req.model_dump(exclude={"text", "seed", "split_sentences"}))
        results = await service.translate(texts, options, req.seed if req.sampling else None,
                                          gone(request), split=req.split_sentences)
        translations = []
        for result in results:
            scored = [asdict(s) for s in result.nbest]
            for entry in scored:  # an empty text's hypothesis has score 0; -inf is not JSON
                entry["score"] = entry["score"] if math.isfinite(entry["score"]) else None
            translations.append({**scored[0], "nbest": scored, "truncated": result.truncated})
        return {"source": service.translator.src_lang, "target": service.translator.tgt_lang,
                "translations": translations,
                "time_ms": round((time.perf_counter() - started) * 1000, 1)}

    @routes.post("/attention")
    async def attention(req: AttentionRequest, request: Request) -> dict[str, Any]:
        admit(service, request)
        service.check_texts([req.text])
        return await service.call(
            lambda tr: cross_attention(tr, req.text, req.translation), gone(request))

    return routes
