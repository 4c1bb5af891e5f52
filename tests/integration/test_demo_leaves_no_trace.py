"""`make demo` runs on its own embedded Redis, whatever the environment points at,
and leaves nothing in the user's Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import redis


def test_the_demo_leaves_the_users_redis_untouched(real_redis: redis.Redis, redis_url: str) -> None:
    real_redis.set("users-own-key", "1")
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
        "KLAVIYO_EXPORT_STORE_URL": redis_url,
    }
    proc = subprocess.run(
        [sys.executable, "-m", "frontdoors.cli.main", "demo", "--profiles", "600", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["ok"] is True
    assert summary["counts"]["rows_read"] == 600
    assert [k.decode() for k in real_redis.keys("*")] == ["users-own-key"]
