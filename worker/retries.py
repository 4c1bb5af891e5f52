"""How a worker waits without sleeping: the rate limit, throttling and
transient faults become ``RetryLater`` (``core.errors``), which the task turns
into a countdown that frees its process. Uploads and removals share these;
the policy itself (attempts, backoff, quotas) is ``core.policy``'s.
"""

from __future__ import annotations

import random
from typing import Final, NoReturn

from core.context import Context
from core.errors import RetryLater
from core.policy import MAX_TRANSIENT_ATTEMPTS, Quota, account_key, backoff
from core.ratelimit import RateLimiter
from core.store import Connection
from klaviyo_client import KlaviyoClient, RetriableError, ThrottledError

MAX_RATE_SLEEP: Final = 1.0
"""A rate-limit wait up to this long is slept; a longer one re-schedules the task."""


def worker_client(ctx: Context, connection: Connection) -> tuple[KlaviyoClient, Quota]:
    """A client whose every call first takes its turn in the shared limiter; a
    wait longer than ``MAX_RATE_SLEEP`` hands the task back (``RetryLater``)."""
    quota = Quota(RateLimiter(ctx.redis, ctx.settings.rate_headroom), account_key(connection))

    def before_request(operation: str) -> None:
        wait = quota.acquire(operation, max_sleep=MAX_RATE_SLEEP)
        if wait:
            raise RetryLater(wait + random.uniform(0, 0.25), f"rate limit on {operation}")

    return ctx.klaviyo(connection.id, before_request=before_request), quota


def throttled(quota: Quota, exc: ThrottledError, attempts: int) -> NoReturn:
    """Klaviyo answered 429: every worker of the account waits its Retry-After."""
    wait = quota.throttled(exc.operation, exc.retry_after, attempts + 1)
    raise RetryLater(wait + random.uniform(0, 0.5), "throttled by Klaviyo") from None


def transient(exc: RetriableError, attempts: int) -> None:
    """Try again after a backoff, unless ``attempts`` (this one included) used
    up ``MAX_TRANSIENT_ATTEMPTS``: then return, and the caller records the failure."""
    if attempts < MAX_TRANSIENT_ATTEMPTS:
        raise RetryLater(backoff(attempts), f"transient: {exc}") from None
