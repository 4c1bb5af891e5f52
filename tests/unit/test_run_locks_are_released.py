"""An export's run lock never outlives its run: a start or resume that breaks
off releases it, and the watchdog frees locks whose run is over, gone, or
stopped while reading."""

from __future__ import annotations

import time
from pathlib import Path

import fakeredis
import pytest

from core.actors import Actor
from core.context import Context
from core.policy import PatientClient
from core.runs import LOCK_TTL, Runs
from core.secrets import SecretBox, generate_key
from core.settings import Settings
from core.store import Store
from klaviyo_client import KeyCheck, KlaviyoList
from producer import runner
from schemas import keys
from worker.watchdog import GRACE, clear_locks

ADMIN = Actor("ann", "admin")


@pytest.fixture
def ctx(monkeypatch: pytest.MonkeyPatch) -> Context:
    fake = fakeredis.FakeRedis()
    settings = Settings.from_env({})
    monkeypatch.setattr(PatientClient, "get_list", lambda self, list_id: KlaviyoList(list_id, "L"))
    monkeypatch.setattr(PatientClient, "verify_key", lambda self: KeyCheck("A1", "accounts"))
    return Context(
        settings, fake, Store(fake, SecretBox(generate_key())), Runs(fake), settings.klaviyo
    )


def _export(ctx: Context) -> str:
    connection = ctx.store.add_connection(
        name="c", api_key="pk_x", allow="admins", created_by="ann", account_id="A1",
        verified_via="accounts", accepted_terms=True,
    )  # fmt: skip
    export = ctx.store.add_export(
        name="e", connection_id=connection.id, list_id="L1", email_field="email",
        properties=None, created_by="ann",
    )  # fmt: skip
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

    assert ctx.runs.locks() == []
    (status,) = ctx.runs.recent(export_id)
    assert status["status"] == "failed"
    assert "interrupted (RuntimeError)" in status["message"]


def test_the_watchdog_frees_locks_of_final_gone_and_stalled_runs(ctx: Context) -> None:
    runs = ctx.runs
    final = runs.create("e_final", "s.csv", "ann", "c_1", "L1")
    runs.lock_export("e_final", final)
    runs.redis.hset(keys.run(final), "status", "succeeded")  # ended, lock left behind
    runs.lock_export("e_gone", "r_lost_with_redis")
    stalled = runs.create("e_stalled", "s.csv", "ann", "c_1", "L1")
    runs.lock_export("e_stalled", stalled)
    reading = runs.create("e_reading", "s.csv", "ann", "c_1", "L1")
    runs.lock_export("e_reading", reading)
    runs.redis.hset(keys.run(stalled), "updated_at", repr(time.time() - 1000))

    assert clear_locks(runs, stale_after=900) == []  # a lock this young may be a resume's

    for export_id in ("e_final", "e_gone", "e_stalled", "e_reading"):  # a minute on
        runs.redis.expire(keys.export_lock(export_id), LOCK_TTL - int(GRACE) - 30)
    freed = clear_locks(runs, stale_after=900)

    assert sorted(freed) == ["e_final", "e_gone", "e_stalled"]
    assert [(export, run) for export, run, _ in runs.locks()] == [("e_reading", reading)]
    assert runs.status(stalled)["status"] == "failed"
    assert "stopped reading the segment" in runs.status(stalled)["message"]


def test_a_run_ended_while_reading_never_starts_uploading(ctx: Context) -> None:
    run_id = ctx.runs.create("e_1", "s.csv", "ann", "c_1", "L1")
    ctx.runs.finish(run_id, status="failed", message="the producer stopped reading")

    assert ctx.runs.mark_running(run_id, rows_read=1, submitted=1, batches=1) is False
    assert ctx.runs.status(run_id)["status"] == "failed"
    assert ctx.runs.active() == []
