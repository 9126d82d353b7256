"""Who may call the API and how often: `--api-keys FILE` (403 without a valid key) and
requests-per-minute limits (429 with Retry-After), per key, or per client address when no keys
are set (`--req-limit`). As LibreTranslate does, the page, /languages, /frontend/settings,
/health and /info are exempt. No web import: the routes pass the key and the address.

The limit is a token bucket per key or address (a burst of N requests, then N per minute); at
most `MAX_TRACKED` buckets are kept, the least recently used dropped first, so a flood of new
addresses cannot grow the server's memory.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from pathlib import Path

from transformer_mt.errors import UserError
from transformer_mt.serving.batcher import ApiError

MAX_TRACKED = 10_000


def read_api_keys(path: str) -> dict[str, int]:
    """`KEY [REQUESTS_PER_MINUTE]` per line (`#` starts a comment); 0 or no number means the
    server's --req-limit."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"--api-keys {path}: cannot read ({exc})") from None
    keys: dict[str, int] = {}
    for lineno, line in enumerate(lines, start=1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) > 2 or (len(fields) == 2 and not fields[1].isdigit()):
            raise UserError(f"--api-keys {path}: line {lineno}: expected 'KEY' or 'KEY "
                            "REQUESTS_PER_MINUTE'")
        keys[fields[0]] = int(fields[1]) if len(fields) == 2 else 0
    if not keys:
        raise UserError(f"--api-keys {path}: no key in the file")
    return keys


class RateLimiter:
    """Token buckets by identity: `per_minute` requests at once, refilled at per_minute / 60
    a second. Used from the event loop only."""

    def __init__(self, clock=time.monotonic) -> None:
        self.clock = clock
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def wait(self, identity: str, per_minute: int) -> float:
        """Take one request from the bucket; 0, or the seconds until one is available."""
        now = self.clock()
        tokens, then = self.buckets.pop(identity, (float(per_minute), now))
        tokens = min(float(per_minute), tokens + (now - then) * per_minute / 60)
        wait = 0.0 if tokens >= 1 else (1 - tokens) * 60 / per_minute
        self.buckets[identity] = (tokens - 1 if wait == 0 else tokens, now)
        while len(self.buckets) > MAX_TRACKED:
            self.buckets.popitem(last=False)
        return wait


class Access:
    """The API-key and rate-limit rules of one server."""

    def __init__(self, keys: dict[str, int] | None, req_limit: int) -> None:
        self.keys, self.req_limit = keys, req_limit
        self.limiter = RateLimiter()

    @property
    def key_required(self) -> bool:
        return self.keys is not None

    def check(self, key: str | None, address: str) -> None:
        """403 for a missing or unknown key where keys are required, 429 (with Retry-After)
        over the key's or the address's requests per minute."""
        limit, identity = self.req_limit, f"address {address}"
        if self.keys is not None:
            if not key:
                raise ApiError(403, "an API key is required: send api_key (or an "
                               "'Authorization: Bearer KEY' header)")
            if key not in self.keys:
                raise ApiError(403, "Invalid API key")
            limit, identity = self.keys[key] or self.req_limit, f"key {key}"
        if limit > 0 and (wait := self.limiter.wait(identity, limit)) > 0:
            raise ApiError(429, f"Slowdown: {limit} per 1 minute; retry in {math.ceil(wait)} s",
                           {"Retry-After": str(math.ceil(wait))})
