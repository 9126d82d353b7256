"""LibreTranslate's API as its clients use it, against a real loopback server: the client
library `libretranslatepy`, raw requests copied from LibreTranslate's API documentation
(docs.libretranslate.com, "API Usage", with our language pair), `source: "auto"`, /detect,
/frontend/settings, HTML, parameters from the query string, region codes, API keys, rate
limits and CORS."""

from __future__ import annotations

import html
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._server import Server, start_server, stop
from tests.conftest import import_extra

import_extra("fastapi", "serve")
LibreTranslateAPI = import_extra("libretranslatepy", "dev").LibreTranslateAPI

from transformer_mt import Translator  # noqa: E402


@pytest.fixture(scope="module")
def translator(tiny_checkpoint: Path) -> Translator:
    return Translator.from_checkpoint(tiny_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def server(tiny_checkpoint: Path) -> Iterator[Server]:
    running = start_server(tiny_checkpoint, "--max-wait-ms", "5", "--cors-origins",
                           "http://example.org")
    yield running
    rc, err = stop(running)
    assert rc == 0 and "Traceback" not in err, err


def test_the_libretranslatepy_client(server: Server, translator: Translator) -> None:
    """libretranslatepy sends URL-encoded forms (and a GET with a body for /languages)."""
    client = LibreTranslateAPI(server.url)
    text = "the cat sleeps. a dog runs!\n\nthe big house"
    assert client.translate(text, "en", "de") == translator.translate(text,
                                                                      split_sentences=True)
    assert client.languages() == [{"code": "en", "name": "English", "targets": ["de"]},
                                  {"code": "de", "name": "German", "targets": []}]
    detected = client.detect("Where is the train station? I would like to buy a ticket.")
    assert detected[0]["language"] == "en" and 90 < detected[0]["confidence"] <= 100
    assert [set(d) for d in detected] == [{"confidence", "language"}] * len(detected)


def test_raw_requests_from_libretranslates_documentation(server: Server,
                                                          translator: Translator) -> None:
    """The documentation's examples (simple, auto detection, HTML, alternatives), sent as
    its JavaScript sends them, for our en-de pair."""
    simple = server.call("/translate", {"q": "Hello!", "source": "en", "target": "de",
                                        "api_key": "xxxxxx"})
    assert simple.body == {"translatedText": translator.translate("Hello!")}
    auto = server.call("/translate", {"q": "Where is the train station?", "source": "auto",
                                      "target": "de", "api_key": "xxxxxx"})
    assert auto.body["detectedLanguage"]["language"] == "en"
    assert auto.body["translatedText"] == translator.translate("Where is the train station?")
    markup = server.call("/translate", {"q": '<p class="green">Hello!</p>', "source": "en",
                                        "target": "de", "format": "html", "api_key": "xxxxxx"})
    assert markup.body == {"translatedText": '<p class="green">'
                           f'{html.escape(translator.translate("Hello!"), quote=False)}</p>'}
    alternatives = server.call("/translate", {"q": "Hello", "source": "en", "target": "de",
                                              "format": "text", "alternatives": 3,
                                              "api_key": "xxxxxx"})
    nbest = translator.translate("Hello", beam_size=4, nbest=4)
    assert alternatives.body == {"translatedText": nbest[0].text,
                                 "alternatives": [h.text for h in nbest[1:]]}


def test_auto_detection_per_text_and_refusal_of_another_language(server: Server) -> None:
    texts = ["Where is the train station?", "the cat"]
    reply = server.call("/translate", {"q": texts, "source": "auto", "target": "de"}).body
    assert [d["language"] for d in reply["detectedLanguage"]] == ["en", "en"]
    assert len(reply["translatedText"]) == 2
    french = server.call("/translate", {"q": "Bonjour, comment allez-vous aujourd'hui ? Je "
                                        "voudrais un café.", "source": "auto", "target": "de"})
    assert french.status == 400
    assert "looks like French (fr), not English (en)" in french.body["error"]
    german = server.call("/translate", {"q": ["the cat", "Wo ist der Bahnhof? Ich möchte eine "
                                        "Fahrkarte kaufen."], "source": "auto", "target": "de"})
    assert german.status == 400 and "text 1 looks like German (de)" in german.body["error"]
    detect = server.call("/detect", {"q": "Wo ist der Bahnhof? Ich möchte eine Fahrkarte "
                                          "kaufen."}).body
    assert detect[0]["language"] == "de" and detect[0]["confidence"] > 90


def test_html_keeps_markup_and_translates_text(server: Server, translator: Translator) -> None:
    document = ('<div id="a" title="the cat"><p>the cat sleeps. a dog runs!</p>\n'
                '<script>var s = "the cat";</script><code>the dog</code> <b>big house</b></div>')
    reply = server.call("/translate", {"q": [document, "<br>"], "source": "en",
                                       "target": "de", "format": "html"}).body
    first = translator.translate("the cat sleeps. a dog runs!", split_sentences=True)
    expected = (f'<div id="a" title="the cat"><p>{html.escape(first, quote=False)}</p>\n'
                '<script>var s = "the cat";</script><code>the dog</code> '
                f'<b>{html.escape(translator.translate("big house"), quote=False)}</b></div>')
    assert reply["translatedText"] == [expected, "<br>"]


def test_query_string_form_region_codes_and_frontend_settings(server: Server,
                                                              translator: Translator) -> None:
    query = server.call("/translate?q=the%20cat&source=en-US&target=de_DE", raw=b"",
                        content_type="text/plain")
    assert query.body == {"translatedText": translator.translate("the cat")}
    form = server.call("/translate", form={"q": ["the cat", "a dog"], "source": "EN",
                                           "target": "de-AT"})
    assert form.body == {"translatedText": translator.translate(["the cat", "a dog"])}
    settings = server.call("/frontend/settings").body
    assert settings["charLimit"] == 2000 and settings["keyRequired"] is False
    assert settings["language"] == {"source": {"code": "en", "name": "English"},
                                    "target": {"code": "de", "name": "German"}}


def test_cors_only_for_the_configured_origin(server: Server, tiny_checkpoint: Path) -> None:
    preflight = server.call("/translate", method="OPTIONS", headers={
        "Origin": "http://example.org", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert preflight.status == 200
    assert preflight.headers["access-control-allow-origin"] == "http://example.org"
    other = server.call("/languages", headers={"Origin": "http://elsewhere.example"})
    assert "access-control-allow-origin" not in other.headers


def test_api_keys_403_and_rate_limits_429(tiny_checkpoint: Path, tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text("alpha 2\nbeta\n", encoding="utf-8")
    guarded = start_server(tiny_checkpoint, "--api-keys", str(keys), "--req-limit", "100")
    try:
        body = {"q": "the cat", "source": "en", "target": "de"}
        assert guarded.call("/translate", body).status == 403
        assert guarded.call("/translate", {**body, "api_key": "nope"}).body == {
            "error": "Invalid API key"}
        assert guarded.call("/v1/translate", {"text": "the cat"}).status == 403
        assert guarded.call("/v1/translate", {"text": "the cat"},
                            headers={"Authorization": "Bearer beta"}).status == 200
        assert [guarded.call("/translate", {**body, "api_key": "alpha"}).status
                for _ in range(2)] == [200, 200]
        third = guarded.call("/translate", {**body, "api_key": "alpha"})
        assert third.status == 429 and int(third.headers["retry-after"]) >= 1
        assert "Slowdown" in third.body["error"]
        assert guarded.call("/languages").status == 200  # exempt, as in LibreTranslate
        assert guarded.call("/frontend/settings").body["keyRequired"] is True
    finally:
        rc, err = stop(guarded)
    assert rc == 0, err
    limited = start_server(tiny_checkpoint, "--req-limit", "1")
    try:
        statuses = [limited.call("/translate", body).status for _ in range(2)]
        assert statuses == [200, 429]  # one a minute per address without keys
    finally:
        rc, err = stop(limited)
    assert rc == 0, err
