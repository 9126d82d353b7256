"""`transformer-mt serve`: translation over HTTP, with concurrent requests batched together.

This module holds the command line only, so that building the CLI parser costs no import of
the optional `serve` extra (FastAPI, uvicorn); `transformer_mt.serving` is the server.
"""

from __future__ import annotations

import argparse
import sys

from transformer_mt.commands.options import add_model_arguments, require_extra
from transformer_mt.errors import UserError

# group -> option -> (type, default, metavar, help); every value must be > 0 (the wait >= 0)
LIMITS = {
    "batching": {
        "--batch-tokens": (int, 4096, "N", "source-token budget of one batch across requests"),
        "--max-wait-ms": (float, 10.0, "MS", "how long the oldest waiting text may wait for "
                          "others to join its batch (from the end of the last batch if later)"),
    },
    "limits": {
        "--max-chars": (int, 2000, "N", "longest text accepted, in characters (413 beyond)"),
        "--max-texts": (int, 64, "N", "most texts in one request (413 beyond)"),
        "--queue-size": (int, 256, "N", "most requests waiting for the model (503 + "
                         "Retry-After beyond)"),
        "--timeout": (float, 30.0, "S", "seconds a request may take (504 beyond)"),
    },
}


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
    parser.add_argument("--port", type=int, default=8080, help="TCP port")
    for group_name, options in LIMITS.items():
        group = parser.add_argument_group(group_name)
        for option, (kind, default, metavar, help_text) in options.items():
            group.add_argument(option, type=kind, default=default, metavar=metavar,
                               help=help_text)
        if group_name == "batching":
            group.add_argument("--no-batching", action="store_true",
                               help="one request at a time (for comparison)")
    run_group = parser.add_argument_group("execution")
    add_model_arguments(run_group)
    run_group.add_argument("--log-level", default="warning",
                           choices=["critical", "error", "warning", "info", "debug"],
                           help="uvicorn's log level (info logs every request)")


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM / SIGINT; 0 after a clean drain."""
    for options in LIMITS.values():
        for option in options:
            value = getattr(args, option[2:].replace("-", "_"))
            if value < 0 or (value == 0 and option != "--max-wait-ms"):
                least = ">= 0" if option == "--max-wait-ms" else "> 0"
                raise UserError(f"{option} must be {least}, got {value}")
    if not 0 < args.port < 65536:
        raise UserError(f"--port must be in 1..65535, got {args.port}")
    require_extra("fastapi", "serve")
    require_extra("uvicorn", "serve")
    from transformer_mt.serving.runner import serve_forever
    from transformer_mt.serving.settings import ServerSettings
    from transformer_mt.textio import check_readable

    check_readable(args.checkpoint)
    settings = ServerSettings(
        checkpoint=args.checkpoint, device=args.device, quantize=args.quantize,
        cpu_gemm=args.cpu_gemm, batch_tokens=args.batch_tokens,
        max_wait=args.max_wait_ms / 1000, batching=not args.no_batching,
        max_chars=args.max_chars, max_texts=args.max_texts, queue_size=args.queue_size,
        timeout=args.timeout,
    )
    serve_forever(settings, args.host, args.port, args.log_level)
    print("transformer-mt: serve: stopped", file=sys.stderr)
    return 0
