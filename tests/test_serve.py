"""`transformer-mt serve` as a real server process on a loopback port: every endpoint, every
error status, 64 concurrent requests, a SIGTERM drain, and the page in a real browser."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from tests._server import Reply, Server, chromium, distinct_sentences, rss_mb, start_server, stop
from tests.conftest import import_extra

import_extra("fastapi", "serve")

from transformer_mt import Translator  # noqa: E402
from transformer_mt.commands import main as cli  # noqa: E402
from transformer_mt.inference.attention_weights import attention_arrays, sentence_ids  # noqa: E402


@pytest.fixture(scope="module")
def translator(tiny_checkpoint: Path) -> Translator:
    return Translator.from_checkpoint(tiny_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def server(tiny_checkpoint: Path) -> Iterator[Server]:
    """The server most tests share: batching with a 50 ms window, small limits."""
    running = start_server(tiny_checkpoint, "--max-wait-ms", "50", "--max-chars", "200",
                           "--max-texts", "8", "--max-text-tokens", "512",
                           "--max-request-tokens", "1024")
    yield running
    rc, err = stop(running)
    assert rc == 0 and "Traceback" not in err, err


def test_health_info_languages_and_page(server: Server, translator: Translator) -> None:
    assert server.call("/health").body == {"status": "ok"}
    info = server.call("/info").body
    config = translator.loaded.model.config
    assert (info["source"], info["target"]) == ("en", "de")
    assert info["model"]["d_model"] == config.d_model
    assert info["vocabulary"]["size"] == translator.loaded.tokenizer.vocab_size
    assert info["limits"]["max_texts"] == 8 and info["batching"]["enabled"] is True
    assert server.call("/languages").body == [
        {"code": "en", "name": "English", "targets": ["de"]},
        {"code": "de", "name": "German", "targets": []},
    ]
    page = server.call("/")
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="translate"' in page.body and 'id="source"' in page.body
    assert "http://" not in page.body and "https://" not in page.body  # nothing from a CDN


def test_libretranslate_json_and_form_bodies(server: Server, translator: Translator) -> None:
    texts = distinct_sentences(3)
    expected = translator.translate(texts)
    one = server.call("/translate", {"q": texts[0], "source": "en", "target": "de",
                                     "format": "text", "api_key": ""})
    assert one.status == 200 and one.body == {"translatedText": expected[0]}
    many = server.call("/translate", {"q": texts, "source": "en", "target": "de"})
    assert many.body == {"translatedText": expected}
    form = server.call("/translate", form={"q": texts[1], "source": "en", "target": "de"})
    assert form.body == {"translatedText": expected[1]}
    boundary = "XyZ"
    multipart = "".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n'
                        f"{v}\r\n" for k, v in (("q", texts[2]), ("source", "en"),
                                                ("target", "de"))) + f"--{boundary}--\r\n"
    reply = server.call("/translate", raw=multipart.encode(),
                        content_type=f"multipart/form-data; boundary={boundary}")
    assert reply.body == {"translatedText": expected[2]}
    alternatives = server.call("/translate", {"q": texts[0], "source": "en", "target": "de",
                                              "alternatives": 2}).body
    nbest = translator.translate(texts[0], beam_size=4, nbest=3)
    assert alternatives == {"translatedText": nbest[0].text,
                            "alternatives": [h.text for h in nbest[1:]]}


def test_v1_translate_with_options_and_scores(server: Server, translator: Translator) -> None:
    texts = [*distinct_sentences(2), ""]
    reply = server.call("/v1/translate", {"text": texts, "beam_size": 3, "nbest": 2,
                                          "length_penalty": 1.0})
    assert reply.status == 200
    expected = translator.translate(texts, beam_size=3, nbest=2, length_penalty=1.0)
    for got, want in zip(reply.body["translations"], expected, strict=True):
        assert [h["text"] for h in got["nbest"]] == [h.text for h in want]
        assert [h["score"] for h in got["nbest"]] == pytest.approx([h.score for h in want])
        assert got["text"] == want[0].text and got["log_prob"] == pytest.approx(want[0].log_prob)
    sampled = {"text": texts[:2], "sampling": True, "seed": 3, "nbest": 2, "top_k": 5}
    first = server.call("/v1/translate", sampled).body["translations"]
    assert server.call("/v1/translate", sampled).body["translations"] == first
    want = translator.translate(texts[:2], sampling=True, seed=3, nbest=2, top_k=5)
    assert [[h["text"] for h in t["nbest"]] for t in first] == [[h.text for h in w]
                                                                 for w in want]


def test_v1_attention_is_the_attention_commands_cross_grid(server: Server,
                                                           translator: Translator) -> None:
    text = distinct_sentences(1)[0]
    reply = server.call("/v1/attention", {"text": text})
    assert reply.status == 200
    src, tgt = sentence_ids(translator.loaded, text, None)
    arrays, tokens = attention_arrays(translator.loaded, src, tgt)
    body = reply.body
    assert body["source_tokens"] == tokens["source_tokens"]
    assert body["target_tokens"] == tokens["target_tokens"]
    grid = np.array(body["cross"])  # (layers, target, source), the mean over heads
    np.testing.assert_allclose(grid, arrays["cross"].mean(axis=1), atol=1e-4)
    np.testing.assert_allclose(grid.sum(axis=-1), 1.0, atol=1e-2)
    # 4 decimals in the JSON itself: no float32 noise such as 0.010300000198185444
    assert all(v == round(v, 4) for v in grid.ravel().tolist())


@pytest.mark.parametrize(("path", "body", "status", "message"), [
    ("/translate", {"q": "the cat", "source": "fr", "target": "de"}, 400, "fr is not supported"),
    ("/translate", {"q": "the cat", "source": "en", "target": "en"}, 400, "translates English"),
    ("/translate", {"q": "the cat", "source": "en", "target": "de", "format": "pdf"}, 400,
     "pdf format is not supported"),
    ("/translate", {"source": "en", "target": "de"}, 400, "missing q parameter"),
    ("/translate", {"q": "", "source": "en", "target": "de"}, 400, "missing q parameter"),
    ("/translate", {"q": [], "source": "en", "target": "de"}, 400, "missing q parameter"),
    ("/translate", {"q": 5, "source": "en", "target": "de"}, 400, "q must be a string"),
    ("/translate", {"q": "the cat", "target": "de"}, 400, "missing source parameter"),
    ("/translate", {"q": "the cat", "source": "en"}, 400, "missing target parameter"),
    ("/translate", {"q": "the cat", "source": "en", "target": "de", "alternatives": "x"}, 400,
     "alternatives parameter is not a number"),
    ("/translate", {"q": "the cat", "source": "en", "target": "de", "alternatives": 9}, 400,
     "alternatives parameter must be <= 8"),
    ("/translate", {"q": "x" * 201, "source": "en", "target": "de"}, 400, "201 characters"),
    ("/translate", {"q": ["a"] * 9, "source": "en", "target": "de"}, 400, "9 texts"),
    ("/translate", {"q": "😺" * 190, "source": "en", "target": "de"}, 400, "subword tokens"),
    ("/translate", ["not", "an", "object"], 400, "Invalid JSON format"),
    ("/detect", {"q": ""}, 400, "missing q parameter"),
    ("/v1/translate", {"text": "the cat", "beam_size": 0}, 422, "beam_size must be >= 1"),
    ("/v1/translate", {"text": "the cat", "beam_size": 5000}, 422, "beam_size must be at most 16"),
    ("/v1/translate", {"text": "the cat", "sampling": True, "nbest": 64}, 422, "nbest must be at"),
    ("/v1/translate", {"text": "the cat", "nbest": 5, "beam_size": 2}, 422, "exceeds"),
    ("/v1/translate", {"text": "the cat", "max_len_b": 10**9}, 422, "max_len_b must be at most"),
    ("/v1/translate", {"text": "the cat", "top_k": 10**6}, 422, "top_k must be at most"),
    ("/v1/translate", {"text": "the cat", "sampling": True, "seed": -1}, 422, "seed must be"),
    ("/v1/translate", {"text": "the cat", "no_such_option": 1}, 422, "no_such_option"),
    ("/v1/translate", {"text": "y" * 300}, 413, "300 characters"),
    ("/v1/translate", {"text": "😺" * 190}, 413, "761 subword tokens; the limit is 512"),
    ("/v1/translate", {"text": ["😺" * 40] * 8}, 413, "over 1024 subword tokens"),
    ("/v1/attention", {"text": "   "}, 422, "empty"),
])
def test_errors_are_json_with_the_right_status(server: Server, path: str, body: dict,
                                               status: int, message: str) -> None:
    reply = server.call(path, body)
    assert reply.status == status and message in reply.body["error"], reply.body


def test_malformed_bodies_and_unknown_paths(server: Server) -> None:
    for path in ("/translate", "/v1/translate"):
        reply = server.call(path, raw=b'{"q": "the cat", ', content_type="application/json")
        assert reply.status == 400 and "malformed JSON" in reply.body["error"]
    huge = server.call("/v1/translate", raw=b"x" * 100_000)
    assert huge.status == 413 and "over the limit" in huge.body["error"]
    assert server.call("/no/such/page").body == {"error": "Not Found"}
    assert server.call("/health").status == 200  # none of this hurt the server


PARAGRAPHS = ("the cat sleeps. a dog runs!\n\n  the big house. the red tree\r\n"
              "\tsmall green dog.")


def test_paragraphs_are_translated_sentence_by_sentence_in_place(
        server: Server, translator: Translator) -> None:
    """Both APIs split a text into sentences and keep its blank lines, indentation and CRLF;
    /v1 can take a text whole instead."""
    expected = translator.translate(PARAGRAPHS, split_sentences=True)
    assert "\n\n  " in expected and "\r\n\t" in expected
    lt = server.call("/translate", {"q": PARAGRAPHS, "source": "en", "target": "de"})
    assert lt.body == {"translatedText": expected}
    v1 = server.call("/v1/translate", {"text": [PARAGRAPHS, "the cat"]}).body["translations"]
    assert [t["text"] for t in v1] == [expected, translator.translate("the cat")]
    whole = server.call("/v1/translate", {"text": "the cat. a dog.", "split_sentences": False})
    assert whole.body["translations"][0]["text"] == translator.translate("the cat. a dog.")


def test_nan_infinity_and_huge_options_are_refused_without_harm(server: Server) -> None:
    """NaN and Infinity (which Python's JSON reader accepts) are 422 on /v1 and 400 on
    LibreTranslate's API; a beam of 5,000 is refused before anything is allocated."""
    for raw in (b'{"text": "the cat", "length_penalty": NaN}',
                b'{"text": "the cat", "temperature": Infinity, "sampling": true}',
                b'{"text": "the cat", "top_p": -Infinity, "sampling": true}'):
        reply = server.call("/v1/translate", raw=raw)
        assert reply.status == 422 and "finite number" in reply.body["error"], reply.body
    lt = server.call("/translate", raw=b'{"q": "the cat", "source": "en", "target": "de", '
                                       b'"alternatives": NaN}')
    assert lt.status == 400 and "malformed JSON" in lt.body["error"]
    before = rss_mb(server.process.pid)
    for beam in (5000, 10**6):
        reply = server.call("/v1/translate", {"text": ["the cat sleeps"] * 8,
                                              "beam_size": beam, "nbest": 2})
        assert reply.status == 422 and "at most 16" in reply.body["error"]
    assert rss_mb(server.process.pid) - before < 50
    assert server.call("/health").status == 200


def test_a_chunked_10_mb_body_stops_at_the_limit_and_the_next_request_is_served(
        server: Server, translator: Translator) -> None:
    """No Content-Length: the body is counted as it arrives; 413 comes at the first byte over
    the limit, and the server serves the next request (on the same connection too)."""
    port = int(server.url.rsplit(":", 1)[1])
    chunk = b"x" * 65536
    head = (b"POST /v1/translate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(head)
        for _ in range(160):  # 10 MB
            sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        sock.sendall(b"0\r\n\r\n")
        reply = sock.makefile("rb")
        status = reply.readline()
        headers = {}
        while (line := reply.readline()) not in (b"\r\n", b""):
            name, value = line.decode().split(":", 1)
            headers[name.strip().lower()] = value.strip()
        body = json.loads(reply.read(int(headers["content-length"])))
        assert status.startswith(b"HTTP/1.1 413") and "over the limit" in body["error"]
        assert "x-request-id" in headers
        payload = json.dumps({"text": "the cat"}).encode()
        sock.sendall(b"POST /v1/translate HTTP/1.1\r\nHost: x\r\nContent-Type: "
                     b"application/json\r\nContent-Length: %d\r\n\r\n" % len(payload)
                     + payload)
        assert reply.readline().startswith(b"HTTP/1.1 200")
    assert server.call("/v1/translate", {"text": "the cat"}).body["translations"][0][
        "text"] == translator.translate("the cat")


def test_info_has_no_paths_and_v1_reports_truncation(server: Server,
                                                      tiny_checkpoint: Path) -> None:
    info = server.call("/info").body
    assert info["checkpoint"] == tiny_checkpoint.name
    assert str(tiny_checkpoint.parent) not in json.dumps(info)
    assert info["limits"]["max_beam"] == 16 and info["limits"]["max_text_tokens"] == 512
    long = " ".join(["a"] * 80)  # one sentence over the tiny model's 63 source tokens
    reply = server.call("/v1/translate", {"text": [long, "the cat"], "max_len_b": 2}).body
    assert [t["truncated"] for t in reply["translations"]] == [True, False]


def test_tokenization_happens_once_and_off_the_event_loop(tiny_checkpoint: Path) -> None:
    """In-process: the service tokenizes each text once, in its worker thread; the search
    gets the ids and never calls the tokenizer's encode again."""
    from transformer_mt.inference.search import SearchOptions
    from transformer_mt.serving.batcher import Batcher
    from transformer_mt.serving.service import TranslationService
    from transformer_mt.serving.settings import ServerSettings

    translator = Translator.from_checkpoint(tiny_checkpoint, device="cpu")
    calls: list[tuple[str, int]] = []
    encode = translator.loaded.tokenizer.encode

    def counting(texts):
        calls.append((threading.current_thread().name, len(texts)))
        return encode(texts)

    translator.loaded.tokenizer.encode = counting  # type: ignore[method-assign]
    batcher = Batcher(translator, ServerSettings(checkpoint="unused", max_wait=0.0))
    service = TranslationService(batcher)
    loop_thread = threading.Thread(target=batcher.run, daemon=True)
    loop_thread.start()
    try:
        results = asyncio.run(service.translate(["the cat sleeps. a dog runs."],
                                                SearchOptions()))
    finally:
        batcher.stop()
        loop_thread.join()
    assert [(name.startswith("transformer-mt-text"), n) for name, n in calls] == [(True, 2)]
    translator.loaded.tokenizer.encode = encode  # type: ignore[method-assign]
    assert results[0].nbest[0].text == translator.translate("the cat sleeps. a dog runs.",
                                                            split_sentences=True)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_attention_and_translation_run_on_the_models_device(tiny_checkpoint: Path) -> None:
    """/v1/attention's computation and the server's searches build every tensor on the
    model's device (they used to build CPU tensors and fail with --device cuda)."""
    from transformer_mt.serving.api_v1 import cross_attention

    gpu = Translator.from_checkpoint(tiny_checkpoint, device="cuda")
    cpu = Translator.from_checkpoint(tiny_checkpoint, device="cpu")
    grid = np.array(cross_attention(gpu, "the cat sleeps", None)["cross"])
    np.testing.assert_allclose(grid, np.array(cross_attention(cpu, "the cat sleeps",
                                                              None)["cross"]), atol=1e-3)
    ids = gpu.loaded.tokenizer.encode(["the cat sleeps"])
    result = gpu.search(["the cat sleeps"], token_ids=ids)
    assert gpu.texts([result.hypotheses[0][0]]) == [cpu.translate("the cat sleeps")]


def test_64_concurrent_requests_each_get_their_own_translation(
    server: Server, translator: Translator
) -> None:
    """Short searches (beam 2, at most 6 tokens past the source length) keep the 64 reference
    translations of a random model cheap; the merging is the same as for any search."""
    options = {"beam_size": 2, "max_len_b": 6}
    sentences = distinct_sentences(64)
    expected = [translator.translate(s, **options) for s in sentences]  # each alone
    assert len(set(expected)) > 32, "translations must differ to show they are not mixed up"
    before = server.call("/info").body["batching"]

    def ask(sentence: str) -> Reply:
        return server.call("/v1/translate", {"text": sentence, **options})

    with ThreadPoolExecutor(max_workers=64) as pool:
        replies = list(pool.map(ask, sentences))
    assert [r.status for r in replies] == [200] * 64
    assert [r.body["translations"][0]["text"] for r in replies] == expected
    after = server.call("/info").body["batching"]
    assert after["requests_run"] - before["requests_run"] == 64
    assert after["batches_run"] - before["batches_run"] < 64, (
        "concurrent requests were never merged into one batch")
    deadline = time.monotonic() + 10  # the last batch adds its time once it has returned
    while after["busy_s"] <= before["busy_s"] and time.monotonic() < deadline:
        time.sleep(0.05)
        after = server.call("/info").body["batching"]
    assert after["busy_s"] > before["busy_s"]


def test_full_queue_503_a_504_never_runs_and_a_disconnect_cancels(tiny_checkpoint: Path) -> None:
    """A 2 s batching window, room for one waiting request and a 0.8 s timeout: the first
    request waits (then times out, 504), the second finds the queue full (503). The timed-out
    job leaves the queue at once and never runs (/info), so the next request is queued; that
    one's client hangs up, which drops its job too."""
    slow = start_server(tiny_checkpoint, "--queue-size", "1", "--max-wait-ms", "2000",
                        "--timeout", "0.8")
    try:
        body = {"q": "the cat", "source": "en", "target": "de"}
        first: list[Reply] = []
        waiting = threading.Thread(target=lambda: first.append(slow.call("/translate", body)))
        waiting.start()
        time.sleep(0.3)
        full = slow.call("/translate", body)
        waiting.join()
        assert full.status == 503 and full.headers["retry-after"] == "1"
        assert "too many requests waiting" in full.body["error"]
        assert first[0].status == 504 and "longer than 0.8 s" in first[0].body["error"]
        counters = slow.call("/info").body["batching"]
        assert counters["dropped"] == {"queue full": 1, "timed out": 1}
        with socket.create_connection(("127.0.0.1", int(slow.url.rsplit(":", 1)[1]))) as sock:
            payload = json.dumps(body).encode()
            sock.sendall(b"POST /translate HTTP/1.1\r\nHost: x\r\nContent-Type: "
                         b"application/json\r\nContent-Length: " + str(len(payload)).encode()
                         + b"\r\n\r\n" + payload)
            time.sleep(0.3)  # queued (the queue had room again), then the client goes away
        time.sleep(0.3)
        counters = slow.call("/info").body["batching"]
        assert counters["dropped"] == {"queue full": 1, "timed out": 1, "disconnected": 1}
        assert counters["requests_run"] == 0 and counters["batches_run"] == 0
        assert slow.call("/health").status == 200
    finally:
        rc, err = stop(slow)
    assert rc == 0, err


def test_sigterm_drains_new_requests_get_503_in_flight_ones_finish(
        tiny_checkpoint: Path, translator: Translator) -> None:
    """At SIGTERM the server drains: requests in flight (waiting in a 1.5 s batching window)
    are answered, new ones and /health get 503 with Retry-After meanwhile, then it exits 0."""
    draining = start_server(tiny_checkpoint, "--max-wait-ms", "1500")
    sentences = distinct_sentences(3)
    replies: list[Reply] = []

    def ask(sentence: str) -> None:
        replies.append(draining.call("/translate", {"q": sentence, "source": "en",
                                                    "target": "de"}))

    threads = [threading.Thread(target=ask, args=(s,)) for s in sentences]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # the requests wait in the 1.5 s batching window
    draining.process.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    health = draining.call("/health")
    late = draining.call("/translate", {"q": "the cat", "source": "en", "target": "de"})
    _, err = draining.process.communicate(timeout=60)  # (a second SIGTERM would force it)
    rc = draining.process.returncode
    for thread in threads:
        thread.join()
    assert (health.status, health.headers["retry-after"]) == (503, "5")
    assert late.status == 503 and "shutting down" in late.body["error"]
    assert rc == 0 and "Traceback" not in err, err
    assert sorted(r.body["translatedText"] for r in replies) == sorted(
        translator.translate(sentences))
    with pytest.raises(OSError):  # and it no longer accepts connections
        draining.call("/health", timeout=5)


def test_bad_checkpoint_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["serve", "--checkpoint", str(tmp_path / "missing.ckpt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such file" in err
    assert cli.main(["serve", "--checkpoint", "x.ckpt", "--queue-size", "0"]) == 2
    assert "--queue-size must be > 0, got 0" in capsys.readouterr().err


def test_a_port_in_use_is_an_error_not_a_server(server: Server, tiny_checkpoint: Path) -> None:
    port = server.url.rsplit(":", 1)[1]
    second = subprocess.run(
        [sys.executable, "-m", "transformer_mt.commands.main", "serve", "--checkpoint",
         str(tiny_checkpoint), "--port", port, "--device", "cpu"],
        capture_output=True, text=True, timeout=120,
    )
    assert second.returncode == 2 and "Traceback" not in second.stderr
    assert second.stderr.splitlines()[-1] == (
        f"transformer-mt: error: serve: could not start on 127.0.0.1:{port} (uvicorn's "
        "message is above; a port in use: pick another --port or stop what uses it)")
    assert "serving" not in second.stdout
    assert server.call("/health").status == 200  # the first server is unharmed


def test_page_in_a_real_browser(server: Server, translator: Translator) -> None:
    """Headless Chromium opens /, pastes a two-paragraph text, clicks Translate and reads the
    translation: sentence by sentence, the blank line between the paragraphs kept. Skipped
    where Chromium is not installed, except in CI (CI=true)."""
    sentence = "the cat sleeps. a dog runs!\n\nthe big house. small green dog"
    single = distinct_sentences(5)[4]
    with chromium() as driver:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        driver.get(server.url + "/")
        driver.find_element(By.ID, "source").send_keys(sentence)
        driver.find_element(By.ID, "translate").click()
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: d.find_element(By.ID, "latency").text.endswith("ms"))
        translation = driver.find_element(By.ID, "translation").text
        driver.find_element(By.ID, "source").clear()
        driver.find_element(By.ID, "source").send_keys(single)
        driver.find_element(By.ID, "show-attention").click()  # draws the cross-attention grid
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#attention table"))
        rows = driver.find_elements(By.CSS_SELECTOR, "#attention tbody tr")
    expected = translator.translate(sentence, split_sentences=True)
    # two paragraphs and a blank line; the browser renders runs of spaces as one
    assert [line.split() for line in translation.split("\n")] == [
        line.split() for line in expected.split("\n")]
    assert len(expected.split("\n")) == 3
    # then one sentence's cross-attention: one row per target token of its translation, and
    # its end of sentence
    assert len(rows) == len(translator.loaded.tokenizer.encode(
        [translator.translate(single)])[0]) + 1
