"""Klaviyo's rate limits, and the traffic statistics that prove a client kept them.

Enforcement follows Klaviyo's guide: per account, per operation, a fixed
1-second burst window and a fixed 60-second steady window (windows start at
multiples of their length on the sandbox clock), limits from the spec's
``x-klaviyo-ratelimit`` times ``--rate-limit-scale`` (each at least 1; scale
0 turns enforcement off). A request that uses an ``additional-fields`` value
with its own stricter limit (``get_list`` with ``profile_count``) must pass
that bucket too, as the guide says ("each call now has multiple rate limits
that apply"). A refused request does not use up quota.

A refusal is a 429 ``throttled`` error whose ``Retry-After`` is the whole
seconds until the window that refused it resets (at least 1). Other answers
carry ``RateLimit-Limit``/``-Remaining``/``-Reset`` for the operation's
steady window, as Klaviyo documents; they are absent when enforcement is off
and on answers given before an account is known (401).

:class:`TrafficStats` records, per account and operation, every request that
reached the limiter (throttled or not): the most seen in any sliding 1 s and
60 s interval, and the most in any fixed (enforced) window. A client that
stayed within the limits shows fixed maxima at or under the limits and no
429s; the sliding maxima show how bursty it was (up to twice a limit is
possible without a single 429, which is how fixed windows behave).
"""

from __future__ import annotations

import math
import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from sandbox.clock import Clock
from sandbox.spec import Operation

BURST_SECONDS = 1.0
STEADY_SECONDS = 60.0


@dataclass
class FixedWindow:
    """A counter that resets at every multiple of ``size`` seconds."""

    size: float
    index: int = -1
    count: int = 0

    def roll(self, now: float) -> None:
        index = int(now // self.size)
        if index != self.index:
            self.index = index
            self.count = 0

    def seconds_left(self, now: float) -> float:
        return (self.index + 1) * self.size - now


@dataclass
class _Bucket:
    burst_limit: int
    steady_limit: int
    burst: FixedWindow = field(default_factory=lambda: FixedWindow(BURST_SECONDS))
    steady: FixedWindow = field(default_factory=lambda: FixedWindow(STEADY_SECONDS))

    def wait(self, now: float) -> float:
        """Seconds until this bucket admits again; 0 if it admits now."""
        self.burst.roll(now)
        self.steady.roll(now)
        wait = 0.0
        if self.burst.count >= self.burst_limit:
            wait = self.burst.seconds_left(now)
        if self.steady.count >= self.steady_limit:
            wait = max(wait, self.steady.seconds_left(now))
        return wait

    def take(self) -> None:
        self.burst.count += 1
        self.steady.count += 1


@dataclass(frozen=True)
class Decision:
    """The limiter's verdict: admit (with headers) or refuse for ``retry_after`` s."""

    allowed: bool
    retry_after: int = 0
    headers: dict[str, str] = field(default_factory=dict)


def scaled(limit: int, scale: float) -> int:
    return max(1, int(limit * scale))


class _Observed:
    """Arrival counts of one (account, operation)."""

    def __init__(self) -> None:
        self.requests = 0
        self.throttled = 0
        self.sliding_1s: deque[float] = deque()
        self.sliding_60s: deque[float] = deque()
        self.max_sliding_1s = 0
        self.max_sliding_60s = 0
        self.fixed_1s = FixedWindow(BURST_SECONDS)
        self.fixed_60s = FixedWindow(STEADY_SECONDS)
        self.max_fixed_1s = 0
        self.max_fixed_60s = 0

    def observe(self, now: float) -> None:
        self.requests += 1
        for window, seconds in (
            (self.sliding_1s, BURST_SECONDS),
            (self.sliding_60s, STEADY_SECONDS),
        ):
            window.append(now)
            while window[0] <= now - seconds:
                window.popleft()
        self.max_sliding_1s = max(self.max_sliding_1s, len(self.sliding_1s))
        self.max_sliding_60s = max(self.max_sliding_60s, len(self.sliding_60s))
        for fixed in (self.fixed_1s, self.fixed_60s):
            fixed.roll(now)
            fixed.count += 1
        self.max_fixed_1s = max(self.max_fixed_1s, self.fixed_1s.count)
        self.max_fixed_60s = max(self.max_fixed_60s, self.fixed_60s.count)


class TrafficStats:
    """Requests by operation and status, faults, and per-account window maxima."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_operation: Counter[str] = Counter()
        self.by_status: Counter[str] = Counter()
        self.by_operation_status: dict[str, Counter[str]] = {}
        self.faults: Counter[str] = Counter()
        self.throttled = 0
        self.accounts: dict[str, dict[str, _Observed]] = {}

    def record_answer(self, operation: str, status: str) -> None:
        with self.lock:
            self.by_operation[operation] += 1
            self.by_status[status] += 1
            self.by_operation_status.setdefault(operation, Counter())[status] += 1

    def record_fault(self, kind: str) -> None:
        with self.lock:
            self.faults[kind] += 1

    def observed(self, account_id: str, operation: str) -> _Observed:
        """Call with :attr:`lock` held."""
        per_account = self.accounts.setdefault(account_id, {})
        found = per_account.get(operation)
        if found is None:
            found = per_account[operation] = _Observed()
        return found

    def snapshot(self, limits: dict[str, tuple[int, int] | None]) -> dict[str, Any]:
        """JSON-ready view; ``limits`` maps operationId to enforced (burst, steady)."""
        with self.lock:
            accounts: dict[str, Any] = {}
            for account_id, operations in self.accounts.items():
                accounts[account_id] = {
                    op: {
                        "requests": seen.requests,
                        "throttled": seen.throttled,
                        "max_sliding_1s": seen.max_sliding_1s,
                        "max_sliding_60s": seen.max_sliding_60s,
                        "max_fixed_1s": seen.max_fixed_1s,
                        "max_fixed_60s": seen.max_fixed_60s,
                        "limit_burst": (limits.get(op) or (None, None))[0],
                        "limit_steady": (limits.get(op) or (None, None))[1],
                    }
                    for op, seen in operations.items()
                }
            return {
                "requests": {
                    "total": sum(self.by_operation.values()),
                    "by_operation": dict(self.by_operation),
                    "by_status": dict(self.by_status),
                    "by_operation_status": {
                        op: dict(counts) for op, counts in self.by_operation_status.items()
                    },
                },
                "throttled": self.throttled,
                "faults": {"total": sum(self.faults.values()), "by_kind": dict(self.faults)},
                "accounts": accounts,
            }


class RateLimiter:
    """Fixed-window limits per account and operation (thread-safe)."""

    def __init__(self, scale: float, clock: Clock, stats: TrafficStats) -> None:
        self.scale = scale
        self.clock = clock
        self.stats = stats
        self._buckets: dict[tuple[str, str], _Bucket] = {}

    @property
    def enabled(self) -> bool:
        return self.scale > 0

    def limits(self, op: Operation) -> tuple[int, int] | None:
        if not self.enabled:
            return None
        return scaled(op.burst, self.scale), scaled(op.steady, self.scale)

    def _bucket(self, key: tuple[str, str], burst: int, steady: int) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(
                scaled(burst, self.scale), scaled(steady, self.scale)
            )
        return bucket

    def check(self, account_id: str, op: Operation, query: dict[str, list[str]]) -> Decision:
        """Record the arrival and decide whether the request may proceed."""
        now = self.clock.now()
        with self.stats.lock:
            seen = self.stats.observed(account_id, op.operation_id)
            seen.observe(now)
            if not self.enabled:
                return Decision(True)
            buckets = [self._bucket((account_id, op.operation_id), op.burst, op.steady)]
            for extra in op.extra_limits:
                values = ",".join(query.get(extra.param, [])).split(",")
                if extra.value in values:
                    key = (account_id, f"{op.operation_id}|{extra.param}={extra.value}")
                    buckets.append(self._bucket(key, extra.burst, extra.steady))
            wait = max(bucket.wait(now) for bucket in buckets)
            if wait > 0:
                seen.throttled += 1
                self.stats.throttled += 1
                return Decision(False, retry_after=max(1, math.ceil(wait)))
            for bucket in buckets:
                bucket.take()
            main = buckets[0]
            headers = {
                "RateLimit-Limit": str(main.steady_limit),
                "RateLimit-Remaining": str(max(0, main.steady_limit - main.steady.count)),
                "RateLimit-Reset": str(max(1, math.ceil(main.steady.seconds_left(now)))),
            }
            return Decision(True, headers=headers)
