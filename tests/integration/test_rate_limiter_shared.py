"""Several processes hammering one quota on a real Redis never pass it in any window."""

from __future__ import annotations

import multiprocessing
import time

import pytest
import redis

from core.ratelimit import Limit, RateLimiter


def _hammer(url: str, limit: Limit, seconds: float) -> int:
    limiter = RateLimiter(redis.Redis.from_url(url))
    admitted = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if limiter.try_acquire("acct", "op", limit) == 0.0:
            admitted += 1
    return admitted


def _run(url: str, limit: Limit, seconds: float, processes: int = 4) -> tuple[int, list[float]]:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(processes) as pool:
        counts = pool.starmap(_hammer, [(url, limit, seconds)] * processes)
    scores = redis.Redis.from_url(url).zrange("kx:rl:acct:op", 0, -1, withscores=True)
    return sum(counts), sorted(score / 1_000_000 for _, score in scores)


def _max_in_window(times: list[float], window: float) -> int:
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


@pytest.mark.parametrize(
    ("limit", "seconds"),
    [
        (Limit(burst=5, steady=12, burst_window=1.0, steady_window=20.0), 4.0),  # steady binds
        (Limit(burst=5, steady=500, burst_window=1.0, steady_window=20.0), 3.0),  # burst binds
    ],
)
def test_no_window_ever_passes_its_quota(
    real_redis: redis.Redis, redis_url: str, limit: Limit, seconds: float
) -> None:
    total, times = _run(redis_url, limit, seconds)

    assert total == len(times)  # every admission is in the log (the window outlives the test)
    assert _max_in_window(times, limit.burst_window) <= limit.burst
    assert total <= limit.steady
    # and the quota is used, not starved: processes got (nearly) all they could
    expected = min(limit.steady, int(seconds / limit.burst_window) * limit.burst)
    assert total >= expected - limit.burst
