"""`format: "html"`: the text nodes of an HTML document, found by a real HTML parser (the
standard library's, which follows the HTML5 tokenizer's rules for tags, attributes, comments,
character references and raw-text elements), translated, and put back in place.

Only the text between tags changes: every tag, attribute, comment, doctype and the whole
content of `<script>`, `<style>`, `<code>`, `<pre>`, `<kbd>`, `<samp>`, `<textarea>` and of any
element marked `translate="no"` (HTML's own attribute) or `class="notranslate"` is kept byte
for byte. A text node is translated as text (sentence by sentence, its whitespace kept) and
written back HTML-escaped. Inline markup inside a sentence (`Hello <b>world</b>.`) splits it
into separately translated pieces, as LibreTranslate's own HTML mode does. No web import.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from html.parser import HTMLParser

KEEP = {"script", "style", "code", "pre", "kbd", "samp", "textarea", "template"}
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}


@dataclass(frozen=True, kw_only=True)
class TextNode:
    """The characters [start, end) of the document, holding `text` (character references
    resolved) to translate."""

    start: int
    end: int
    text: str


class _Scanner(HTMLParser):
    """Records where each text node starts (and the start of whatever follows it)."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self.line_starts = [0]
        for i, char in enumerate(source):
            if char == "\n":
                self.line_starts.append(i + 1)
        self.marks: list[tuple[int, str | None]] = []  # (offset, text to translate or None)
        self.open: list[tuple[str, bool]] = []  # (tag, kept) of the open elements

    def position(self) -> int:
        line, column = self.getpos()
        return self.line_starts[line - 1] + column

    def kept(self) -> bool:
        return any(keep for _, keep in self.open)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.marks.append((self.position(), None))
        if tag in VOID:
            return
        values = dict(attrs)
        keep = (tag in KEEP or (values.get("translate") or "").lower() == "no"
                or "notranslate" in (values.get("class") or "").split())
        self.open.append((tag, keep))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.marks.append((self.position(), None))

    def handle_endtag(self, tag: str) -> None:
        self.marks.append((self.position(), None))
        names = [name for name, _ in self.open]
        if tag in names:
            del self.open[len(names) - 1 - names[::-1].index(tag):]

    def handle_data(self, data: str) -> None:
        translate = not self.kept() and not self.cdata_elem and bool(data.strip())
        self.marks.append((self.position(), data if translate else None))

    def unknown_decl(self, data: str) -> None:
        self.marks.append((self.position(), None))

    handle_comment = handle_decl = handle_pi = unknown_decl


def text_nodes(source: str) -> list[TextNode]:
    """The text nodes of `source` to translate, in document order."""
    scanner = _Scanner(source)
    scanner.feed(source)
    scanner.close()
    marks = scanner.marks + [(len(source), None)]
    return [TextNode(start=start, end=marks[i + 1][0], text=text)
            for i, (start, text) in enumerate(marks[:-1]) if text is not None]


def rebuild(source: str, nodes: list[TextNode], translations: list[str]) -> str:
    """`source` with each node's characters replaced by its translation (escaped)."""
    parts, cursor = [], 0
    for node, translation in zip(nodes, translations, strict=True):
        parts += [source[cursor:node.start], html.escape(translation, quote=False)]
        cursor = node.end
    parts.append(source[cursor:])
    return "".join(parts)
