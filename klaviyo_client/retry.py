"""Retries for callers that may block: the CLI and the producer's checks.

Workers never use this (they hand waits back to the broker); a person at a
terminal checking a key or a list is better served by a few quiet retries
than by a transient 503.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from klaviyo_client.errors import RetriableError, ThrottledError

T = TypeVar("T")


def with_retries(
    call: Callable[[], T], attempts: int = 5, base: float = 0.5, cap: float = 10.0
) -> T:
    """``call()``, again after a retriable error, up to ``attempts`` times in all."""
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except RetriableError as exc:
            if attempt == attempts:
                raise
            wait = min(cap, base * 2 ** (attempt - 1))
            if isinstance(exc, ThrottledError) and exc.retry_after is not None:
                wait = max(wait, exc.retry_after)
            time.sleep(random.uniform(wait / 2, wait))
    raise AssertionError("unreachable")
