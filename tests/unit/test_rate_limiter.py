"""The limiter's arithmetic: both windows, the waits it answers, cooldowns."""

from __future__ import annotations

import fakeredis
import pytest

from core.ratelimit import Limit, RateLimiter, published_limit
from klaviyo_client import Operation


@pytest.fixture
def limiter() -> RateLimiter:
    return RateLimiter(fakeredis.FakeRedis())


def test_burst_window_admits_burst_then_answers_the_wait(limiter: RateLimiter) -> None:
    limit = Limit(burst=3, steady=100)
    assert [limiter.try_acquire("acct", "op", limit) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.try_acquire("acct", "op", limit)
    assert 0.0 < wait <= 1.0


def test_steady_window_binds_when_it_is_the_smaller(limiter: RateLimiter) -> None:
    limit = Limit(burst=10, steady=4, steady_window=30.0)
    admitted = [limiter.try_acquire("acct", "op", limit) for _ in range(4)]
    assert admitted == [0.0] * 4
    wait = limiter.try_acquire("acct", "op", limit)
    assert 29.0 < wait <= 30.0


def test_quotas_are_per_account_and_per_operation(limiter: RateLimiter) -> None:
    limit = Limit(burst=1, steady=10)
    assert limiter.try_acquire("a", "op1", limit) == 0.0
    assert limiter.try_acquire("a", "op2", limit) == 0.0
    assert limiter.try_acquire("b", "op1", limit) == 0.0
    assert limiter.try_acquire("a", "op1", limit) > 0.0


def test_a_refused_request_takes_no_quota(limiter: RateLimiter) -> None:
    limit = Limit(burst=1, steady=2)
    assert limiter.try_acquire("a", "op", limit) == 0.0
    for _ in range(5):
        assert limiter.try_acquire("a", "op", limit) > 0.0
    assert limiter.redis.zcard("kx:rl:a:op") == 1


def test_cooldown_holds_every_caller_and_is_never_shortened(limiter: RateLimiter) -> None:
    limiter.cooldown("a", "op", 5.0)
    limiter.cooldown("a", "op", 1.0)
    wait = limiter.try_acquire("a", "op", Limit(burst=100, steady=1000))
    assert 4.0 < wait <= 5.0


def test_acquire_sleeps_short_waits_and_hands_back_long_ones(limiter: RateLimiter) -> None:
    limit = Limit(burst=1, steady=100, burst_window=0.05)
    assert limiter.acquire("a", "op", max_sleep=1.0, limit=limit) == 0.0
    assert limiter.acquire("a", "op", max_sleep=1.0, limit=limit) == 0.0  # slept ~50 ms
    long_limit = Limit(burst=1, steady=1, steady_window=60.0)
    assert limiter.acquire("b", "op", max_sleep=1.0, limit=long_limit) == 0.0
    assert limiter.acquire("b", "op", max_sleep=1.0, limit=long_limit) > 1.0


def test_published_limits_leave_headroom_but_never_zero() -> None:
    bulk = published_limit(Operation.BULK_IMPORT, 0.9)
    assert (bulk.burst, bulk.steady) == (9, 135)
    accounts = published_limit(Operation.GET_ACCOUNTS, 0.5)
    assert (accounts.burst, accounts.steady) == (1, 7)


def test_published_windows_are_stretched_by_the_send_jitter() -> None:
    bulk = published_limit(Operation.BULK_IMPORT, 1.0)
    assert bulk.burst_window > 1.0
    assert bulk.steady_window > 60.0
