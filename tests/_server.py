"""A real `transformer-mt serve` process on a loopback port, for the server tests: start,
call (JSON, form or raw bytes), stop with SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
             timeout: float = 60, headers: dict[str, str] | None = None,
             method: str | None = None) -> Reply:
        """One request; the reply's body is parsed as JSON unless it is the HTML page."""
        data, extra = raw, headers or {}
        headers = {"Content-Type": content_type}
        if body is not None:
            data = json.dumps(body).encode()
        elif form is not None:
            data = urllib.parse.urlencode(form, doseq=True).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        request = urllib.request.Request(
            self.url + path, data=data, method=method,
            headers={**(headers if data is not None else {}), **extra})
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


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")
