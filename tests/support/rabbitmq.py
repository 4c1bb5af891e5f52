"""A private RabbitMQ virtual host for one test module, on the local broker.

RabbitMQ runs on this machine (127.0.0.1:5672, guest/guest); each module gets
its own vhost so queues left by another run never leak in. Missing broker or
``rabbitmqctl``: skipped locally, a failure under CI.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from tests.support.services import missing_service

HOST, PORT = "127.0.0.1", 5672


def _reachable() -> bool:
    try:
        with socket.create_connection((HOST, PORT), timeout=2):
            return True
    except OSError:
        return False


def _ctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@contextmanager
def rabbitmq_vhost() -> Iterator[str]:
    """Yield an ``amqp://`` URL for a fresh vhost; delete it afterwards."""
    if not _reachable():
        missing_service(f"no RabbitMQ on {HOST}:{PORT}")
    if shutil.which("rabbitmqctl") is None:
        missing_service("rabbitmqctl is not on PATH (needed to make a private vhost)")
    vhost = f"kx-test-{secrets.token_hex(4)}"
    _ctl("add_vhost", vhost)
    try:
        _ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"amqp://guest:guest@{HOST}:{PORT}/{vhost}"
    finally:
        _ctl("delete_vhost", vhost)
