"""The Python API: `Translator`, one loaded model that turns raw text into translations.

It is the one implementation behind `transformer-mt translate`, `evaluate --checkpoint`,
`predict` and `serve`, so all four give the same output for the same input and options:

    from transformer_mt import Translator
    translator = Translator.from_checkpoint("runs/demo/averaged.ckpt")
    translator.translate("The dog is three years old.")            # -> "Der Hund ist ..."
    translator.translate(["Hello.", "Thank you."], beam_size=5)    # -> ["Hallo.", "Danke."]
    translator.translate("Hello.", nbest=3)                        # -> [Scored(text, score, ...)]

Only torch, sentencepiece and the model are imported: no Lightning, so a script or a server
using it starts in about a second.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from transformer_mt.errors import UserError
from transformer_mt.inference import sentences
from transformer_mt.inference.loaded_model import LoadedModel, load_for_inference
from transformer_mt.inference.search import (
    Finished,
    Hypothesis,
    SearchOptions,
    Translations,
    translate_lines,
)
from transformer_mt.model.cpu_gemm import apply_cpu_gemm
from transformer_mt.model.quantize import quantize as quantize_model

# Control characters (tab excepted) and the Unicode line/paragraph separators become spaces in
# a translation, as textio does for input: this covers every character `str.splitlines` breaks
# on, so no reader sees more than one line per input line.
_CONTROLS = str.maketrans(dict.fromkeys(
    [chr(i) for i in range(32) if chr(i) != "\t"] + ["\x7f", "\x85", "\u2028", "\u2029"], " "
))


# TranslationModel hyper-parameter -> the SearchOptions field it sets for `predict`.
_PREDICT_SETTINGS = {"predict_beam_size": "beam_size", "val_length_penalty": "length_penalty"}


def clean_text(text: str) -> str:
    """A translation as one clean line: a byte-fallback model can emit any byte, newline and
    other control characters included; they become spaces."""
    return text.translate(_CONTROLS)


@dataclass(frozen=True, kw_only=True)
class Scored:
    """One hypothesis of an n-best list: its text, the length-penalised score that ranks it,
    and the plain sum of token log-probabilities."""

    text: str
    score: float
    log_prob: float


def resolve_device(name: str | torch.device) -> torch.device:
    """`auto` means CUDA when available; asking for CUDA without one is a user error."""
    name = str(name)
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available (use --device cpu)")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


class Translator:
    """A model ready to translate, with its tokenizer and language pair.

    Thread-compatible, not thread-safe: one thread translates at a time (the server runs
    every batch on its one model loop).
    """

    def __init__(self, loaded: LoadedModel, precision: str = "fp32",
                 checkpoint: str | None = None) -> None:
        self.loaded = loaded
        self.device = next(loaded.model.parameters()).device
        self.checkpoint = checkpoint
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be fp32 or bf16, got {precision!r}")
        if precision == "bf16" and self.device.type != "cuda":
            print("transformer-mt: warning: --precision bf16 applies to CUDA only; running fp32 "
                  "on the CPU", file=sys.stderr)
            precision = "fp32"
        self.precision = precision

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike, device: str | torch.device = "auto",
        quantize: str | None = None, cpu_gemm: str = "auto", precision: str = "fp32",
    ) -> Translator:
        """Load a `.ckpt` written by `fit` or `average` (safely: tensors and plain data only).

        `quantize="int8"` (CPU only) gives int8 linear layers, faster; `cpu_gemm` picks the
        float32 CPU matrix products (`auto`: oneDNN on non-Intel CPUs); `precision="bf16"`
        autocasts on CUDA. Impossible combinations raise UserError before the load; messages
        name the options as the command line spells them (`device` is `--device`).
        """
        torch_device = resolve_device(device)
        if quantize is not None and torch_device.type != "cpu":
            raise UserError(f"--quantize {quantize} runs on the CPU only; add --device cpu")
        if cpu_gemm == "onednn" and (torch_device.type != "cpu" or quantize is not None):
            raise UserError("--cpu-gemm onednn is for float32 on the CPU; drop it with "
                            "--quantize or a CUDA device")
        loaded = load_for_inference(path, torch_device)
        if quantize is not None:
            try:
                quantize_model(loaded.model, quantize)
            except ValueError as exc:
                raise UserError(f"--quantize {quantize}: {exc}") from None
        elif torch_device.type == "cpu":
            try:
                apply_cpu_gemm(loaded.model, cpu_gemm)
            except ValueError as exc:
                raise UserError(f"--cpu-gemm {cpu_gemm}: {exc}; use --cpu-gemm default") from None
        return cls(loaded, precision, checkpoint=str(path))

    def predict_settings(self) -> tuple[SearchOptions, int]:
        """The search and batch size (padded source tokens) the model was trained to translate
        with: `model.predict_beam_size`, `model.val_length_penalty` and `model.predict_max_tokens`
        of its checkpoint, at most source length + 50 tokens (the paper's). `predict`, `test`
        and `evaluate --checkpoint` all translate so, and therefore agree. A checkpoint without
        these hyper-parameters (not written by `fit`) gets the training defaults."""
        hparams = self.loaded.hyper_parameters
        given = {field: hparams[key] for key, field in _PREDICT_SETTINGS.items() if key in hparams}
        return SearchOptions(**given), int(hparams.get("predict_max_tokens", 4096))

    @property
    def src_lang(self) -> str:
        return self.loaded.src_lang

    @property
    def tgt_lang(self) -> str:
        return self.loaded.tgt_lang

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Source length of each text in model tokens (EOS included), as the model sees it."""
        cap = self.loaded.model.config.max_positions - 1
        return [min(len(ids), cap) + 1 for ids in self.loaded.tokenizer.encode(list(texts))]

    def search(
        self, texts: Sequence[str], options: SearchOptions | None = None, *,
        batch_tokens: int = 4096, generator: torch.Generator | None = None,
        progress: Callable[[int], None] | None = None, on_finished: Finished | None = None,
        token_ids: Sequence[Sequence[int]] | None = None,
    ) -> Translations:
        """N-best hypotheses (token ids and scores) for every text, in input order, plus the
        count of texts cut to fit the model: what the CLI and the server format their own way.
        `on_finished(text index, hypotheses)` is called as soon as each text is done;
        `token_ids` are the texts already tokenized (no EOS), so they are not tokenized again.
        """
        options = (options or SearchOptions()).check()
        if batch_tokens < 1:
            raise ValueError(f"batch_tokens must be >= 1, got {batch_tokens}")
        autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if self.precision == "bf16"
                    else nullcontext())
        with autocast, torch.inference_mode():
            return translate_lines(
                self.loaded, texts, batch_tokens=batch_tokens, progress=progress,
                on_finished=on_finished, generator=generator, token_ids=token_ids,
                **vars(options),
            )

    def texts(self, hypotheses: Sequence[Hypothesis]) -> list[str]:
        """Detokenized, one-line texts of hypotheses."""
        return [clean_text(t) for t in self.loaded.tokenizer.decode([h.tokens for h in hypotheses])]

    def scored(self, hypotheses: Sequence[Hypothesis]) -> list[Scored]:
        """An n-best list as texts with their scores, best first."""
        return [Scored(text=text, score=h.score, log_prob=h.log_prob)
                for h, text in zip(hypotheses, self.texts(hypotheses), strict=True)]

    def joined(self, segmented: sentences.Segmented,
               hypotheses: Sequence[Sequence[Hypothesis]]) -> list[Scored]:
        """The n-best list of a text split into sentences, from its sentences' n-best lists:
        entry k puts each sentence's k-th hypothesis (its last one when it has fewer) back in
        the text's layout, with the sum of their scores and log-probabilities."""
        depth = max((len(h) for h in hypotheses), default=1)
        picks = [[hyps[min(k, len(hyps) - 1)] for hyps in hypotheses] for k in range(depth)]
        texts = self.texts([h for pick in picks for h in pick])
        n = len(hypotheses)
        return [Scored(text=segmented.join(texts[k * n:(k + 1) * n]),
                       score=sum(h.score for h in pick), log_prob=sum(h.log_prob for h in pick))
                for k, pick in enumerate(picks)]

    def search_sentences(
        self, texts: Sequence[str], options: SearchOptions | None = None, *,
        batch_tokens: int = 4096, generator: torch.Generator | None = None,
    ) -> tuple[list[list[Scored]], int]:
        """Each text split into sentences, all sentences searched in one call, and each
        text's n-best list put back together (`joined`); plus the count of sentences cut to
        fit the model."""
        parts = [sentences.split_sentences(text, self.src_lang) for text in texts]
        result = self.search([s for part in parts for s in part.sentences], options,
                             batch_tokens=batch_tokens, generator=generator)
        lists, start = [], 0
        for part in parts:
            end = start + len(part.sentences)
            lists.append(self.joined(part, result.hypotheses[start:end]))
            start = end
        return lists, result.truncated

    def translate(
        self, texts: str | Sequence[str], *, beam_size: int = 4, length_penalty: float = 0.6,
        max_len_a: float = 1.0, max_len_b: int = 50, nbest: int = 1, sampling: bool = False,
        temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, seed: int | None = None,
        batch_tokens: int = 4096, scores: bool = False, split_sentences: bool = False,
    ) -> str | list[Scored] | list[str] | list[list[Scored]]:
        """Translate one text or a list of texts (batched by tokens, results in input order).

        Returns the best translation as a string per text; with `nbest > 1` or `scores=True`
        an n-best list of `Scored` per text instead. A single string in gives a single result
        out. `sampling=True` draws `nbest` samples (reproducibly for a given `seed`).
        An empty text translates to an empty text. `split_sentences=True` translates each
        sentence of a text on its own and puts the translations back between the text's own
        whitespace and line breaks (`inference.sentences`); an n-best entry is then the
        sentences' k-th hypotheses, scored with the sum of their scores.
        """
        single = isinstance(texts, str)
        batch = [texts] if single else list(texts)
        options = SearchOptions(beam_size=beam_size, length_penalty=length_penalty,
                                max_len_a=max_len_a, max_len_b=max_len_b, nbest=nbest,
                                sampling=sampling, temperature=temperature, top_k=top_k,
                                top_p=top_p)
        generator = None
        if sampling and seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(seed)
        if split_sentences:
            lists, _ = self.search_sentences(batch, options, batch_tokens=batch_tokens,
                                             generator=generator)
            out: list = lists if nbest > 1 or scores else [hyps[0].text for hyps in lists]
            return out[0] if single else out
        result = self.search(batch, options, batch_tokens=batch_tokens, generator=generator)
        if nbest > 1 or scores:
            out = [self.scored(hyps) for hyps in result.hypotheses]
        else:
            out = self.texts([hyps[0] for hyps in result.hypotheses])
        return out[0] if single else out
