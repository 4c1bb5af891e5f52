"""The demo finds a Redis, or starts its own: no REDIS_URL, nothing on the port."""

from __future__ import annotations

import redis

from klaviyo_export.services import free_port, redis_for_demo


def test_the_demo_starts_an_embedded_redis_when_none_answers() -> None:
    nobody = f"redis://127.0.0.1:{free_port()}/0"
    with redis_for_demo(env={}, local=nobody) as (url, where):
        assert where.startswith("embedded redis-server")
        assert url != nobody
        assert redis.Redis.from_url(url).ping()
    try:
        redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
        stopped = False
    except redis.ConnectionError:
        stopped = True
    assert stopped  # and it is gone afterwards


def test_the_demo_uses_redis_url_when_set() -> None:
    with redis_for_demo(env={"REDIS_URL": "redis://example.invalid:1/0"}) as (url, where):
        assert (url, where) == ("redis://example.invalid:1/0", "REDIS_URL")
