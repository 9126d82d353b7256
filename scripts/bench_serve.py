"""Throughput and latency of `transformer-mt serve` under concurrent clients, loopback only.

For each server mode (dynamic batching on; batching off, i.e. one request at a time as
OpenNMT-py's server and LibreTranslate work) a fresh `transformer-mt serve` process is started
on 127.0.0.1, warmed up, and then, for each client count C (default 1, 8, 32, 128), C clients
each send single test2016 sentences to POST /translate (LibreTranslate's API), one after the
other on a kept-alive connection, until the sentences of that level are used up or its time
limit passes. Reported per level: sentences/s (completed requests / wall time), the p50 / p95
request latency, the CPU seconds the clients used, and from the server's /info the mean
requests per batch and the share of the wall time its model loop was busy. The reference is
offline `Translator.translate` of the same sentences in this process (what `transformer-mt
translate` runs), with the same beam: the median of 3 passes; and the same sentences
translated --slice-size at a time, in order and sorted by length, the bound of any server
whose batches hold that many sentences.

Bounded: at most --sentences requests per level and --level-timeout seconds per level; every
request goes to 127.0.0.1. The clients are asyncio connections in this process, which write
prepared requests and read the answers, so that they take as little as possible of the CPU
they share with the server.

  python scripts/bench_serve.py --checkpoint runs/demo/averaged.ckpt
  python scripts/bench_serve.py --checkpoint CKPT --sentences 256 --json runs/bench_serve.json \
      --plot docs/serve_throughput.png
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import lzma
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(checkpoint: str, batching: bool, max_wait_ms: float, threads: int) -> tuple[
        subprocess.Popen, int]:
    """A fresh server process on a free loopback port, answering /health."""
    port = free_port()
    argv = [sys.executable, "-m", "transformer_mt.commands.main", "serve",
            "--checkpoint", checkpoint, "--host", "127.0.0.1", "--port", str(port),
            "--device", "cpu",
            "--max-wait-ms", str(max_wait_ms), "--queue-size", "1024", "--timeout", "600"]
    if not batching:
        argv.append("--no-batching")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"bench_serve: the server exited with {process.returncode}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return process, port
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("bench_serve: the server did not start within 120 s")


def request_bytes(sentence: str) -> bytes:
    """One LibreTranslate POST /translate request, ready to write on a kept-alive connection."""
    body = json.dumps({"q": sentence, "source": "en", "target": "de"}).encode()
    head = (f"POST /translate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[str, bytes]:
    """One HTTP/1.1 response with a Content-Length: its head and its body."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    fields = dict(line.split(":", 1) for line in head.split("\r\n")[1:] if ":" in line)
    length = int({k.lower(): v for k, v in fields.items()}["content-length"])
    return head, await reader.readexactly(length)


async def clients_loop(port: int, requests: list[bytes], clients: int, time_limit: float,
                       latencies: list[float], errors: list[str]) -> None:
    """C clients, each on its own connection, sending the next request when the last answer
    has arrived, until the requests or the time run out."""
    todo = iter(requests)
    deadline = time.monotonic() + time_limit

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for request in todo:
            if time.monotonic() > deadline:
                break
            started = time.perf_counter()
            writer.write(request)
            try:
                head, payload = await read_response(reader)
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                errors.append(f"connection lost: {exc!r}")  # this client stops
                break
            if head.startswith("HTTP/1.1 200"):
                latencies.append(time.perf_counter() - started)
            else:
                errors.append(f"{head.split(chr(13))[0]} {payload[:100]!r}")
        writer.close()

    await asyncio.gather(*(client() for _ in range(clients)))


def run_level(port: int, sentences: list[str], clients: int, time_limit: float,
              per_request: int = 1) -> dict[str, Any]:
    """C clients sending `per_request` sentences per request (a paragraph) until the sentences
    or the time run out; with the CPU seconds the clients themselves used (they share the
    machine's cores)."""
    latencies: list[float] = []
    errors: list[str] = []
    requests = [request_bytes(" ".join(sentences[i:i + per_request]))
                for i in range(0, len(sentences), per_request)]
    cpu = time.process_time()
    started = time.perf_counter()
    asyncio.run(clients_loop(port, requests, clients, time_limit, latencies, errors))
    wall = time.perf_counter() - started
    latencies.sort()
    return {
        "clients": clients, "requests": len(latencies), "errors": len(errors),
        "seconds": round(wall, 2), "client_cpu_s": round(time.process_time() - cpu, 2),
        "sentences_per_s": round(len(latencies) * per_request / wall, 2),
        "p50_ms": round(1000 * statistics.median(latencies), 1) if latencies else None,
        "p95_ms": round(1000 * latencies[max(0, int(0.95 * len(latencies)) - 1)], 1)
        if latencies else None,
    }


def offline(checkpoint: str, sentences: list[str], slice_size: int) -> dict[str, Any]:
    """`Translator.translate` of all sentences at once, in this process (median of 3); and,
    as the bound of any server whose batches hold at most `slice_size` sentences (C clients
    that each wait for their answer never have more in flight), the same sentences translated
    `slice_size` at a time: in the clients' order, and sorted by length, where every batch's
    sentences end together (no batching scheme fills a batch better)."""
    from transformer_mt.inference.translator import Translator

    translator = Translator.from_checkpoint(checkpoint, device="cpu")
    translator.translate(sentences[:8])  # warm-up

    def rate(slices: list[list[str]]) -> float:
        walls = []
        for _ in range(3):
            started = time.perf_counter()
            for part in slices:
                translator.translate(part)
            walls.append(time.perf_counter() - started)
        return round(len(sentences) / statistics.median(walls), 2)

    def cut(texts: list[str]) -> list[list[str]]:
        return [texts[i:i + slice_size] for i in range(0, len(texts), slice_size)]

    lengths = translator.count_tokens(sentences)
    by_length = [s for _, s in sorted(zip(lengths, sentences, strict=True), key=lambda p: p[0])]
    whole = rate([sentences])
    return {"sentences": len(sentences), "seconds": round(len(sentences) / whole, 2),
            "sentences_per_s": whole, "slice_size": slice_size,
            "slices_in_order_per_s": rate(cut(sentences)),
            "slices_by_length_per_s": rate(cut(by_length))}


def batching_counters(port: int) -> dict[str, float]:
    """The server's batches and requests run so far and its model loop's busy seconds."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/info")
    return json.loads(connection.getresponse().read())["batching"]


def plot(results: dict[str, Any], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 4), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    for mode, label in (("batching", "serve, dynamic batching"),
                        ("one_at_a_time", "serve, one request at a time")):
        levels = results[mode]
        ax.plot([r["clients"] for r in levels], [r["sentences_per_s"] for r in levels],
                marker="o", label=label)
    offline = results["offline"]["sentences_per_s"]
    ax.axhline(offline, color="grey", linestyle="--", label="offline Translator.translate")
    ax.axhline(0.7 * offline, color="grey", linestyle=":", label="70 % of offline (target)")
    size = results["offline"]["slice_size"]
    ax.axhline(results["offline"]["slices_by_length_per_s"], color="tab:green", linestyle="-.",
               label=f"offline, {size} at a time, sorted by length (bound at {size} clients)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrent clients (one sentence per request)")
    ax.set_ylabel("sentences / s")
    ax.set_title("transformer-mt serve, test2016 sentences, loopback")
    ax.legend(fontsize=8)
    fig.savefig(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(REPO / "runs" / "demo" / "averaged.ckpt"))
    parser.add_argument("--data", default=None,
                        help="test2016 English file (default: $TRANSFORMER_MT_DATA or "
                        "../shared/data, multi30k/test2016.en.xz)")
    parser.add_argument("--clients", default="1,8,32,128", help="comma-separated levels")
    parser.add_argument("--sentences", type=int, default=256,
                        help="requests per level (the first N test sentences, cycled)")
    parser.add_argument("--level-timeout", type=float, default=120.0,
                        help="seconds per level at most")
    parser.add_argument("--max-wait-ms", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the server")
    parser.add_argument("--slice-size", type=int, default=32,
                        help="also time offline translation this many requests' sentences at "
                        "a time")
    parser.add_argument("--per-request", type=int, default=1,
                        help="sentences per request, joined into a paragraph (default 1)")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--plot", default=None, help="write a PNG plot here")
    args = parser.parse_args(argv)

    data_dir = Path(os.environ.get("TRANSFORMER_MT_DATA", REPO.parent / "shared" / "data"))
    path = Path(args.data) if args.data else data_dir / "multi30k" / "test2016.en.xz"
    if not path.is_file():
        print(f"bench_serve: {path}: no such file", file=sys.stderr)
        return 2
    with lzma.open(path, "rt", encoding="utf-8") as handle:
        pool = [line.strip() for line in handle if line.strip()]
    sentences = [pool[i % len(pool)] for i in range(args.sentences)]
    levels = [int(c) for c in args.clients.split(",")]

    import torch

    torch.set_num_threads(args.threads)
    results: dict[str, Any] = {
        "command": " ".join(["python", "scripts/bench_serve.py", *(argv or sys.argv[1:])]),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                   f"load average {os.getloadavg()[0]:.1f} at start",
        "checkpoint": args.checkpoint, "sentences": len(sentences),
        "per_request": args.per_request,
        "offline": offline(args.checkpoint, sentences, args.slice_size * args.per_request),
    }
    print(f"offline: {results['offline']}", flush=True)
    for mode, batching in (("batching", True), ("one_at_a_time", False)):
        process, port = start_server(args.checkpoint, batching, args.max_wait_ms, args.threads)
        try:
            run_level(port, sentences[:8], 2, 60)  # warm-up
            results[mode] = []
            for clients in levels:
                before = batching_counters(port)
                level = run_level(port, sentences, clients, args.level_timeout,
                                  args.per_request)
                after = batching_counters(port)
                batches = after["batches_run"] - before["batches_run"]
                level["requests_per_batch"] = round(
                    (after["requests_run"] - before["requests_run"]) / max(batches, 1), 1)
                level["model_busy_share"] = round(
                    (after["busy_s"] - before["busy_s"]) / level["seconds"], 2)
                print(f"{mode}: {level}", flush=True)
                results[mode].append(level)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=120)
    results["load_average_end"] = round(os.getloadavg()[0], 1)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    if args.plot:
        plot(results, Path(args.plot))
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
