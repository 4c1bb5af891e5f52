"""The producer's commands on the domain: start a run, resume it, approve or reject it.

``start_run`` reads a small CSV from ``tmp_path`` into stored batches and
hands them to the (recording) dispatcher; a run that cannot start is
refused (no record) or recorded ``failed`` with the reason and nothing
stored. ``resume_run`` resends only what did not succeed. ``approve`` and
``reject`` check the actor's role and leave an audit record.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from core import audit
from core.actors import Actor
from core.batch_store import BatchResult
from core.errors import ExportBusy, ExportError, NotFound
from core.store import Export
from klaviyo_client import AuthenticationError, KlaviyoList, NotFoundError
from producer.approval import approve, reject
from producer.resume import resume_run
from producer.runner import RunRequest, start_run
from schemas import keys
from schemas.contracts import BatchStatus, RunStatus
from schemas.keys import RunField
from tests.support.domain import (
    LIST_ID,
    ScriptedContext,
    add_connection,
    add_export,
    dispatched,
    klaviyo_error,
    running_run,
    scripted_context,
)

ADMIN = Actor("ann", "admin")
CONTRIBUTOR = Actor("carl", "contributor")
ROWS = ["a@x.co", "b@x.co", "not-an-email", "c@x.co"]  # batches of 2: [a, b], [c]


@pytest.fixture
def ctx() -> ScriptedContext:
    return scripted_context(KLAVIYO_EXPORT_BATCH_PROFILES="2")


@pytest.fixture
def export(ctx: ScriptedContext) -> Export:
    return add_export(ctx, add_connection(ctx))


@pytest.fixture
def segment(tmp_path: Path) -> str:
    path = tmp_path / "segment.csv"
    path.write_text("Email,Tier\n" + "".join(f"{email},gold\n" for email in ROWS))
    return str(path)


def _list_exists(ctx: ScriptedContext) -> None:
    ctx.fake.script("get_list", KlaviyoList(LIST_ID, "Newsletter"))


def _stored_batches(ctx: ScriptedContext) -> list[bytes]:
    return sorted(ctx.redis.scan_iter(match=keys.batch("*", 0)[: -len("0")] + "*"))


def _actions(ctx: ScriptedContext) -> list[tuple[str, str, str]]:
    """The audit log, oldest first: (user, action, target)."""
    return [(e["user"], e["action"], e["target"]) for e in reversed(audit.recent(ctx.redis))]


# -- start_run ---------------------------------------------------------------------------


def test_a_run_stores_its_batches_and_launches_them(
    ctx: ScriptedContext, export: Export, segment: str
) -> None:
    _list_exists(ctx)

    run_id = start_run(ctx, RunRequest(export.id, segment, ADMIN))

    assert ctx.fake.called("get_list") == [(LIST_ID,)]
    assert dispatched(ctx).uploads == [(run_id, [0, 1])]
    first, second = ctx.batches.load(run_id, 0), ctx.batches.load(run_id, 1)
    assert first is not None
    assert second is not None
    assert (first.rows, first.emails) == ([1, 2], ["a@x.co", "b@x.co"])
    assert (second.rows, second.emails) == ([4], ["c@x.co"])
    run = ctx.runs.get(run_id)
    assert run.status is RunStatus.RUNNING
    counts = run.counts
    assert (counts.rows_read, counts.rejected, counts.submitted) == (4, 1, 3)
    assert run.batches.total == 2
    assert [r["row"] for r in ctx.reports.rejected_rows(run_id)] == [3]
    assert ctx.locks.holder(export.id) == run_id
    assert _actions(ctx) == [("ann", "run.start", run_id)]


def test_a_disabled_export_is_refused_and_records_no_run(
    ctx: ScriptedContext, segment: str
) -> None:
    export = add_export(ctx, add_connection(ctx), enabled=False)

    with pytest.raises(ExportError, match="is disabled"):
        start_run(ctx, RunRequest(export.id, segment, ADMIN))

    assert ctx.runs.recent() == []
    assert ctx.fake.calls == []
    assert ctx.locks.holder(export.id) is None


def test_a_contributor_may_not_run_an_export_of_an_admins_only_connection(
    ctx: ScriptedContext, segment: str
) -> None:
    export = add_export(ctx, add_connection(ctx, allow="admins"))

    with pytest.raises(NotFound, match="no export"):  # hidden from contributors
        start_run(ctx, RunRequest(export.id, segment, CONTRIBUTOR))

    assert ctx.runs.recent() == []


def test_a_second_run_while_one_holds_the_lock_is_skipped_unrecorded(
    ctx: ScriptedContext, export: Export, segment: str
) -> None:
    ctx.locks.take(export.id, "r_running")

    with pytest.raises(ExportBusy, match="has run r_running in progress") as busy:
        start_run(ctx, RunRequest(export.id, segment, ADMIN))

    assert busy.value.holder == "r_running"
    assert ctx.runs.recent() == []
    assert ctx.runs.recent(export.id) == []
    assert ctx.locks.holder(export.id) == "r_running"
    assert ctx.fake.calls == []
    assert _actions(ctx) == []


def test_a_list_klaviyo_does_not_know_fails_the_run_and_stores_nothing(
    ctx: ScriptedContext, export: Export, segment: str
) -> None:
    ctx.fake.script("get_list", klaviyo_error(NotFoundError, 404, "not_found"))

    run_id = start_run(ctx, RunRequest(export.id, segment, ADMIN))

    run = ctx.runs.get(run_id)
    assert (run.status, run.message) == (
        RunStatus.FAILED,
        f"Klaviyo list {LIST_ID} does not exist (404)",
    )
    assert _stored_batches(ctx) == []
    assert dispatched(ctx).uploads == []
    assert ctx.locks.holder(export.id) is None


def test_a_refused_key_fails_the_run_before_reading(
    ctx: ScriptedContext, export: Export, segment: str
) -> None:
    ctx.fake.script("get_list", klaviyo_error(AuthenticationError, 401, "not_authenticated"))

    run_id = start_run(ctx, RunRequest(export.id, segment, ADMIN))

    run = ctx.runs.get(run_id)
    assert run.status is RunStatus.FAILED
    assert run.message.startswith("Klaviyo refused the connection's API key (401")
    assert run.counts.rows_read == 0
    assert dispatched(ctx).uploads == []


def test_a_source_that_breaks_midway_fails_the_run_and_drops_its_batches(
    ctx: ScriptedContext, export: Export, tmp_path: Path
) -> None:
    path = tmp_path / "broken.csv"
    good = "".join(f"p{n}@x.co,gold\n" for n in range(200)).encode()
    path.write_bytes(b"Email,Tier\n" + good + b"\xff\xfe,gold\n")
    _list_exists(ctx)

    run_id = start_run(ctx, RunRequest(export.id, str(path), ADMIN))

    run = ctx.runs.get(run_id)
    assert run.status is RunStatus.FAILED
    assert "is not valid UTF-8" in run.message
    assert "row 201 is not valid UTF-8" in run.message  # 100 batches were stored ...
    assert _stored_batches(ctx) == []  # ... and are gone: they hold emails
    assert dispatched(ctx).uploads == []


def test_a_run_over_the_cap_fails_with_every_row_failed(ctx: ScriptedContext, segment: str) -> None:
    export = add_export(ctx, add_connection(ctx), max_profiles=2)
    _list_exists(ctx)

    run_id = start_run(ctx, RunRequest(export.id, segment, ADMIN))

    run = ctx.runs.get(run_id)
    assert run.status is RunStatus.FAILED
    cap = f"over export {export.id}'s cap of 2"
    assert run.message == f"the segment has 3 profiles to send, {cap}: nothing was sent"
    assert (run.counts.submitted, run.counts.failed, run.counts.rejected) == (3, 3, 1)
    assert _stored_batches(ctx) == []
    assert dispatched(ctx).uploads == []
    assert ctx.locks.holder(export.id) is None


# -- resume_run --------------------------------------------------------------------------


def _partly_failed(ctx: ScriptedContext, export: Export) -> str:
    """A finished run: batch 0 succeeded, batch 1 failed, batch 2 partly."""
    run_id = running_run(ctx, export, [["a@x.co"], ["b@x.co"], ["c@x.co", "d@x.co"]])
    ctx.batches.record(BatchResult(run_id, 0, BatchStatus.SUCCEEDED, 1, 0, "J0"))
    ctx.batches.record(BatchResult(run_id, 1, BatchStatus.FAILED, 0, 1), [{"batch": 1}])
    ctx.batches.record(
        BatchResult(run_id, 2, BatchStatus.PARTIALLY_SUCCEEDED, 1, 1, "J2"), [{"batch": 2}]
    )
    assert ctx.lifecycle.finish(run_id).status is RunStatus.PARTIALLY_SUCCEEDED
    return run_id


def test_resume_resends_only_the_unfinished_batches(ctx: ScriptedContext, export: Export) -> None:
    run_id = _partly_failed(ctx, export)

    assert resume_run(ctx, ADMIN, run_id) == [1, 2]

    assert dispatched(ctx).uploads == [(run_id, [1, 2])]
    run = ctx.runs.get(run_id)
    assert (run.status, run.attempt) == (RunStatus.RUNNING, 2)
    assert (run.counts.imported, run.counts.failed, run.batches.done) == (1, 0, 1)
    assert ctx.reports.failed_rows(run_id) == []
    assert ctx.locks.holder(export.id) == run_id
    assert _actions(ctx) == [("ann", "run.resume", run_id)]


@pytest.mark.parametrize("status", [RunStatus.RUNNING, RunStatus.SUCCEEDED, RunStatus.CANCELLED])
def test_resume_refuses_a_run_that_is_not_resumable(
    ctx: ScriptedContext, export: Export, status: RunStatus
) -> None:
    run_id = _partly_failed(ctx, export)
    ctx.redis.hset(keys.run(run_id), RunField.STATUS, status.value)

    with pytest.raises(ExportError, match=f"is {status}: only failed, partially succeeded"):
        resume_run(ctx, ADMIN, run_id)

    assert dispatched(ctx).uploads == []
    assert ctx.runs.get(run_id).attempt == 1


def test_resume_refuses_a_run_that_sent_nothing(ctx: ScriptedContext, export: Export) -> None:
    run_id = running_run(ctx, export, [["a@x.co"]])
    ctx.lifecycle.end_unsent(run_id, 1, "over the cap")

    with pytest.raises(ExportError, match="start a new run instead"):
        resume_run(ctx, ADMIN, run_id)
    assert dispatched(ctx).uploads == []


def test_resume_refuses_batches_whose_rows_expired(ctx: ScriptedContext, export: Export) -> None:
    run_id = _partly_failed(ctx, export)
    ctx.redis.delete(keys.batch(run_id, 1))

    with pytest.raises(ExportError, match=r"batches \[1\] have expired"):
        resume_run(ctx, ADMIN, run_id)
    assert ctx.runs.status(run_id) is RunStatus.PARTIALLY_SUCCEEDED


def test_resume_waits_for_the_exports_run_in_progress(ctx: ScriptedContext, export: Export) -> None:
    run_id = _partly_failed(ctx, export)
    ctx.locks.take(export.id, "r_other")

    with pytest.raises(ExportBusy, match="resume it later"):
        resume_run(ctx, ADMIN, run_id)
    assert ctx.runs.status(run_id) is RunStatus.PARTIALLY_SUCCEEDED


def test_a_contributor_may_not_resume_on_an_admins_only_connection(
    ctx: ScriptedContext,
) -> None:
    export = add_export(ctx, add_connection(ctx, allow="admins"))
    run_id = _partly_failed(ctx, export)

    with pytest.raises(NotFound):  # hidden from contributors
        resume_run(ctx, CONTRIBUTOR, run_id)
    assert dispatched(ctx).uploads == []


# -- approve and reject ------------------------------------------------------------------


def _held(ctx: ScriptedContext, allow: str = "contributors") -> str:
    export = add_export(ctx, add_connection(ctx, allow=allow), mode="mirror")
    run_id = running_run(ctx, export, [["a@x.co"]])
    ctx.batches.record(BatchResult(run_id, 0, BatchStatus.SUCCEEDED, 1, 0, "J"))
    ctx.removals.store(run_id, ["g1@x.co", "g2@x.co"])
    ctx.runs.set_fields(run_id, **{RunField.BRAKE_REASON: "2 of 3 members would be removed"})
    assert ctx.lifecycle.after_adds(run_id) is RunStatus.AWAITING_APPROVAL
    return run_id


@pytest.mark.parametrize("actor", [ADMIN, CONTRIBUTOR])
def test_approve_sends_the_removals_and_is_audited(ctx: ScriptedContext, actor: Actor) -> None:
    run_id = _held(ctx)

    assert approve(ctx, actor, run_id) == 2

    assert ctx.runs.status(run_id) is RunStatus.REMOVING
    assert dispatched(ctx).removals == [(run_id, 1)]
    (entry,) = audit.recent(ctx.redis)
    assert (entry["user"], entry["action"], entry["target"]) == (actor.user, "run.approve", run_id)
    assert entry["detail"] == {"to_remove": 2}


def test_reject_removes_nothing_and_is_audited(ctx: ScriptedContext) -> None:
    run_id = _held(ctx)

    run = reject(ctx, ADMIN, run_id)

    assert run.status is RunStatus.REJECTED
    assert dispatched(ctx).removals == []
    assert _actions(ctx) == [("ann", "run.reject", run_id)]


@pytest.mark.parametrize("decide", [approve, reject])
def test_a_contributor_may_not_decide_on_an_admins_only_connection(
    ctx: ScriptedContext, decide: object
) -> None:
    run_id = _held(ctx, allow="admins")

    with pytest.raises(NotFound, match="no run"):  # hidden from contributors
        decide(ctx, CONTRIBUTOR, run_id)  # type: ignore[operator]

    assert ctx.runs.status(run_id) is RunStatus.AWAITING_APPROVAL
    assert dispatched(ctx).removals == []
    assert _actions(ctx) == []


def test_a_run_not_held_cannot_be_approved(ctx: ScriptedContext, export: Export) -> None:
    run_id = running_run(ctx, export, [["a@x.co"]])

    with pytest.raises(ExportError, match="not awaiting approval"):
        approve(ctx, ADMIN, run_id)
    assert _actions(ctx) == []
