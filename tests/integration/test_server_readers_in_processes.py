"""The server reads each run it starts in a process of its own, and a reader
that dies costs its own run only: the run ends as failed with its lock
released, and the next run of the export may start at once.

Real Redis and the sandbox; the reader is a real spawned process, held in
``open()`` of a named pipe (a segment nobody writes yet) while the test kills it.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core import operations
from core.actors import Actor
from core.context import Context
from core.records import ExportSpec
from core.secrets import generate_key
from frontdoors.http.readers import Readers
from producer.remote import open_remote_run
from schemas.contracts import RunStatus
from tests.support.sandbox import API_KEY, LIST_ID, running_sandbox
from tests.support.services import redis_server

ADMIN = Actor("ann", "admin")


@pytest.fixture
def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Context]:
    with redis_server() as url, running_sandbox() as sandbox:
        env = {
            "REDIS_URL": url,
            "KLAVIYO_BASE_URL": sandbox.base_url,
            "KLAVIYO_EXPORT_SECRET_KEY": generate_key(),
            "KLAVIYO_EXPORT_SOURCE_ROOTS": str(tmp_path),
        }
        for name, value in env.items():  # the reader processes build their Context from it
            monkeypatch.setenv(name, value)
        yield Context.from_env()


def _export(ctx: Context, segment: Path) -> str:
    connection = operations.add_connection(
        ctx, ADMIN, name="Sandbox", api_key=API_KEY, accept_privacy_terms=True
    )
    spec = ExportSpec(
        connection_id=connection.id, list_id=LIST_ID, email_field="email", segment=str(segment)
    )
    return operations.add_export(ctx, ADMIN, spec).id


def _wait(predicate: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_killed_reader_fails_its_own_run_and_frees_the_export(
    ctx: Context, tmp_path: Path
) -> None:
    blocked = tmp_path / "never-written.csv"
    os.mkfifo(blocked)
    readable = tmp_path / "segment.csv"
    readable.write_text("email\nann@example.com\nbob@example.com\n")
    stuck_export, good_export = _export(ctx, blocked), _export(ctx, readable)
    readers = Readers(ctx, 2, processes=True)
    try:
        stuck = open_remote_run(ctx, ADMIN, stuck_export)
        good = open_remote_run(ctx, ADMIN, good_export)
        assert stuck.request is not None
        assert good.request is not None
        readers.submit(stuck.run_id, stuck.request)
        readers.submit(good.run_id, good.request)

        _wait(lambda: any(c.name == f"kx-reader-{stuck.run_id}" for c in _children()))
        _wait(lambda: ctx.runs.get(good.run_id).status is not RunStatus.PENDING)
        (child,) = [c for c in _children() if c.name == f"kx-reader-{stuck.run_id}"]
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        _wait(lambda: ctx.runs.get(stuck.run_id).final)

        run = ctx.runs.get(stuck.run_id)
        assert run.status is RunStatus.FAILED
        assert "interrupted" in run.message
        assert ctx.locks.holder(stuck_export) is None  # the next run may start at once
        assert ctx.runs.get(good.run_id).status is not RunStatus.FAILED  # not the other's
        assert ctx.runs.get(good.run_id).counts.rows_read == 2
    finally:
        readers.stop()


def _children() -> list[multiprocessing.process.BaseProcess]:
    return multiprocessing.active_children()
