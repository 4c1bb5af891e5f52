"""The watchdog does what a lost chord callback would have, and resends stalled parts,
for a run's uploads and for a mirror run's removals."""

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
from worker.watchdog import MAX_RESENDS, Stage, Sweep, sweep


@pytest.fixture
def ctx(make_context: Callable[..., Context]) -> Context:
    return make_context()


def _running(ctx: Context, batches: int) -> str:
    run_id = ctx.lifecycle.create("e_1", "seg.csv", "t", "c_1", "L1")
    for n in range(batches):
        profiles = b'[{"type":"profile","attributes":{"email":"a@b.co"}}]'
        ctx.batches.store(StoredBatch(run_id, n, profiles, [n + 1], ["a@b.co"], ["00"]))
    ctx.lifecycle.begin_upload(run_id, rows_read=batches, submitted=batches, batches=batches)
    return run_id


def _done(ctx: Context, run_id: str, n: int) -> None:
    ctx.batches.record(BatchResult(run_id, n, BatchStatus.SUCCEEDED, imported=1, failed=0))


def _never(*_: object) -> None:
    raise AssertionError("not expected")


def _uploads(
    ctx: Context,
    resend: Callable[[str, int], None] = _never,
    fail: Callable[[str, int, str], None] = _never,
) -> dict[RunStatus, Stage]:
    return {RunStatus.RUNNING: Stage(ctx.batches.missing, resend, fail, ctx.lifecycle.finish)}


def _removals(
    ctx: Context,
    resend: Callable[[str, int], None] = _never,
    fail: Callable[[str, int, str], None] = _never,
) -> dict[RunStatus, Stage]:
    return {RunStatus.REMOVING: Stage(ctx.removals.missing, resend, fail, ctx.lifecycle.finish)}


def _stale(ctx: Context, run_id: str) -> None:
    ctx.redis.hset(keys.run(run_id), RunField.UPDATED_AT, "0")


def _stall_through_every_resend(ctx: Context, run_id: str, stages: dict[RunStatus, Stage]) -> None:
    """Sweep ``MAX_RESENDS`` times with no progress in between; leave the run stale."""
    for _ in range(MAX_RESENDS):
        _stale(ctx, run_id)
        assert run_id in sweep(ctx.lifecycle, stages, 900).resent
    _stale(ctx, run_id)


def _removing(ctx: Context, members: int, brake: str | None = None) -> str:
    """A mirror run whose adds are done and whose removals are under way (or,
    with a ``brake`` reason, held for approval)."""
    run_id = _running(ctx, 1)
    _done(ctx, run_id, 0)
    ctx.removals.store(run_id, (f"gone{i}@example.org" for i in range(members)), chunk_size=2)
    if brake is not None:
        ctx.runs.set_fields(run_id, **{RunField.BRAKE_REASON: brake})
    stage = ctx.lifecycle.after_adds(run_id)
    assert stage is (RunStatus.REMOVING if brake is None else RunStatus.AWAITING_APPROVAL)
    return run_id


def test_a_run_with_every_result_but_no_callback_is_finished(ctx: Context) -> None:
    run_id = _running(ctx, 2)
    _done(ctx, run_id, 0)
    _done(ctx, run_id, 1)
    within_grace = sweep(ctx.lifecycle, _uploads(ctx), 900, now=time.time())
    assert within_grace.finished == []
    outcome = sweep(ctx.lifecycle, _uploads(ctx), 900, now=time.time() + 60)
    assert outcome.finished == [run_id]
    assert ctx.runs.status(run_id) is RunStatus.SUCCEEDED
    assert ctx.runs.active() == []


def test_a_stalled_run_gets_its_missing_batches_resent(ctx: Context) -> None:
    run_id = _running(ctx, 3)
    _done(ctx, run_id, 1)
    sent: list[tuple[str, int]] = []
    resend = _uploads(ctx, lambda r, n: sent.append((r, n)))
    outcome = sweep(ctx.lifecycle, resend, 900, now=time.time() + 10_000)
    assert sent == [(run_id, 0), (run_id, 2)]
    assert outcome.resent == {run_id: [0, 2]}
    assert ctx.runs.status(run_id) is RunStatus.RUNNING


def test_a_run_still_stalled_after_the_resends_fails_its_missing_rows(ctx: Context) -> None:
    run_id = _running(ctx, 2)
    _done(ctx, run_id, 0)

    def fail(run: str, number: int, reason: str) -> None:
        ctx.batches.record(
            BatchResult(run, number, BatchStatus.FAILED, imported=0, failed=1, error=reason),
            [{"row": 2, "code": "lost", "detail": reason}],
        )

    _stall_through_every_resend(ctx, run_id, _uploads(ctx, lambda *_: None))
    outcome = sweep(ctx.lifecycle, _uploads(ctx, fail=fail), 900)
    assert outcome.failed == [run_id]
    run = ctx.runs.get(run_id)
    assert run.status is RunStatus.PARTIALLY_SUCCEEDED
    assert run.counts.failed == 1
    assert ctx.reports.failed_rows(run_id)[0]["code"] == "lost"


def test_a_removing_run_whose_callback_was_lost_is_finished(
    ctx: Context, dispatcher: RecordingDispatcher
) -> None:
    run_id = _removing(ctx, 3)  # chunks of 2 and 1
    assert dispatcher.removals == [(run_id, 2)]
    assert ctx.removals.record(RemovalResult(run_id, 0, "removed", removed=2))
    assert ctx.removals.record(RemovalResult(run_id, 1, "removed", removed=1))
    not_its_stage = sweep(ctx.lifecycle, _uploads(ctx), 900, now=time.time() + 60)
    assert not_its_stage.finished == []
    outcome = sweep(ctx.lifecycle, _removals(ctx), 900, now=time.time() + 60)
    assert outcome.finished == [run_id]
    run = ctx.runs.get(run_id)
    assert run.status is RunStatus.SUCCEEDED
    assert run.counts.removed == 3
    assert ctx.runs.active() == []


def test_a_stalled_removing_run_gets_its_missing_chunks_resent(ctx: Context) -> None:
    run_id = _removing(ctx, 5)  # chunks 0, 1, 2
    assert ctx.removals.record(RemovalResult(run_id, 1, "removed", removed=2))
    sent: list[tuple[str, int]] = []
    stages = _removals(ctx, lambda r, n: sent.append((r, n)))
    recent = sweep(ctx.lifecycle, stages, 900, now=time.time() + 60)
    assert recent.resent == {}  # progress is recent
    outcome = sweep(ctx.lifecycle, stages, 900, now=time.time() + 10_000)
    assert sent == [(run_id, 0), (run_id, 2)]
    assert outcome.resent == {run_id: [0, 2]}
    assert ctx.runs.status(run_id) is RunStatus.REMOVING


def test_a_removing_run_still_stalled_fails_its_missing_chunks(ctx: Context) -> None:
    run_id = _removing(ctx, 3)
    assert ctx.removals.record(RemovalResult(run_id, 0, "removed", removed=2))

    def fail(run: str, chunk: int, reason: str) -> None:
        emails = ctx.removals.chunk(run, chunk)
        assert emails is not None
        ctx.removals.record(RemovalResult(run, chunk, "lost", failed=len(emails)))

    _stall_through_every_resend(ctx, run_id, _removals(ctx, lambda *_: None))
    outcome = sweep(ctx.lifecycle, _removals(ctx, fail=fail), 900)
    assert outcome.failed == [run_id]
    run = ctx.runs.get(run_id)
    assert (run.counts.removed, run.counts.removal_failed) == (2, 1)
    assert run.status is RunStatus.PARTIALLY_SUCCEEDED


def test_a_run_at_the_brake_is_left_to_a_person(ctx: Context) -> None:
    run_id = _removing(ctx, 3, brake="over 20%")
    stages = {**_uploads(ctx), **_removals(ctx)}
    outcome = sweep(ctx.lifecycle, stages, 900, now=time.time() + 10_000)
    assert outcome == Sweep([], {}, [])
    assert ctx.runs.status(run_id) is RunStatus.AWAITING_APPROVAL
