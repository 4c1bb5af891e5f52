"""How every call to Klaviyo waits and retries: one policy for workers and commands.

Klaviyo limits each account per endpoint (``klaviyo_client.RATE_LIMITS``);
the shared limiter (``core.ratelimit``) counts every request of
every process in Redis, so a worker's uploads and a person's ``reconcile``
of a 20,000-member list share one quota and neither gets a 429 for the
other's traffic. Errors are retried by their type (``klaviyo_client.errors``):

- throttled (429): every process waits out ``Retry-After`` (or a backoff) for
  that operation, through the limiter's shared cooldown, and tries again;
- retriable (5xx, resets, timeouts): capped exponential backoff with full
  jitter, at most ``MAX_TRANSIENT_ATTEMPTS`` attempts;
- fatal (4xx): never retried.

Workers never sleep long: they hand a wait back to the broker
(``core.errors.RetryLater``). Commands may block, so ``PatientClient`` sleeps
through the same waits.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from core.ratelimit import RateLimiter
from core.store import Connection
from klaviyo_client import ClientSettings, KlaviyoClient, RetriableError, ThrottledError

MAX_TRANSIENT_ATTEMPTS: Final = 8
"""Transient errors (5xx, resets, timeouts) tolerated per piece of work before it fails."""
MAX_THROTTLED_ATTEMPTS: Final = 30
"""A blocking caller gives up after this many 429s in a row (a worker never does)."""
MAX_BACKOFF_SECONDS: Final = 120.0
PATIENCE_SECONDS: Final = 600.0
"""The longest one call of a command waits for its turn and its retries in all."""
UNVERIFIED_ACCOUNT: Final = "unverified-key"
"""The quota a key's first check counts against: its account is not known yet."""


def backoff(attempt: int, base: float = 1.0) -> float:
    """Capped exponential backoff with full jitter (never below 0.2 s)."""
    ceiling = min(MAX_BACKOFF_SECONDS, base * 2 ** max(0, attempt - 1))
    return max(0.2, random.uniform(0, ceiling))


def account_key(connection: Connection) -> str:
    """Klaviyo counts per account: connections to one account share a quota."""
    return connection.account_id or f"connection-{connection.id}"


@dataclass(frozen=True)
class Quota:
    """One Klaviyo account's share of the limiter."""

    limiter: RateLimiter
    account: str

    def acquire(self, operation: str, max_sleep: float) -> float:
        """Take one request, sleeping up to ``max_sleep``; 0.0, or the wait still ahead."""
        return self.limiter.acquire(self.account, operation, max_sleep=max_sleep)

    def block(self, operation: str, deadline: float | None = None) -> None:
        """Take one request, sleeping as long as it takes, or until ``deadline``
        (``time.monotonic()``), past which ``ThrottledError`` says how long."""
        while True:
            left = 60.0 if deadline is None else min(60.0, deadline - time.monotonic())
            wait = self.acquire(operation, max_sleep=max(0.0, left))
            if not wait:
                return
            if deadline is not None and time.monotonic() + wait > deadline:
                raise ThrottledError(
                    f"the shared rate limit asks for {wait:.0f} s more, past this command's "
                    f"patience ({PATIENCE_SECONDS:.0f} s): try again later",
                    retry_after=wait,
                    status=None,
                    operation=operation,
                )
            time.sleep(min(wait, 60.0))

    def throttled(self, operation: str | None, retry_after: float | None, attempt: int) -> float:
        """A 429: every process waits out Retry-After (or a backoff) for this operation."""
        wait = retry_after if retry_after is not None else backoff(attempt)
        if operation:
            self.limiter.cooldown(self.account, operation, wait)
        return wait


class PatientClient(KlaviyoClient):
    """A client for callers that may block (commands, the producer's checks).

    Each HTTP call, every page of a paged read included, first takes its turn
    in the shared limiter, then is retried by the policy above; a paged read
    of any length therefore never meets a 429 of its own making.
    """

    def __init__(
        self,
        api_key: str,
        settings: ClientSettings,
        quota: Quota,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(api_key, settings, before_request=self._take_turn)
        self._quota = quota
        self._sleep = sleep
        self._deadline: float | None = None

    def _take_turn(self, operation: str) -> None:
        self._quota.block(operation, self._deadline)

    def request(self, operation: str, method: str, path_or_url: str, **kwargs: Any) -> Any:
        transient = throttled = 0
        self._deadline = time.monotonic() + PATIENCE_SECONDS
        while True:
            try:
                return super().request(operation, method, path_or_url, **kwargs)
            except ThrottledError as exc:
                throttled += 1
                if throttled >= MAX_THROTTLED_ATTEMPTS:
                    raise
                wait = self._quota.throttled(exc.operation, exc.retry_after, throttled)
                if not exc.operation:  # no shared cooldown to wait on: wait here
                    self._sleep(wait + random.uniform(0, 0.25))
                # else the next call's turn in the limiter waits out the cooldown
            except RetriableError:
                transient += 1
                if transient >= MAX_TRANSIENT_ATTEMPTS:
                    raise
                self._sleep(backoff(transient))
