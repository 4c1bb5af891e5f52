"""The ``kx.watchdog`` task wires each stage of a run to what its lost callback does."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from core.batch_store import BatchResult, StoredBatch
from core.context import Context
from core.removal_store import RemovalResult
from schemas import keys
from schemas.contracts import BatchStatus, RunStatus
from schemas.keys import RunField
from tests.support.domain import RecordingDispatcher
from worker import tasks


@pytest.fixture
def ctx(make_context: Callable[..., Context], monkeypatch: pytest.MonkeyPatch) -> Context:
    made = make_context()
    monkeypatch.setattr(tasks, "context", lambda: made)
    return made


def _idle(ctx: Context, run_id: str) -> None:
    """No progress for two minutes: past the watchdog's grace."""
    ctx.redis.hset(keys.run(run_id), RunField.UPDATED_AT, repr(time.time() - 120))


def _adds_done(ctx: Context, members_gone: int) -> str:
    run_id = ctx.lifecycle.create("e_1", "seg.csv", "t", "c_1", "L1")
    ctx.batches.store(StoredBatch(run_id, 0, b'[{"type":"profile"}]', [1], ["a@b.co"], ["00"]))
    ctx.lifecycle.begin_upload(run_id, rows_read=1, submitted=1, batches=1)
    ctx.batches.record(BatchResult(run_id, 0, BatchStatus.SUCCEEDED, imported=1, failed=0))
    ctx.removals.store(run_id, (f"gone{i}@example.org" for i in range(members_gone)))
    _idle(ctx, run_id)
    return run_id


def test_a_mirror_run_whose_adds_callback_was_lost_goes_on_to_its_brake(
    ctx: Context, dispatcher: RecordingDispatcher
) -> None:
    run_id = _adds_done(ctx, 3)
    ctx.runs.set_fields(run_id, **{RunField.BRAKE_REASON: "over 20% of the list"})
    outcome = tasks.watchdog.run()
    assert outcome["finished"] == [run_id]
    run = ctx.runs.get(run_id)
    assert run.status is RunStatus.AWAITING_APPROVAL  # not ended without its removals
    assert run.counts.to_remove == 3
    assert dispatcher.removals == []  # held for a person


def test_a_removing_run_whose_callback_was_lost_is_finished(ctx: Context) -> None:
    run_id = _adds_done(ctx, 3)
    assert ctx.lifecycle.after_adds(run_id) is RunStatus.REMOVING
    assert ctx.removals.record(RemovalResult(run_id, 0, "removed", removed=3))
    _idle(ctx, run_id)
    outcome = tasks.watchdog.run()
    assert outcome["finished"] == [run_id]
    run = ctx.runs.get(run_id)
    assert run.status is RunStatus.SUCCEEDED
    assert run.counts.removed == 3
