"""API keys and request-rate limits (`serving.access`), without a server."""

from __future__ import annotations

from pathlib import Path

import pytest

from transformer_mt.errors import UserError
from transformer_mt.serving.access import MAX_TRACKED, Access, RateLimiter, read_api_keys
from transformer_mt.serving.batcher import ApiError


def test_the_keys_file_and_its_errors(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# team keys\nalpha 60\nbeta   # no limit of its own\n\n", encoding="utf-8")
    assert read_api_keys(str(keys)) == {"alpha": 60, "beta": 0}
    keys.write_text("alpha sixty\n", encoding="utf-8")
    with pytest.raises(UserError, match="line 1: expected 'KEY' or 'KEY REQUESTS_PER_MINUTE'"):
        read_api_keys(str(keys))
    keys.write_text("# nothing\n", encoding="utf-8")
    with pytest.raises(UserError, match="no key in the file"):
        read_api_keys(str(keys))


def test_a_bucket_allows_a_burst_then_refills_per_minute() -> None:
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    assert [limiter.wait("a", 3) for _ in range(3)] == [0, 0, 0]
    assert limiter.wait("a", 3) == pytest.approx(20.0)  # 3 a minute: one every 20 s
    assert limiter.wait("b", 3) == 0  # another identity has its own bucket
    now[0] = 20.0
    assert limiter.wait("a", 3) == 0
    for i in range(MAX_TRACKED + 5):
        limiter.wait(f"address {i}", 3)
    assert len(limiter.buckets) == MAX_TRACKED  # a flood of addresses cannot grow memory


def test_keys_are_required_and_limited() -> None:
    access = Access({"alpha": 1, "beta": 0}, req_limit=2)
    for key, status, message in ((None, 403, "API key is required"),
                                 ("nope", 403, "Invalid API key")):
        with pytest.raises(ApiError) as caught:
            access.check(key, "127.0.0.1")
        assert (caught.value.status, message in caught.value.message) == (status, True)
    access.check("alpha", "127.0.0.1")
    with pytest.raises(ApiError) as caught:
        access.check("alpha", "127.0.0.2")  # the key's limit, whatever the address
    assert caught.value.status == 429 and int(caught.value.headers["Retry-After"]) >= 59
    access.check("beta", "127.0.0.1")
    access.check("beta", "127.0.0.1")  # beta has --req-limit's 2 a minute
    with pytest.raises(ApiError):
        access.check("beta", "127.0.0.1")
    open_access = Access(None, req_limit=0)
    for _ in range(100):
        open_access.check(None, "127.0.0.1")  # no keys, no limit
