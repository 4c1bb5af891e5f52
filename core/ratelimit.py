"""A rate limit shared by every worker, per Klaviyo account and operation.

Klaviyo counts requests per account and per endpoint in two fixed windows, a
1 s burst window and a 60 s steady window, and answers 429 past either. Its
window boundaries are its own, so we keep a stricter promise: no more than
``burst`` requests in *any* 1 s and no more than ``steady`` in *any* 60 s
(a sliding log), which holds whatever Klaviyo's alignment. One Lua script
checks both windows and records the request atomically, on Redis's clock, so
any number of workers on any number of machines share one quota.

A 429 still happens (another client of the same account, a limit Klaviyo
lowered): ``cooldown`` then makes every worker wait the ``Retry-After``.

``headroom`` (``KLAVIYO_EXPORT_RATE_HEADROOM`` in ``core.settings``,
0.9) scales Klaviyo's published limits, leaving room for network jitter and
for other clients of the account.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Final

import redis

from klaviyo_client import RATE_LIMITS
from schemas import keys

# Try to take one request from a sliding-log limit with two windows.
# KEYS[1] log zset (score = admission time in microseconds), KEYS[2] cooldown key
# ARGV[1] burst, ARGV[2] burst window (us), ARGV[3] steady, ARGV[4] steady window (us),
# ARGV[5] a unique member for this request
# Returns 0 if admitted, else the wait in microseconds before a retry can succeed.
ACQUIRE: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cooldown = redis.call('PTTL', KEYS[2])
if cooldown > 0 then return cooldown * 1000 end
local burst, burst_us = tonumber(ARGV[1]), tonumber(ARGV[2])
local steady, steady_us = tonumber(ARGV[3]), tonumber(ARGV[4])
-- Lua turns numbers into strings with 14 digits: format microsecond times whole.
local function us(x) return string.format('%.0f', x) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', us(now - steady_us))
local wait = 0
local in_steady = redis.call('ZCARD', KEYS[1])
if in_steady >= steady then
  local oldest = redis.call('ZRANGE', KEYS[1], in_steady - steady, in_steady - steady, 'WITHSCORES')
  wait = math.max(wait, tonumber(oldest[2]) + steady_us - now)
end
local since = '(' .. us(now - burst_us)
local in_burst = redis.call('ZCOUNT', KEYS[1], since, '+inf')
if in_burst >= burst then
  local oldest = redis.call('ZRANGEBYSCORE', KEYS[1], since, '+inf',
                            'WITHSCORES', 'LIMIT', in_burst - burst, 1)
  wait = math.max(wait, tonumber(oldest[2]) + burst_us - now)
end
if wait > 0 then return wait end
redis.call('ZADD', KEYS[1], us(now), ARGV[5])
redis.call('PEXPIRE', KEYS[1], math.ceil(steady_us / 1000) + 1000)
return 0
"""


@dataclass(frozen=True, slots=True)
class Limit:
    burst: int
    steady: int
    burst_window: float = 1.0
    steady_window: float = 60.0


SEND_JITTER: Final = 0.25
"""Seconds a request may take between its admission here and its arrival at
Klaviyo (a busy process, a slow connect). Counting each window that much
longer keeps the promise at Klaviyo's end, not only at ours: nine requests
admitted early in one second and sent late cannot meet nine sent on time in
the next second. The body is encoded before admission, so the gap is a pooled
connection's send: milliseconds, tens on a saturated 2-core machine. 0.25 s
is several times that, and costs 20% of the burst rate (0.5 s cost a third:
1M profiles took 1.7x the rate-limit bound, not 1.4x)."""


def published_limit(operation: str, headroom: float) -> Limit:
    """Klaviyo's limit for ``operation`` scaled by ``headroom`` (each at least 1),
    over windows stretched by ``SEND_JITTER``."""
    burst, steady = RATE_LIMITS[operation]
    return Limit(
        burst=max(1, int(burst * headroom)),
        steady=max(1, int(steady * headroom)),
        burst_window=1.0 + SEND_JITTER,
        steady_window=60.0 + SEND_JITTER,
    )


class RateLimiter:
    """The shared limiter; ``try_acquire`` never blocks, ``acquire`` may sleep."""

    def __init__(self, client: redis.Redis, headroom: float = 0.9) -> None:
        self.redis = client
        self.headroom = headroom
        self._acquire = client.register_script(ACQUIRE)

    def try_acquire(self, account: str, operation: str, limit: Limit | None = None) -> float:
        """Take one request; 0.0 if admitted, else the seconds to wait first."""
        limit = limit or published_limit(operation, self.headroom)
        waited = self._acquire(
            keys=[keys.rate_log(account, operation), keys.rate_cooldown(account, operation)],
            args=[
                limit.burst,
                int(limit.burst_window * 1_000_000),
                limit.steady,
                int(limit.steady_window * 1_000_000),
                uuid.uuid4().hex,
            ],
        )
        return int(waited) / 1_000_000

    def acquire(
        self, account: str, operation: str, max_sleep: float, limit: Limit | None = None
    ) -> float:
        """Take one request, sleeping through waits up to ``max_sleep`` in all.

        Returns 0.0 once admitted, or the wait still ahead when it exceeds
        what is left of ``max_sleep`` (the caller should re-schedule).
        """
        budget = max_sleep
        while True:
            wait = self.try_acquire(account, operation, limit)
            if wait == 0.0:
                return 0.0
            if wait > budget:
                return wait
            time.sleep(wait)
            budget -= wait

    def cooldown(self, account: str, operation: str, seconds: float) -> None:
        """Make every worker wait ``seconds`` before calling ``operation`` again."""
        millis = max(1, int(seconds * 1000))
        key = keys.rate_cooldown(account, operation)
        # Never shorten a longer cooldown another worker set.
        current = self.redis.pttl(key)
        if current is None or int(current) < millis:
            self.redis.set(key, "1", px=millis)
