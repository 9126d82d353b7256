"""Sentence splitting that keeps the layout: a text becomes its sentences plus the exact
whitespace around and between them, so that the translations can be put back in place.

A model trained on sentences truncates or garbles a paragraph given as one input, so
`Translator.translate(..., split_sentences=True)`, `translate --split-sentences` and the server
translate sentence by sentence. Line breaks always end a sentence (a subtitle line or a list
item without final punctuation is its own unit), and everything between two sentences (blank
lines, indentation, `\\r\\n`, tabs) is kept byte for byte.

The segmenter is `sentencex` (Wikimedia's, used by its MinT translation service): rule-based
with per-language abbreviation lists and fallbacks for languages it does not know, compiled
(Rust), with nothing to download. docs/benchmarks.md ("Sentence splitting") has the measured
check that chose it over `pysbd`: the same English accuracy, about 200 times faster.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from sentencex import segment

# A line and its line break (any of those str.splitlines knows), the last line possibly
# without one.
_LINE = re.compile(r"([^\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029]*)(\r\n|[\r\n\v\f\x1c\x1d\x1e"
                   r"\x85\u2028\u2029]|$)")


@dataclass(frozen=True, kw_only=True)
class Segmented:
    """A text as `gaps[0] + sentences[0] + gaps[1] + ... + sentences[-1] + gaps[-1]`: every
    sentence stripped of surrounding whitespace, every gap exactly as in the text."""

    sentences: list[str]
    gaps: list[str]

    def join(self, translations: Sequence[str]) -> str:
        """The text with each sentence replaced by its translation, the layout unchanged."""
        if len(translations) != len(self.sentences):
            raise ValueError(f"{len(translations)} translations for "
                             f"{len(self.sentences)} sentences")
        parts = [self.gaps[0]]
        for translation, gap in zip(translations, self.gaps[1:], strict=True):
            parts += [translation, gap]
        return "".join(parts)


def _line_sentences(line: str, lang: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence of one line, without the whitespace around it."""
    spans = []
    cursor = 0
    for piece in segment(lang, line):
        stripped = piece.strip()
        if not stripped:
            continue
        start = line.find(stripped, cursor)
        if start < 0:  # the segmenter changed the text: keep the rest of the line whole
            rest = line[cursor:]
            start = cursor + len(rest) - len(rest.lstrip())
            end = cursor + len(rest.rstrip())
            return spans + ([(start, end)] if end > start else [])
        spans.append((start, start + len(stripped)))
        cursor = start + len(stripped)
    return spans


def split_sentences(text: str, lang: str) -> Segmented:
    """The sentences of `text` (language code `lang`, e.g. "en") and the gaps between them.
    A text of only whitespace has no sentence and one gap (itself)."""
    sentences: list[str] = []
    gaps: list[str] = []
    gap_start = 0
    offset = 0
    for match in _LINE.finditer(text):
        line = match.group(1)
        for start, end in _line_sentences(line, lang):
            gaps.append(text[gap_start:offset + start])
            sentences.append(line[start:end])
            gap_start = offset + end
        offset = match.end()
        if offset >= len(text):
            break
    gaps.append(text[gap_start:])
    return Segmented(sentences=sentences, gaps=gaps)


def whole(text: str) -> Segmented:
    """`text` as one sentence (no splitting), its surrounding whitespace kept."""
    body = text.strip()
    if not body:
        return Segmented(sentences=[], gaps=[text])
    start = text.index(body)
    return Segmented(sentences=[body], gaps=[text[:start], text[start + len(body):]])
