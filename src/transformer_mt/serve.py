"""`transformer-mt serve`: translation over HTTP, with concurrent requests batched together.

This module holds the command line only, so that building the CLI parser costs no import of
the optional `serve` extra (FastAPI, uvicorn); `transformer_mt.server` is the application.
"""

from __future__ import annotations

import argparse
import signal
import sys

from transformer_mt.errors import UserError
from transformer_mt.export import require_extra
from transformer_mt.model.cpu_gemm import CPU_GEMMS
from transformer_mt.model.quantize import QUANTIZATIONS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `transformer-mt serve`."""
    parser.epilog = (
        "Endpoints: GET / (web page), POST /translate and GET /languages (LibreTranslate's "
        "API), POST /v1/translate (all search options, scores), POST /v1/attention, "
        "GET /health, GET /info. SIGTERM or Ctrl+C: stop accepting, finish what is in "
        "flight, exit 0."
    )
    parser.add_argument("--checkpoint", required=True, metavar="CKPT", help="model checkpoint")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (0.0.0.0 = every interface)")
    parser.add_argument("--port", type=int, default=8080, help="TCP port (0 = any free port)")
    batching = parser.add_argument_group("batching")
    batching.add_argument("--batch-tokens", type=int, default=4096, metavar="N",
                          help="source-token budget of one batch across requests")
    batching.add_argument("--max-wait-ms", type=float, default=10.0, metavar="MS",
                          help="how long the first waiting text may wait for others to "
                          "join its batch")
    batching.add_argument("--no-batching", action="store_true",
                          help="one request at a time (for comparison)")
    limits = parser.add_argument_group("limits")
    limits.add_argument("--max-chars", type=int, default=2000, metavar="N",
                        help="longest text accepted, in characters (413 beyond)")
    limits.add_argument("--max-texts", type=int, default=64, metavar="N",
                        help="most texts in one request (413 beyond)")
    limits.add_argument("--queue-size", type=int, default=256, metavar="N",
                        help="most requests waiting for the model (503 + Retry-After beyond)")
    limits.add_argument("--timeout", type=float, default=30.0, metavar="S",
                        help="seconds a request may take (504 beyond)")
    run_group = parser.add_argument_group("execution")
    run_group.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                           help="auto = cuda when available")
    run_group.add_argument("--quantize", choices=QUANTIZATIONS, default=None,
                           help="CPU only: int8 linear layers, faster")
    run_group.add_argument("--cpu-gemm", choices=CPU_GEMMS, default="auto",
                           help="float32 CPU matrix products (see translate --help)")
    run_group.add_argument("--log-level", default="warning",
                           choices=["critical", "error", "warning", "info", "debug"],
                           help="uvicorn's log level (info logs every request)")


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM / SIGINT; 0 after a clean drain."""
    for name in ("batch_tokens", "max_chars", "max_texts", "queue_size"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.max_wait_ms < 0 or not args.timeout > 0:
        raise UserError("--max-wait-ms must be >= 0 and --timeout > 0")
    if not 0 <= args.port < 65536:
        raise UserError(f"--port must be in 0..65535, got {args.port}")
    require_extra("fastapi", "serve")
    require_extra("uvicorn", "serve")
    from transformer_mt.server import ServerSettings, serve_forever
    from transformer_mt.textio import check_readable

    check_readable(args.checkpoint)
    settings = ServerSettings(
        checkpoint=args.checkpoint, device=args.device, quantize=args.quantize,
        cpu_gemm=args.cpu_gemm, batch_tokens=args.batch_tokens,
        max_wait=args.max_wait_ms / 1000, batching=not args.no_batching,
        max_chars=args.max_chars, max_texts=args.max_texts, queue_size=args.queue_size,
        timeout=args.timeout,
    )
    # uvicorn re-raises the signal that stopped it once it has drained; a handler of our own
    # receives it then, so a drained server exits 0 rather than dying of SIGTERM.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    serve_forever(settings, args.host, args.port, args.log_level)
    print("transformer-mt: serve: stopped", file=sys.stderr)
    return 0
