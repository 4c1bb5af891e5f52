"""An export's run lock never outlives its run: a start or resume that breaks
off releases it, and the watchdog frees locks whose run is over, gone, or
stopped while reading."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from core.actors import Actor
from core.context import Context
from core.locks import LOCK_TTL
from core.policy import PatientClient
from core.records import ExportSpec
from klaviyo_client import KeyCheck, KlaviyoList
from producer import runner
from schemas import keys
from schemas.contracts import RunStatus
from schemas.keys import RunField
from worker.watchdog import GRACE, clear_locks

ADMIN = Actor("ann", "admin")


@pytest.fixture
def ctx(make_context: Callable[..., Context], monkeypatch: pytest.MonkeyPatch) -> Context:
    monkeypatch.setattr(PatientClient, "get_list", lambda self, list_id: KlaviyoList(list_id, "L"))
    monkeypatch.setattr(PatientClient, "verify_key", lambda self: KeyCheck("A1", "accounts"))
    return make_context()


def _export(ctx: Context) -> str:
    connection = ctx.store.add_connection(
        name="c", api_key="pk_x", allow="admins", created_by="ann", account_id="A1",
        verified_via="accounts", accepted_terms=True,
    )  # fmt: skip
    spec = ExportSpec(name="e", connection_id=connection.id, list_id="L1", email_field="email")
    export = ctx.store.add_export(spec, created_by="ann")
    return export.id


def test_a_start_that_breaks_off_releases_the_lock(
    ctx: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    export_id = _export(ctx)
    segment = tmp_path / "s.csv"
    segment.write_text("email\na@example.com\n")

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("a bug while reading")

    monkeypatch.setattr(runner, "_read_and_store", broken)
    with pytest.raises(RuntimeError):
        runner.start_run(ctx, runner.RunRequest(export_id, str(segment), ADMIN))

    assert ctx.locks.all() == []
    (run,) = ctx.runs.recent(export_id)
    assert run.status is RunStatus.FAILED
    assert "interrupted (RuntimeError)" in run.message


def test_the_watchdog_frees_locks_of_final_gone_and_stalled_runs(ctx: Context) -> None:
    final = ctx.lifecycle.create("e_final", "s.csv", "ann", "c_1", "L1")
    ctx.lifecycle.finish(final, RunStatus.SUCCEEDED)
    ctx.locks.take("e_final", final)  # ended, lock left behind
    ctx.locks.take("e_gone", "r_lost_with_redis")
    stalled = ctx.lifecycle.create("e_stalled", "s.csv", "ann", "c_1", "L1")
    ctx.locks.take("e_stalled", stalled)
    reading = ctx.lifecycle.create("e_reading", "s.csv", "ann", "c_1", "L1")
    ctx.locks.take("e_reading", reading)
    ctx.redis.hset(keys.run(stalled), RunField.UPDATED_AT, repr(time.time() - 1000))

    assert clear_locks(ctx.lifecycle, stale_after=900) == []  # a lock this young may be a resume's

    for export_id in ("e_final", "e_gone", "e_stalled", "e_reading"):  # a minute on
        ctx.redis.expire(keys.export_lock(export_id), LOCK_TTL - int(GRACE) - 30)
    freed = clear_locks(ctx.lifecycle, stale_after=900)

    assert sorted(freed) == ["e_final", "e_gone", "e_stalled"]
    assert [(lock.export_id, lock.run_id) for lock in ctx.locks.all()] == [("e_reading", reading)]
    run = ctx.runs.get(stalled)
    assert run.status is RunStatus.FAILED
    assert "stopped reading the segment" in run.message


def test_a_run_ended_while_reading_never_starts_uploading(ctx: Context) -> None:
    run_id = ctx.lifecycle.create("e_1", "s.csv", "ann", "c_1", "L1")
    ctx.lifecycle.fail(run_id, "the producer stopped reading")

    assert ctx.lifecycle.begin_upload(run_id, rows_read=1, submitted=1, batches=1) is False
    assert ctx.runs.status(run_id) is RunStatus.FAILED
    assert ctx.runs.active() == []
