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
        "--batch-tokens": (int, 16384, "N", "budget of one batch across requests, in decoder "
                           "rows × source tokens (beam 4: 4,096 source tokens); memory per "
                           "batch follows from it"),
        "--max-wait-ms": (float, 10.0, "MS", "how long the oldest waiting text may wait for "
                          "others to join its batch (from the end of the last batch if later)"),
    },
    "limits": {
        "--max-chars": (int, 2000, "N", "longest text accepted, in characters (413 beyond)"),
        "--max-texts": (int, 64, "N", "most texts in one request (413 beyond)"),
        "--max-text-tokens": (int, 1024, "N", "most subword tokens in one text (413 beyond)"),
        "--max-request-tokens": (int, 8192, "N", "most subword tokens in one request (413 "
                                 "beyond)"),
        "--max-beam": (int, 16, "K", "largest beam (and most samples per sentence) a request "
                       "may ask for"),
        "--limit-concurrency": (int, 1024, "N", "most connections and requests at once "
                                "(uvicorn answers 503 beyond)"),
        "--queue-size": (int, 256, "N", "most requests waiting for the model (503 + "
                         "Retry-After beyond)"),
        "--timeout": (float, 30.0, "S", "seconds a request may take (504 beyond)"),
        "--drain-timeout": (float, 60.0, "S", "after SIGTERM, seconds to wait for the requests "
                            "in flight"),
    },
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `transformer-mt serve`."""
    parser.epilog = (
        "Endpoints: GET / (web page), POST /translate, POST /detect, GET /languages and "
        "GET /frontend/settings (LibreTranslate's API), POST /v1/translate (all search "
        "options, scores), POST /v1/attention, GET /health, GET /info. Texts are translated "
        "sentence by sentence, their layout kept. SIGTERM or Ctrl+C: new requests get 503, "
        "those in flight finish, exit 0; a second signal stops at once."
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
    access = parser.add_argument_group("access")
    access.add_argument("--api-keys", default=None, metavar="FILE",
                        help="require an API key: one 'KEY [REQUESTS_PER_MINUTE]' per line "
                        "(403 without a valid key, 429 over its limit)")
    access.add_argument("--req-limit", type=int, default=0, metavar="N",
                        help="requests per minute per key without its own limit, or per "
                        "client address when there are no keys; 0 = no limit")
    access.add_argument("--cors-origins", default="", metavar="ORIGINS",
                        help="comma-separated origins whose pages may call the API "
                        "(e.g. https://example.org, or *); off by default")
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
    if args.req_limit < 0:
        raise UserError(f"--req-limit must be >= 0, got {args.req_limit}")
    if not 0 < args.port < 65536:
        raise UserError(f"--port must be in 1..65535, got {args.port}")
    require_extra("fastapi", "serve")
    require_extra("uvicorn", "serve")
    from transformer_mt.serving.runner import serve_forever
    from transformer_mt.serving.settings import ServerSettings
    from transformer_mt.textio import check_readable

    check_readable(args.checkpoint)
    if args.api_keys:
        check_readable(args.api_keys)
    settings = ServerSettings(
        checkpoint=args.checkpoint, device=args.device, quantize=args.quantize,
        cpu_gemm=args.cpu_gemm, batch_tokens=args.batch_tokens,
        max_wait=args.max_wait_ms / 1000, batching=not args.no_batching,
        max_chars=args.max_chars, max_texts=args.max_texts,
        max_text_tokens=args.max_text_tokens, max_request_tokens=args.max_request_tokens,
        max_beam=args.max_beam, limit_concurrency=args.limit_concurrency,
        queue_size=args.queue_size, timeout=args.timeout, drain_timeout=args.drain_timeout,
        api_keys=args.api_keys, req_limit=args.req_limit,
        cors_origins=tuple(o.strip() for o in args.cors_origins.split(",") if o.strip()),
    )
    serve_forever(settings, args.host, args.port, args.log_level)
    print("transformer-mt: serve: stopped", file=sys.stderr)
    return 0
