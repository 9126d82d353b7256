"""`format: "html"`: text nodes found by the HTML parser, markup kept byte for byte."""

from __future__ import annotations

from transformer_mt.serving.html_text import rebuild, text_nodes

DOCUMENT = (
    '<!DOCTYPE html>\n<html lang="en"><head><title>A title.</title>'
    '<style>p > b { color: red; } /* <p>not text</p> */</style></head>\n'
    '<body class="x"  data-note=\'Keep "this".\'>\n  <p class="green">Hello! How &amp; '
    'why?</p>\n<script>if (a < b && c > d) { document.write("<p>no</p>"); }</script>\n'
    '<p>Run <code>make test</code> first. <b>Then</b> stop.</p><!-- a comment -->\n'
    '<div translate="no">Brand Name</div><span class="x notranslate">Keep</span>'
    '<pre>  pre\n formatted</pre><br/>Last &eacute;lan<img src="a.png" alt="An image.">'
    '</body></html>\n'
)


def test_the_text_nodes_are_the_visible_text_outside_kept_elements() -> None:
    """Whitespace between tags, comments, attribute values and the content of script, style,
    code, pre and translate="no" / notranslate elements are not text to translate."""
    assert [n.text for n in text_nodes(DOCUMENT)] == [
        "A title.", "Hello! How & why?", "Run ", " first. ", "Then", " stop.", "Last élan"]


def test_markup_scripts_styles_code_and_attributes_are_kept_byte_for_byte() -> None:
    nodes = text_nodes(DOCUMENT)
    out = rebuild(DOCUMENT, nodes, [f"<{n.text.strip().upper()}>" for n in nodes])
    markup = DOCUMENT
    for node in reversed(nodes):
        markup = markup[:node.start] + "\0" + markup[node.end:]
    kept = out
    for node in nodes:
        kept = kept.replace(f"&lt;{node.text.strip().upper().replace('&', '&amp;')}&gt;", "\0",
                            1)
    assert kept == markup  # everything but the text nodes is unchanged, in place
    assert "&lt;HELLO! HOW &amp; WHY?&gt;" in out  # translations are escaped
    assert '<script>if (a < b && c > d) { document.write("<p>no</p>"); }</script>' in out
    assert "<code>make test</code>" in out and "Brand Name" in out and "  pre\n formatted" in out
    assert rebuild(DOCUMENT, [], []) == DOCUMENT
