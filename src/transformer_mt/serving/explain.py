"""`POST /v1/explain`: everything the model computes for one sentence (subwords, positional
encoding, every attention map, the beam search tree, the output distribution), as the page's
"Inside" view draws it. The record is `inference.explanation.explain`'s, the one
`transformer-mt attention --json` writes.

An explanation costs far more than a translation (every attention map of every layer and head,
a node per ranked extension of every search step), so it has limits of its own, on top of the
server's character limit and search bounds: the source's subword tokens, the beam size and the
output length (which bound the response's size), and one explanation at a time (it runs alone
on the model loop, as /v1/attention does).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from transformer_mt.inference.search import SearchOptions
from transformer_mt.inference.translator import Translator
from transformer_mt.serving.api_v1 import STRICT
from transformer_mt.serving.batcher import ApiError
from transformer_mt.serving.client import admit, gone
from transformer_mt.serving.service import TranslationService

MAX_SOURCE_TOKENS = 64  # subword tokens of the sentence, EOS excluded
MAX_BEAM = 8
MAX_OUTPUT_TOKENS = 96  # tokens of the searched translation, EOS excluded


class ExplainRequest(BaseModel):
    """Body of POST /v1/explain: one sentence and the beam search's options (translate's
    defaults); no sampling, which has no search tree to show."""

    model_config = STRICT
    text: str
    beam_size: int = 4
    length_penalty: float = 0.6
    max_len_a: float = 1.0
    max_len_b: int = 50
    nbest: int = 1


def limits(service: TranslationService) -> dict[str, int]:
    """The explain endpoint's limits on this server (also shown by GET /info)."""
    cap = service.translator.loaded.model.config.max_positions - 1
    return {"max_source_tokens": min(MAX_SOURCE_TOKENS, cap),
            "max_beam": min(MAX_BEAM, service.settings.max_beam),
            "max_output_tokens": min(MAX_OUTPUT_TOKENS, cap)}


def source_tokens(service: TranslationService, text: str) -> list[int]:
    """The sentence's subword ids (run in the worker thread): 422 when it is empty, 413 when
    it has more tokens than an explanation takes."""
    if not text.strip():
        raise ApiError(422, "text is empty")
    ids = service.translator.loaded.tokenizer.encode([text])[0]
    most = limits(service)["max_source_tokens"]
    if len(ids) > most:
        raise ApiError(413, f"text has {len(ids)} subword tokens; an explanation takes at most "
                       f"{most} (one sentence)")
    return ids


def explain_json(translator: Translator, ids: list[int], options: SearchOptions,
                 max_output_tokens: int) -> bytes:
    """The explanation as JSON bytes, computed (and encoded) on the model loop."""
    from transformer_mt.inference.explanation import explain, to_json

    return to_json(explain(translator.loaded, ids, options,
                           max_output_tokens=max_output_tokens))


def router(service: TranslationService) -> APIRouter:
    """The explain route over `service`."""
    routes = APIRouter(prefix="/v1")

    @routes.post("/explain")
    async def explain(req: ExplainRequest, request: Request) -> Response:
        admit(service, request)
        service.check_texts([req.text])
        options = SearchOptions(**req.model_dump(exclude={"text"}))
        service.check_options(options, None)
        bounds = limits(service)
        if options.beam_size > bounds["max_beam"]:
            raise ApiError(422, f"beam_size must be at most {bounds['max_beam']} for an "
                           "explanation")
        ids = await service.off_loop(source_tokens, service, req.text)
        body = await service.call(
            lambda tr: explain_json(tr, ids, options, bounds["max_output_tokens"]),
            gone(request))
        return Response(body, media_type="application/json")

    return routes
