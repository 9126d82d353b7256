"""Soak and fault benchmark of `transformer-mt serve` (a benchmark, not a test): loopback only,
bounded in time and in requests.

A fresh server process is started on 127.0.0.1; C clients (default 64, asyncio connections in
this process) send, for --duration seconds or --max-requests requests, a mix of: single
test2016 sentences (60 %), paragraphs of three sentences with a blank line (12 %), HTML
snippets (5 %), `source: "auto"` requests (5 %), and hostile requests (18 %): 500 KB texts,
chunked bodies over the body limit, NaN options, `beam_size: 64`, malformed JSON, and clients
that disconnect before the answer. Reported: requests served, p50 / p95 / p99 latency of the
good requests, answers by status, wrong answers (each 200 compared with `Translator` on the
same text alone, after the run: must be 0), 5xx (must be 0), and the server's resident memory
(RSS) every --sample seconds, at the end of the warm-up, at the end, and its peak (VmHWM).

  python scripts/soak_serve.py --checkpoint /work/models/demo.ckpt --duration 600
  python scripts/soak_serve.py --checkpoint CKPT --duration 300 --json runs/soak.json
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import lzma
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serve import free_port, read_response  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MIX = [("sentence", 60), ("paragraph", 12), ("html", 5), ("auto", 5), ("oversized", 3),
       ("chunked", 3), ("nan", 3), ("beam64", 3), ("malformed", 3), ("disconnect", 3)]


def status_of(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak) of a process, in MB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            values[line.split(":")[0]] = int(line.split()[1]) / 1024
    return values


def http_request(path: str, body: bytes, content_type: str = "application/json") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def make_request(kind: str, pool: list[str], rng: random.Random) -> tuple[bytes, Any]:
    """The bytes of one request of `kind`, and what its answer is checked against: None for
    hostile requests (any 4xx is right), else (format, text)."""
    s = [rng.choice(pool) for _ in range(3)]
    lt = {"source": "en", "target": "de"}
    if kind in ("sentence", "auto", "paragraph"):
        text = s[0] if kind != "paragraph" else f"{s[0]} {s[1]}\n\n{s[2]}"
        body = {"q": text, **lt, **({"source": "auto"} if kind == "auto" else {})}
        return http_request("/translate", json.dumps(body).encode()), ("text", text)
    if kind == "html":
        text = f'<p class="x">{html.escape(s[0])}</p><code>{html.escape(s[1])}</code>'
        body = {"q": text, **lt, "format": "html"}
        return http_request("/translate", json.dumps(body).encode()), ("html", text)
    if kind == "oversized":
        body = json.dumps({"q": "word " * 100_000, **lt}).encode()  # 500 KB
        return http_request("/translate", body), None
    if kind == "chunked":
        head = (b"POST /v1/translate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                b"application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * 65536
        return head + (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * 32 + b"0\r\n\r\n", None
    if kind == "nan":
        return http_request("/v1/translate", f'{{"text": "{s[0]}", "length_penalty": NaN}}'
                            .encode()), None
    if kind == "beam64":
        return http_request("/v1/translate", json.dumps({"text": s[0], "beam_size": 64})
                            .encode()), None
    if kind == "malformed":
        return http_request("/translate", b'{"q": "' + s[0].encode() + b'", "source'), None
    return http_request("/translate", json.dumps({"q": s[0], **lt}).encode()), None  # gone


async def client(port: int, pool: list[str], rng: random.Random, deadline: float,
                 budget: list[int], log: list[dict[str, Any]]) -> None:
    """One client: a request at a time, on a kept-alive connection (a new one after a
    disconnect or an error), until the time or the request budget runs out."""
    kinds, weights = zip(*MIX, strict=True)
    connection = None
    while time.monotonic() < deadline and budget[0] > 0:
        budget[0] -= 1
        kind = rng.choices(kinds, weights)[0]
        data, check = make_request(kind, pool, rng)
        if connection is None:
            connection = await asyncio.open_connection("127.0.0.1", port)
        reader, writer = connection
        started = time.perf_counter()
        writer.write(data)
        if kind == "disconnect":
            await asyncio.sleep(rng.uniform(0, 0.05))
            writer.close()
            connection = None
            log.append({"kind": kind, "status": None})
            continue
        try:
            head, payload = await read_response(reader)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
            log.append({"kind": kind, "status": f"connection lost ({type(exc).__name__})"})
            writer.close()
            connection = None
            continue
        status = int(head.split()[1])
        entry = {"kind": kind, "status": status, "ms": 1000 * (time.perf_counter() - started)}
        if check is not None and status == 200:
            entry["check"], entry["answer"] = check, json.loads(payload)["translatedText"]
        log.append(entry)
    if connection is not None:
        connection[1].close()


def expected_answers(checkpoint: str, checks: set[tuple[str, str]]) -> dict[tuple, str]:
    """What `Translator` gives each text alone (HTML: its text nodes, as the server does).
    A text is translated sentence by sentence, so each distinct sentence is translated alone
    once, and every text is its sentences' translations in its layout."""
    from transformer_mt.inference.sentences import split_sentences
    from transformer_mt.inference.translator import Translator
    from transformer_mt.serving.html_text import rebuild, text_nodes

    translator = Translator.from_checkpoint(checkpoint, device="cpu")
    alone: dict[str, str] = {}

    def translated(text: str) -> str:
        part = split_sentences(text, translator.src_lang)
        for sentence in part.sentences:
            if sentence not in alone:
                alone[sentence] = translator.translate(sentence)
        return part.join([alone[s] for s in part.sentences])

    answers = {}
    for fmt, text in checks:
        if fmt == "text":
            answers[(fmt, text)] = translated(text)
        else:
            nodes = text_nodes(text)
            answers[(fmt, text)] = rebuild(text, nodes, [translated(n.text) for n in nodes])
    return answers


async def soak(port: int, pid: int, args: argparse.Namespace, pool: list[str]
               ) -> tuple[list[dict[str, Any]], list[dict[str, float]]]:
    """Run the clients, sampling the server's memory every --sample seconds."""
    log: list[dict[str, Any]] = []
    samples = [{"s": 0.0, **status_of(pid)}]
    start = time.monotonic()
    deadline, budget = start + args.duration, [args.max_requests]
    tasks = [asyncio.ensure_future(client(port, pool, random.Random(args.seed + i), deadline,
                                          budget, log)) for i in range(args.clients)]
    while not all(t.done() for t in tasks):
        await asyncio.wait(tasks, timeout=args.sample)
        samples.append({"s": round(time.monotonic() - start, 1), **status_of(pid)})
        print(f"{samples[-1]['s']:7.1f} s  {len(log):7d} requests  RSS "
              f"{samples[-1]['VmRSS']:.0f} MB", flush=True)
    for task in tasks:
        task.result()
    return log, samples


def summary(log: list[dict[str, Any]], samples: list[dict[str, float]],
            answers: dict[tuple, str], warmup: float) -> dict[str, Any]:
    good = sorted(e["ms"] for e in log if "check" in e)
    wrong = [e for e in log if "check" in e and answers[tuple(e["check"])] != e["answer"]]
    at_warmup = min(samples, key=lambda s: abs(s["s"] - warmup))
    pct = {p: round(good[min(len(good) - 1, int(p / 100 * len(good)))], 1)
           for p in (50, 95, 99)} if good else {}
    return {
        "requests": len(log), "served_ok": len(good),
        "statuses": dict(Counter(str(e["status"]) for e in log)),
        "by_kind": {kind: dict(Counter(str(e["status"]) for e in log if e["kind"] == kind))
                    for kind, _ in MIX},
        "latency_ms": {"p50": pct.get(50), "p95": pct.get(95), "p99": pct.get(99),
                       "mean": round(statistics.fmean(good), 1) if good else None},
        "wrong_answers": len(wrong), "wrong_examples": wrong[:3],
        "5xx": sum(1 for e in log if isinstance(e["status"], int) and e["status"] >= 500),
        "rss_mb": {"start": round(samples[0]["VmRSS"]), "after_warmup": round(
            at_warmup["VmRSS"]), "end": round(samples[-1]["VmRSS"]),
                   "peak": round(samples[-1]["VmHWM"])},
        "rss_growth_after_warmup": round(samples[-1]["VmRSS"] / at_warmup["VmRSS"] - 1, 3),
        "rss_timeline": [(s["s"], round(s["VmRSS"])) for s in samples],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds (default 10 min)")
    parser.add_argument("--max-requests", type=int, default=1_000_000)
    parser.add_argument("--warmup", type=float, default=60.0,
                        help="seconds after which RSS growth is measured")
    parser.add_argument("--sample", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                        help="environment of the server process (allocator experiments)")
    parser.add_argument("--server-python", default=sys.executable,
                        help="the Python that runs the server (another checkout's virtualenv, "
                        "to measure an older version)")
    parser.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                        help="an extra `serve` argument (repeat for each)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    data = Path(os.environ.get("TRANSFORMER_MT_DATA", REPO.parent / "shared" / "data"))
    with lzma.open(data / "multi30k" / "test2016.en.xz", "rt", encoding="utf-8") as handle:
        pool = [line.strip() for line in handle if line.strip()]
    port = free_port()
    env = {**os.environ, **dict(item.split("=", 1) for item in args.server_env)}
    server = subprocess.Popen(
        [args.server_python, "-m", "transformer_mt.commands.main", "serve", "--checkpoint",
         args.checkpoint, "--port", str(port), "--device", "cpu", *args.server_arg], env=env,
        stdout=subprocess.DEVNULL)
    load = os.getloadavg()[0]
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                asyncio.run(asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1))
                break
            except OSError:
                time.sleep(0.2)
        log, samples = asyncio.run(soak(port, server.pid, args, pool))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=120)
    checks = {tuple(e["check"]) for e in log if "check" in e}
    result = {
        "command": " ".join(["python", "scripts/soak_serve.py", *(argv or sys.argv[1:])]),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} cores, load average {load:.1f} at start",
        "server_exit": server.returncode,
        **summary(log, samples, expected_answers(args.checkpoint, checks), args.warmup),
    }
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items() if k != "rss_timeline"}, indent=1))
    return 0 if result["wrong_answers"] == 0 and result["5xx"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
