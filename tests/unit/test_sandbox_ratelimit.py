"""Fixed-window rate limits and the window statistics, on a manual clock."""

from __future__ import annotations

from sandbox.clock import ManualClock
from sandbox.ratelimit import RateLimiter, TrafficStats, scaled
from sandbox.spec import operations

BULK = operations()["bulk_import_profiles"]  # 10/s, 150/m
ACCOUNTS = operations()["get_accounts"]  # 1/s, 15/m
GET_LIST = operations()["get_list"]  # 75/s, 750/m; profile_count 1/s, 15/m


def limiter(scale: float = 1.0, start: float = 600.0) -> tuple[RateLimiter, ManualClock]:
    clock = ManualClock(start)  # 600 s: the start of a 1 s and of a 60 s window
    return RateLimiter(scale, clock, TrafficStats()), clock


def test_burst_limit_refuses_within_the_second_and_resets_after_it() -> None:
    rl, clock = limiter()
    assert all(rl.check("acct", BULK, {}).allowed for _ in range(10))
    clock.advance(0.4)
    refused = rl.check("acct", BULK, {})
    assert not refused.allowed
    assert refused.retry_after == 1
    assert refused.headers == {}
    clock.advance(0.6)
    assert rl.check("acct", BULK, {}).allowed


def test_steady_limit_refuses_until_the_minute_ends() -> None:
    rl, clock = limiter()
    for _ in range(15):
        assert rl.check("acct", ACCOUNTS, {}).allowed
        clock.advance(1.0)
    refused = rl.check("acct", ACCOUNTS, {})  # at 615 s: the 60 s window ends at 660 s
    assert not refused.allowed
    assert refused.retry_after == 45
    clock.advance(45.0)
    assert rl.check("acct", ACCOUNTS, {}).allowed


def test_refused_requests_do_not_use_quota() -> None:
    rl, clock = limiter()
    assert rl.check("acct", ACCOUNTS, {}).allowed
    for _ in range(5):
        assert not rl.check("acct", ACCOUNTS, {}).allowed
    clock.advance(1.0)
    decision = rl.check("acct", ACCOUNTS, {})
    assert decision.allowed
    assert decision.headers["RateLimit-Remaining"] == "13"


def test_headers_describe_the_steady_window() -> None:
    rl, clock = limiter()
    clock.advance(20.0)
    decision = rl.check("acct", BULK, {})
    assert decision.headers == {
        "RateLimit-Limit": "150",
        "RateLimit-Remaining": "149",
        "RateLimit-Reset": "40",
    }


def test_limits_are_per_account_and_per_operation() -> None:
    rl, _ = limiter()
    assert rl.check("a", ACCOUNTS, {}).allowed
    assert rl.check("b", ACCOUNTS, {}).allowed
    assert rl.check("a", BULK, {}).allowed
    assert not rl.check("a", ACCOUNTS, {}).allowed


def test_additional_fields_add_their_stricter_limit() -> None:
    rl, _ = limiter()
    counted = {"additional-fields[list]": ["profile_count"]}
    assert rl.check("acct", GET_LIST, counted).allowed
    assert not rl.check("acct", GET_LIST, counted).allowed
    assert rl.check("acct", GET_LIST, {}).allowed


def test_scale_multiplies_and_zero_turns_limiting_off() -> None:
    assert scaled(10, 0.5) == 5
    assert scaled(1, 0.1) == 1
    rl, _ = limiter(scale=0.2)
    assert rl.limits(BULK) == (2, 30)
    assert [rl.check("acct", BULK, {}).allowed for _ in range(3)] == [True, True, False]
    off, _ = limiter(scale=0)
    assert off.limits(BULK) is None
    decisions = [off.check("acct", ACCOUNTS, {}) for _ in range(50)]
    assert all(d.allowed and not d.headers for d in decisions)


def test_stats_show_sliding_and_fixed_window_maxima() -> None:
    rl, clock = limiter(scale=0)
    clock.advance(0.7)
    for _ in range(6):  # 600.7 s
        rl.check("acct", BULK, {})
    clock.advance(0.5)
    for _ in range(6):  # 601.2 s: another fixed 1 s window, same sliding second
        rl.check("acct", BULK, {})
    seen = rl.stats.snapshot({})["accounts"]["acct"]["bulk_import_profiles"]
    assert seen["requests"] == 12
    assert seen["max_fixed_1s"] == 6
    assert seen["max_sliding_1s"] == 12
    assert seen["max_fixed_60s"] == 12
    assert seen["max_sliding_60s"] == 12
    clock.advance(1.0)
    rl.check("acct", BULK, {})
    seen = rl.stats.snapshot({})["accounts"]["acct"]["bulk_import_profiles"]
    assert seen["max_sliding_1s"] == 12


def test_stats_count_throttled_requests() -> None:
    rl, _ = limiter()
    for _ in range(3):
        rl.check("acct", ACCOUNTS, {})
    snapshot = rl.stats.snapshot({"get_accounts": (1, 15)})
    seen = snapshot["accounts"]["acct"]["get_accounts"]
    assert snapshot["throttled"] == 2
    assert (seen["requests"], seen["throttled"], seen["max_fixed_1s"]) == (3, 2, 3)
    assert (seen["limit_burst"], seen["limit_steady"]) == (1, 15)
