"""Fixtures shared by every test suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tests.support.services import redis_server


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A private, real redis-server for the whole session."""
    with redis_server() as url:
        yield url


@pytest.fixture
def real_redis(redis_url: str) -> Iterator[redis.Redis]:
    """A real Redis connection to an emptied database."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()
