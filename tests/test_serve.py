"""`transformer-mt serve` as a real server process on a loopback port: every endpoint, every
error status, 64 concurrent requests, a SIGTERM drain, and the page in a real browser."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import import_extra

import_extra("fastapi", "serve")

from transformer_mt import Translator  # noqa: E402
from transformer_mt.commands import main as cli  # noqa: E402
from transformer_mt.inference.attention_weights import attention_arrays, sentence_ids  # noqa: E402

WORDS = "the a cat dog house tree runs sleeps eats big small red green blue over under".split()


def distinct_sentences(n: int) -> list[str]:
    """n different short sentences from the tiny checkpoint's vocabulary."""
    return [f"{WORDS[i % 16]} {WORDS[(i // 16 + 3) % 16]} {WORDS[(i * 7 + 1) % 16]}"
            for i in range(n)]


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any


@dataclass
class Server:
    process: subprocess.Popen
    url: str

    def call(self, path: str, body: Any = None, form: dict | None = None,
             raw: bytes | None = None, content_type: str = "application/json",
             timeout: float = 60) -> Reply:
        """One request; the reply's body is parsed as JSON unless it is the HTML page."""
        data, headers = raw, {"Content-Type": content_type}
        if body is not None:
            data = json.dumps(body).encode()
        elif form is not None:
            data = urllib.parse.urlencode(form, doseq=True).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        request = urllib.request.Request(self.url + path, data=data,
                                         headers=headers if data is not None else {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, text, reply_headers = response.status, response.read(), response.headers
        except urllib.error.HTTPError as exc:
            status, text, reply_headers = exc.code, exc.read(), exc.headers
        kind = reply_headers.get("content-type", "")
        parsed = json.loads(text) if kind.startswith("application/json") else text.decode()
        return Reply(status, dict(reply_headers), parsed)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(checkpoint: Path, *options: str) -> Server:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "transformer_mt.commands.main", "serve",
         "--checkpoint", str(checkpoint), "--port", str(port), "--device", "cpu", *options],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    server = Server(process, f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited with {process.returncode}: "
                                 f"{process.stderr.read()}")
        try:
            if server.call("/health", timeout=2).status == 200:
                return server
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise AssertionError("serve did not answer /health within 120 s")


def stop(server: Server) -> tuple[int, str]:
    """SIGTERM, then the exit status and stderr."""
    server.process.send_signal(signal.SIGTERM)
    try:
        _, err = server.process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        server.process.kill()
        raise
    return server.process.returncode, err


@pytest.fixture(scope="module")
def translator(tiny_checkpoint: Path) -> Translator:
    return Translator.from_checkpoint(tiny_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def server(tiny_checkpoint: Path) -> Iterator[Server]:
    """The server most tests share: batching with a 50 ms window, small limits."""
    running = start_server(tiny_checkpoint, "--max-wait-ms", "50", "--max-chars", "200",
                           "--max-texts", "8")
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
    many = server.call("/translate", {"q": texts, "source": "auto", "target": "de"})
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


@pytest.mark.parametrize(("path", "body", "status", "message"), [
    ("/translate", {"q": "the cat", "source": "fr", "target": "de"}, 400, "language pair fr-de"),
    ("/translate", {"q": "the cat", "source": "en", "target": "en"}, 400, "translates en-de"),
    ("/translate", {"q": "the cat", "source": "en", "target": "de", "format": "html"}, 400,
     "format"),
    ("/translate", {"source": "en", "target": "de"}, 422, "q"),
    ("/translate", {"q": 5, "source": "en", "target": "de"}, 422, "q"),
    ("/translate", {"q": [], "source": "en", "target": "de"}, 422, "no text"),
    ("/translate", {"q": "x" * 201, "source": "en", "target": "de"}, 413, "201 characters"),
    ("/translate", {"q": ["a"] * 9, "source": "en", "target": "de"}, 413, "9 texts"),
    ("/v1/translate", {"text": "the cat", "beam_size": 0}, 422, "beam_size must be >= 1"),
    ("/v1/translate", {"text": "the cat", "nbest": 5, "beam_size": 2}, 422, "exceeds"),
    ("/v1/translate", {"text": "the cat", "no_such_option": 1}, 422, "no_such_option"),
    ("/v1/translate", {"text": "y" * 300}, 413, "300 characters"),
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


def test_full_queue_is_503_with_retry_after_and_slow_requests_504(tiny_checkpoint: Path) -> None:
    """A 2 s batching window, room for one waiting request and a 0.5 s timeout: the first
    request waits (then times out, 504), the second finds the queue full (503)."""
    slow = start_server(tiny_checkpoint, "--queue-size", "1", "--max-wait-ms", "2000",
                        "--timeout", "0.5")
    try:
        body = {"q": "the cat", "source": "en", "target": "de"}
        first: list[Reply] = []
        waiting = threading.Thread(target=lambda: first.append(slow.call("/translate", body)))
        waiting.start()
        time.sleep(0.2)
        full = slow.call("/translate", body)
        waiting.join()
        assert full.status == 503 and full.headers["retry-after"] == "1"
        assert "too many requests waiting" in full.body["error"]
        assert first[0].status == 504 and "longer than 0.5 s" in first[0].body["error"]
        assert slow.call("/health").status == 200
    finally:
        rc, err = stop(slow)
    assert rc == 0, err


def test_sigterm_finishes_requests_in_flight_then_exits_0(tiny_checkpoint: Path,
                                                           translator: Translator) -> None:
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
    rc, err = stop(draining)
    for thread in threads:
        thread.join()
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


CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def test_page_in_a_real_browser(server: Server, translator: Translator) -> None:
    """Headless Chromium opens /, types a sentence, clicks Translate and reads the
    translation. Skipped where Chromium is not installed, except in CI (CI=true)."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:
        message = (f"{' and '.join(missing)} not installed (apt-get install chromium "
                   "chromium-driver)")
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the browser test: {message}")
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = Path(os.environ.get("TMPDIR", "/tmp")) / f"chromium-profile-{os.getpid()}"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    sentence = distinct_sentences(5)[4]
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        driver.set_page_load_timeout(30)
        driver.get(server.url + "/")
        driver.find_element(By.ID, "source").send_keys(sentence)
        driver.find_element(By.ID, "translate").click()
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: d.find_element(By.ID, "latency").text.endswith("ms"))
        translation = driver.find_element(By.ID, "translation").text
        driver.find_element(By.ID, "show-attention").click()  # draws the cross-attention grid
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#attention table"))
        rows = driver.find_elements(By.CSS_SELECTOR, "#attention tbody tr")
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    expected = translator.translate(sentence)
    assert translation.split() == expected.split()  # the browser renders runs of spaces as one
    # one row per target token of the translation, and its end of sentence
    assert len(rows) == len(translator.loaded.tokenizer.encode([expected])[0]) + 1
