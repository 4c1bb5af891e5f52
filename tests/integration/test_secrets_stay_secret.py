"""API keys never leave their encrypted field; emails never reach logs or messages.

Every command Redis receives during a whole export is recorded with MONITOR:
that covers the store, the result backend and, with Redis as the broker, every
task message (whose bodies are decoded). Worker logs run at DEBUG.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from demo.sample import FAIL_EMAIL_PATTERN, write_sample
from tests.support.pipeline import LIST_ID, pipeline
from tests.support.services import redis_server


class Monitor:
    """Every command Redis runs, as text, until stopped."""

    def __init__(self, url: str) -> None:
        self.commands: list[str] = []
        self._client = redis.Redis.from_url(url)
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self._client.monitor() as monitor:
            self._ready.set()
            for event in monitor.listen():
                self.commands.append(str(event["command"]))
                if self._stop.is_set():
                    return

    def __enter__(self) -> Monitor:
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._client.ping()  # one more command wakes the reader up
        self._thread.join(10)


def _message_bodies(commands: list[str]) -> Iterator[str]:
    """Decoded bodies of the kombu messages pushed onto Redis lists."""
    for command in commands:
        if not command.startswith("LPUSH"):
            continue
        start = command.find("{")
        if start < 0:
            continue
        try:
            envelope = json.loads(command[start:])
        except ValueError:
            continue
        body = envelope.get("body", "")
        if envelope.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body).decode()
        yield body


def _all_values(client: redis.Redis) -> Iterator[bytes]:
    for key in client.scan_iter(count=1000):
        yield key
        kind = client.type(key).decode()
        if kind == "string":
            yield client.get(key) or b""
        elif kind == "hash":
            for field, value in client.hgetall(key).items():
                yield field
                yield value
        elif kind == "list":
            yield from client.lrange(key, 0, -1)
        elif kind == "set":
            yield from client.smembers(key)
        elif kind == "zset":
            yield from client.zrange(key, 0, -1)
        elif kind == "stream":
            for _, fields in client.xrange(key):
                yield from fields.values()


def test_no_key_anywhere_and_no_email_in_logs_or_messages(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    tmp = tmp_path_factory.mktemp("secrets")
    segment = tmp / "segment.csv"
    makeup = write_sample(segment, 3000)
    with redis_server() as url, Monitor(url) as monitor:
        with pipeline(url, tmp, loglevel="debug", fail_email=FAIL_EMAIL_PATTERN) as kx:
            api_key = kx.api_key
            export_id = kx.add_export(kx.add_connection(), LIST_ID)
            run = kx.cli("run", export_id, "--source", str(segment), "--wait", "--json")
            status = kx.cli("status", json.loads(run.stdout.splitlines()[-1])["run_id"])
            cli_output = run.stdout + run.stderr + status.stdout + status.stderr
        stored = list(_all_values(redis.Redis.from_url(url)))

    key = api_key.encode()
    assert monitor.commands, "MONITOR saw nothing"
    assert not [c for c in monitor.commands if api_key in c]
    assert not [v for v in stored if key in v]
    bodies = list(_message_bodies(monitor.commands))
    assert any("@example.com" in c for c in monitor.commands)  # it saw the payloads
    assert any("kx.upload_batch" in body for body in bodies) or any(
        "kx.upload_batch" in c for c in monitor.commands
    )
    assert bodies
    emails = makeup.imported_emails
    for body in bodies:
        assert api_key not in body
        assert "@example.com" not in body, "an email travelled in a task message"
    logs = "".join(p.read_text() for p in Path(tmp).glob("worker*.log")) + cli_output
    assert "DEBUG" in logs  # the workers really logged at DEBUG
    assert api_key not in logs
    leaked = [e for e in emails if e in logs]
    assert not leaked, f"{len(leaked)} emails in logs, e.g. row of {leaked[0].split('@')[0]}"
