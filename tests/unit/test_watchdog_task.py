"""The ``kx.watchdog`` task wires each stage of a run to what its lost callback does."""

from __future__ import annotations

import time

import fakeredis
import pytest

from core.context import Context
from core.runs import Runs
from core.settings import Settings
from core.store import Store
from klaviyo_client.client import ClientSettings
from worker import tasks


@pytest.fixture
def ctx(monkeypatch: pytest.MonkeyPatch) -> Context:
    fake = fakeredis.FakeRedis()
    made = Context(
        settings=Settings.from_env(),
        redis=fake,
        store=Store(fake, None),
        runs=Runs(fake),
        client_settings=ClientSettings.from_env(),
    )
    monkeypatch.setattr(tasks, "context", lambda: made)
    return made


def _adds_done(runs: Runs, members_gone: int) -> str:
    run_id = runs.create("e_1", "seg.csv", "t", "c_1", "L1")
    runs.store_batch(run_id, 0, b'[{"type":"profile"}]', [1], ["a@b.co"], ["00"])
    runs.mark_running(run_id, rows_read=1, submitted=1, batches=1)
    result = {"v": 1, "run_id": run_id, "batch": 0, "status": "succeeded"}
    runs.record_batch(run_id, {**result, "submitted": 1, "imported": 1, "failed": 0})
    runs.store_removals(run_id, (f"gone{i}@example.org" for i in range(members_gone)))
    runs.redis.hset(f"kx:run:{run_id}", "updated_at", repr(time.time() - 120))
    return run_id


def test_a_mirror_run_whose_adds_callback_was_lost_goes_on_to_its_brake(ctx: Context) -> None:
    run_id = _adds_done(ctx.runs, 3)
    ctx.redis.hset(f"kx:run:{run_id}", "brake_reason", "over 20% of the list")
    outcome = tasks.watchdog.run()
    assert outcome["finished"] == [run_id]
    status = ctx.runs.status(run_id)
    assert status["status"] == "awaiting_approval"  # not ended without its removals
    assert status["counts"]["to_remove"] == 3


def test_a_removing_run_whose_callback_was_lost_is_finished(ctx: Context) -> None:
    run_id = _adds_done(ctx.runs, 3)
    ctx.runs.set_stage(run_id, "removing")
    assert ctx.runs.record_removal(run_id, 0, 3, 0)
    ctx.redis.hset(f"kx:run:{run_id}", "updated_at", repr(time.time() - 120))
    outcome = tasks.watchdog.run()
    assert outcome["finished"] == [run_id]
    status = ctx.runs.status(run_id)
    assert status["status"] == "succeeded"
    assert status["counts"]["removed"] == 3
