"""``core.lifecycle``: every transition of its diagram, and the ones it refuses.

    pending -> running -> final
                 +-> awaiting_approval -> removing | rejected
                 +-> removing -> final
    final -> running (resume: attempt + 1);  not final -> cancelled

The dispatcher is a recording one: a transition that sends parts to the
workers shows up in it, one that must not send shows nothing.
"""

from __future__ import annotations

from typing import Any

import pytest

from core.batch_store import BatchResult
from core.errors import ExportError
from core.lifecycle import RESUMABLE, derive
from core.removal_store import RemovalResult
from core.run_record import BatchCounts, Counts, Run
from core.store import Export
from schemas import keys
from schemas.contracts import FINAL_RUN_STATUSES, BatchStatus, RunStatus
from schemas.keys import RunField
from tests.support.domain import (
    LIST_ID,
    ScriptedContext,
    add_connection,
    add_export,
    dispatched,
    running_run,
    scripted_context,
)


@pytest.fixture
def ctx() -> ScriptedContext:
    return scripted_context()


@pytest.fixture
def export(ctx: ScriptedContext) -> Export:
    return add_export(ctx, add_connection(ctx), mode="mirror")


def _succeed(ctx: ScriptedContext, run_id: str, batch: int, imported: int = 1) -> None:
    ctx.batches.record(BatchResult(run_id, batch, BatchStatus.SUCCEEDED, imported, 0, "J"))


def _fail(ctx: ScriptedContext, run_id: str, batch: int, failed: int = 1) -> None:
    row = {"batch": batch, "row": 2, "email": "x@x.co", "code": "c", "detail": "d", "field": None}
    ctx.batches.record(BatchResult(run_id, batch, BatchStatus.FAILED, 0, failed), [row])


def _removing(ctx: ScriptedContext, export: Export, brake: str | None = None) -> str:
    """A mirror run whose one add succeeded and that has three members to remove."""
    run_id = running_run(ctx, export, [["a@x.co"]])
    _succeed(ctx, run_id, 0)
    ctx.removals.store(run_id, ["g1@x.co", "g2@x.co", "g3@x.co"], chunk_size=2)
    if brake is not None:
        ctx.runs.set_fields(run_id, **{RunField.BRAKE_REASON: brake})
    return run_id


# -- start and adds --------------------------------------------------------------------


def test_create_records_a_pending_run_with_its_target(ctx: ScriptedContext, export: Export) -> None:
    run_id = ctx.lifecycle.create(export.id, "seg.csv", "ann", export.connection_id, LIST_ID)

    run = ctx.runs.get(run_id)
    assert (run.status, run.attempt, run.started_at) == (RunStatus.PENDING, 1, None)
    assert ctx.runs.target(run_id) == (export.connection_id, LIST_ID)
    assert ctx.runs.active() == []


def test_begin_upload_makes_a_pending_run_running_and_active(
    ctx: ScriptedContext, export: Export
) -> None:
    run_id = ctx.lifecycle.create(export.id, "seg.csv", "ann", export.connection_id, LIST_ID)

    assert ctx.lifecycle.begin_upload(run_id, rows_read=5, submitted=4, batches=2, unchanged=1)

    run = ctx.runs.get(run_id)
    assert run.status is RunStatus.RUNNING
    assert (run.counts.rows_read, run.counts.submitted, run.counts.unchanged) == (5, 4, 1)
    assert run.batches.total == 2
    assert run.started_at is not None
    assert run.attempt_started_at == run.started_at
    assert ctx.runs.active() == [run_id]


def test_begin_upload_refuses_a_run_already_ended(ctx: ScriptedContext, export: Export) -> None:
    run_id = ctx.lifecycle.create(export.id, "seg.csv", "ann", export.connection_id, LIST_ID)
    ctx.lifecycle.fail(run_id, "the producer stopped reading")

    assert not ctx.lifecycle.begin_upload(run_id, rows_read=1, submitted=1, batches=1)

    run = ctx.runs.get(run_id)
    assert (run.status, run.message) == (RunStatus.FAILED, "the producer stopped reading")
    assert ctx.runs.active() == []


def test_launch_sends_every_batch(ctx: ScriptedContext, export: Export) -> None:
    run_id = running_run(ctx, export, [["a@x.co"], ["b@x.co"]])

    assert ctx.lifecycle.launch(run_id, 2) is RunStatus.RUNNING
    assert dispatched(ctx).uploads == [(run_id, [0, 1])]


def test_launch_with_no_batch_goes_straight_to_the_end(
    ctx: ScriptedContext, export: Export
) -> None:
    run_id = ctx.lifecycle.create(export.id, "seg.csv", "ann", export.connection_id, LIST_ID)
    ctx.locks.take(export.id, run_id)
    ctx.lifecycle.begin_upload(run_id, rows_read=3, submitted=0, batches=0, unchanged=3)

    assert ctx.lifecycle.launch(run_id, 0) is RunStatus.SUCCEEDED
    assert dispatched(ctx).uploads == []
    assert ctx.locks.holder(export.id) is None


def test_after_adds_without_removals_finishes_and_frees_the_export(
    ctx: ScriptedContext, export: Export
) -> None:
    run_id = running_run(ctx, export, [["a@x.co"], ["b@x.co"]])
    _succeed(ctx, run_id, 0)
    _fail(ctx, run_id, 1)

    assert ctx.lifecycle.after_adds(run_id) is RunStatus.PARTIALLY_SUCCEEDED

    run = ctx.runs.get(run_id)
    assert run.message == "Klaviyo failed 1 of 2 profiles"
    assert run.finished_at is not None
    assert ctx.runs.active() == []
    assert ctx.locks.holder(export.id) is None
    assert ctx.redis.ttl(keys.run_failed(run_id)) > 0  # the report is kept, for a while
    assert dispatched(ctx).removals == []


# -- a mirror run's removals -----------------------------------------------------------


def test_under_the_brake_the_removals_start_at_once(ctx: ScriptedContext, export: Export) -> None:
    run_id = _removing(ctx, export)

    assert ctx.lifecycle.after_adds(run_id) is RunStatus.REMOVING
    assert dispatched(ctx).removals == [(run_id, 2)]

    for chunk, size in ((0, 2), (1, 1)):
        ctx.removals.record(RemovalResult(run_id, chunk, "removed", size, 0))
    finished = ctx.lifecycle.finish(run_id)
    assert finished.status is RunStatus.SUCCEEDED
    assert (finished.counts.removed, finished.counts.to_remove) == (3, 3)


def test_over_the_brake_the_run_waits_for_approval(ctx: ScriptedContext, export: Export) -> None:
    run_id = _removing(ctx, export, brake="3 of 4 members would be removed")

    assert ctx.lifecycle.after_adds(run_id) is RunStatus.AWAITING_APPROVAL

    run = ctx.lifecycle.held(run_id)
    assert (run.status, run.message) == (
        RunStatus.AWAITING_APPROVAL,
        "3 of 4 members would be removed",
    )
    assert dispatched(ctx).removals == []
    assert ctx.locks.holder(export.id) == run_id  # the export stays busy while it waits


def test_approve_starts_the_held_removals(ctx: ScriptedContext, export: Export) -> None:
    run_id = _removing(ctx, export, brake="over the brake")
    ctx.lifecycle.after_adds(run_id)

    assert ctx.lifecycle.approve(run_id, "ann") == 3

    run = ctx.runs.get(run_id)
    assert (run.status, run.message) == (RunStatus.REMOVING, "removals approved by ann")
    assert dispatched(ctx).removals == [(run_id, 2)]


def test_reject_ends_the_run_rejected_and_removes_nothing(
    ctx: ScriptedContext, export: Export
) -> None:
    run_id = _removing(ctx, export, brake="over the brake")
    ctx.lifecycle.after_adds(run_id)

    run = ctx.lifecycle.reject(run_id, "ann")

    assert run.status is RunStatus.REJECTED
    assert run.message.startswith("removals rejected by ann: the list keeps all 3 members")
    assert ctx.removals.chunk(run_id, 0) is None  # the emails are forgotten
    assert dispatched(ctx).removals == []
    assert ctx.locks.holder(export.id) is None


def test_only_a_held_run_is_approved_or_rejected(ctx: ScriptedContext, export: Export) -> None:
    run_id = _removing(ctx, export)

    with pytest.raises(ExportError, match="is running, not awaiting approval"):
        ctx.lifecycle.approve(run_id, "ann")
    with pytest.raises(ExportError, match="not awaiting approval"):
        ctx.lifecycle.reject(run_id, "ann")
    assert ctx.runs.status(run_id) is RunStatus.RUNNING
    assert dispatched(ctx).removals == []


@pytest.mark.parametrize(
    ("start", "stage"),
    [
        (RunStatus.PENDING, RunStatus.REMOVING),
        (RunStatus.REMOVING, RunStatus.AWAITING_APPROVAL),
        (RunStatus.SUCCEEDED, RunStatus.REMOVING),
        (RunStatus.REJECTED, RunStatus.AWAITING_APPROVAL),
    ],
)
def test_a_stage_is_not_entered_from_the_wrong_status(
    ctx: ScriptedContext, export: Export, start: RunStatus, stage: RunStatus
) -> None:
    run_id = ctx.lifecycle.create(export.id, "seg.csv", "ann", export.connection_id, LIST_ID)
    ctx.redis.hset(keys.run(run_id), RunField.STATUS, start.value)

    with pytest.raises(ExportError, match=f"is {start}: it cannot become {stage}"):
        ctx.lifecycle._move(run_id, stage)
    assert ctx.runs.status(run_id) is start


def test_an_aborted_mirror_run_ends_without_removing(ctx: ScriptedContext, export: Export) -> None:
    run_id = _removing(ctx, export)
    ctx.lifecycle.abort(run_id, "the list is gone")

    assert ctx.lifecycle.after_adds(run_id) is RunStatus.FAILED
    assert dispatched(ctx).removals == []


# -- ending: cancel, finish ------------------------------------------------------------


def test_a_cancelled_run_ends_cancelled_at_finish(ctx: ScriptedContext, export: Export) -> None:
    run_id = running_run(ctx, export, [["a@x.co"]])
    ctx.lifecycle.abort(run_id, "the export was removed", cancel=True)
    ctx.lifecycle.abort(run_id, "a later reason")  # the first reason wins

    assert ctx.runs.status(run_id) is RunStatus.RUNNING  # until its next step
    run = ctx.lifecycle.finish(run_id)
    assert (run.status, run.message) == (RunStatus.CANCELLED, "the export was removed")


def test_cancel_unfinished_cancels_only_the_runs_not_final(
    ctx: ScriptedContext, export: Export
) -> None:
    done = running_run(ctx, export, [["a@x.co"]])
    ctx.lifecycle.finish(done, RunStatus.SUCCEEDED)
    busy = running_run(ctx, export, [["a@x.co"]])

    assert ctx.lifecycle.cancel_unfinished(export.id, "the export was removed") == [busy]
    assert ctx.runs.is_cancelled(busy)
    assert not ctx.runs.is_cancelled(done)


def test_finish_is_idempotent_on_a_final_run(ctx: ScriptedContext, export: Export) -> None:
    run_id = running_run(ctx, export, [["a@x.co"]])
    first = ctx.lifecycle.finish(run_id, RunStatus.FAILED, "first")

    again = ctx.lifecycle.finish(run_id, RunStatus.SUCCEEDED, "second")
    _succeed(ctx, run_id, 0)
    derived = ctx.lifecycle.finish(run_id)

    assert again == first
    assert (derived.status, derived.message) == (RunStatus.FAILED, "first")
    assert derived.finished_at == first.finished_at


def test_fail_before_sending_drops_the_stored_rows(ctx: ScriptedContext, export: Export) -> None:
    run_id = running_run(ctx, export, [["a@x.co"], ["b@x.co"]])

    run = ctx.lifecycle.fail_before_sending(run_id, "Klaviyo list L1 does not exist (404)")

    assert (run.status, run.message) == (RunStatus.FAILED, "Klaviyo list L1 does not exist (404)")
    assert not ctx.batches.has_payload(run_id, 0)
    assert not ctx.batches.has_payload(run_id, 1)


def test_end_unsent_counts_every_row_failed(ctx: ScriptedContext, export: Export) -> None:
    over = running_run(ctx, export, [["a@x.co", "b@x.co"]])
    run = ctx.lifecycle.end_unsent(over, 2, "over the cap: nothing was sent")
    assert (run.status, run.message, run.counts.failed) == (
        RunStatus.FAILED,
        "over the cap: nothing was sent",
        2,
    )
    assert not ctx.batches.has_payload(over, 0)

    removed = running_run(ctx, export, [["a@x.co"]])
    ctx.lifecycle.abort(removed, "the export was removed", cancel=True)
    run = ctx.lifecycle.end_unsent(removed, 1)
    assert (run.status, run.counts.failed) == (RunStatus.CANCELLED, 1)


# -- resume ----------------------------------------------------------------------------


def test_reopen_makes_a_final_run_running_as_attempt_2(
    ctx: ScriptedContext, export: Export
) -> None:
    run_id = running_run(ctx, export, [["a@x.co"], ["b@x.co"]])
    _succeed(ctx, run_id, 0)
    _fail(ctx, run_id, 1)
    ctx.lifecycle.abort(run_id, "Klaviyo refused the key")
    first = ctx.lifecycle.finish(run_id)
    assert first.status in RESUMABLE

    ctx.lifecycle.reopen(run_id, [1])

    run = ctx.runs.get(run_id)
    assert (run.status, run.attempt, run.message) == (RunStatus.RUNNING, 2, "")
    assert run.finished_at is None
    assert run.attempt_started_at is not None
    assert run.attempt_started_at > first.created_at
    assert (run.counts.imported, run.counts.failed, run.batches.done) == (1, 0, 1)
    assert ctx.runs.abort_reason(run_id) is None
    assert ctx.reports.failed_rows(run_id) == []
    assert ctx.runs.active() == [run_id]

    _succeed(ctx, run_id, 1)
    assert ctx.lifecycle.finish(run_id).status is RunStatus.SUCCEEDED


def test_a_resumed_mirror_run_does_not_decide_its_removals_again(
    ctx: ScriptedContext, export: Export
) -> None:
    run_id = _removing(ctx, export, brake="over the brake")
    ctx.lifecycle.after_adds(run_id)
    ctx.lifecycle.reject(run_id, "ann")
    ctx.lifecycle.reopen(run_id, [0])
    _succeed(ctx, run_id, 0)

    assert ctx.lifecycle.removals_decided(run_id)
    assert ctx.lifecycle.after_adds(run_id) is RunStatus.REJECTED
    assert dispatched(ctx).removals == []


# -- derive ----------------------------------------------------------------------------


def _run(**counts: Any) -> Run:
    return Run(
        run_id="r_1", export_id="e_1", status=RunStatus.RUNNING, message="", created_at=0.0,
        started_at=None, finished_at=None, attempt_started_at=None, attempt=1,
        counts=Counts(**counts), batches=BatchCounts(),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("counts", "flags", "status", "message"),
    [
        ({"submitted": 3, "imported": 3}, {RunField.CANCELLED: "1", RunField.ABORT_REASON: "gone"},
         RunStatus.CANCELLED, "gone"),
        ({"submitted": 3}, {RunField.CANCELLED: "1"}, RunStatus.CANCELLED, "cancelled"),
        ({"submitted": 3, "imported": 3}, {RunField.ABORT_REASON: "list gone"},
         RunStatus.FAILED, "list gone"),
        ({"submitted": 3, "imported": 2, "failed": 1, "to_remove": 5},
         {RunField.REMOVALS_REJECTED: "ann"}, RunStatus.REJECTED,
         "removals rejected by ann: the list keeps all 5 members; adds done "
         "(2 imported, 1 failed at Klaviyo)"),
        ({"rows_read": 0}, {}, RunStatus.SUCCEEDED, "the segment is empty"),
        ({"rows_read": 2, "rejected": 2}, {}, RunStatus.FAILED,
         "no row passed the checks: see `klaviyo-export rejected`"),
        ({"rows_read": 0, "to_remove": 2, "removed": 2}, {}, RunStatus.SUCCEEDED,
         "removed 2 members that left the segment"),
        ({"submitted": 3, "imported": 3, "to_remove": 4, "removed": 3, "removal_failed": 1}, {},
         RunStatus.PARTIALLY_SUCCEEDED, "1 of 4 removals from the list failed"),
        ({"submitted": 3, "failed": 3}, {}, RunStatus.FAILED,
         "Klaviyo imported no profile: see `klaviyo-export rejected`"),
        ({"submitted": 3, "imported": 2, "failed": 1}, {}, RunStatus.PARTIALLY_SUCCEEDED,
         "Klaviyo failed 1 of 3 profiles"),
        ({"submitted": 3, "imported": 3}, {}, RunStatus.SUCCEEDED, ""),
        ({"rows_read": 3, "unchanged": 3}, {}, RunStatus.SUCCEEDED, ""),  # a delta run, no news
    ],
)  # fmt: skip
def test_derive_names_the_final_status_and_why(
    counts: dict[str, int], flags: dict[str, str], status: RunStatus, message: str
) -> None:
    derived = derive(_run(**counts), flags)
    assert derived == (status, message)
    assert derived[0] in FINAL_RUN_STATUSES
