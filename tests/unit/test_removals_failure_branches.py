"""Every way ``worker.removals.remove_members`` ends a chunk of a mirror run's removals.

A chunk counts once (``removed`` or ``removal_failed``), whatever its
outcome; only members Klaviyo really took out of the list leave the
export's state, so a failed chunk is tried again by the next mirror run.
"""

from __future__ import annotations

import pytest

from core.errors import RetryLater
from core.policy import MAX_TRANSIENT_ATTEMPTS
from core.removal_store import RemovalResult
from core.state import ExportState
from klaviyo_client import (
    BadRequestError,
    FatalError,
    Operation,
    PermissionDeniedError,
    Profile,
    RetriableError,
    ThrottledError,
)
from tests.support.domain import (
    LIST_ID,
    ScriptedContext,
    add_connection,
    add_export,
    klaviyo_error,
    running_run,
    scripted_context,
)
from worker.removals import remove_members

LEAVING = ["gone1@x.co", "gone2@x.co", "gone3@x.co"]  # chunks of 2: [gone1, gone2], [gone3]
STAYING = "kept@x.co"


@pytest.fixture
def ctx() -> ScriptedContext:
    return scripted_context()


@pytest.fixture
def run_id(ctx: ScriptedContext) -> str:
    """A mirror run whose adds are done: three members left the segment."""
    export = add_export(ctx, add_connection(ctx), mode="mirror")
    ExportState(ctx.redis, export.id).record([*LEAVING, STAYING], ["d1", "d2", "d3", "d4"])
    run_id = running_run(ctx, export, [[STAYING]])
    assert ctx.removals.store(run_id, LEAVING, chunk_size=2) == 3
    return run_id


def _members(ctx: ScriptedContext, run_id: str) -> set[str]:
    return set(ExportState(ctx.redis, ctx.runs.export_id(run_id)).emails())


def _counts(ctx: ScriptedContext, run_id: str) -> tuple[int, int]:
    counts = ctx.runs.get(run_id).counts
    return counts.removed, counts.removal_failed


def _failed(ctx: ScriptedContext, run_id: str, result: RemovalResult, outcome: str) -> None:
    """Nothing of chunk 0 was removed: it counts failed, and its members stay known."""
    assert result == RemovalResult(run_id, 0, outcome, 0, 2)
    assert _counts(ctx, run_id) == (0, 2)
    assert ctx.removals.chunk(run_id, 0) is None  # recorded: a redelivery does nothing
    assert _members(ctx, run_id) == {*LEAVING, STAYING}
    assert ctx.fake.called("remove_profiles_from_list") == []


def test_a_chunk_is_removed_and_its_members_forgotten(ctx: ScriptedContext, run_id: str) -> None:
    # Klaviyo no longer knows gone2: it is out of the list already, and counts removed.
    ctx.fake.script("iter_profiles_by_email", [Profile("P1", "gone1@x.co")])
    ctx.fake.script("remove_profiles_from_list", None)

    result = remove_members(ctx, run_id, 0)

    assert result == RemovalResult(run_id, 0, "removed", 2, 0)
    assert ctx.fake.called("iter_profiles_by_email") == [(["gone1@x.co", "gone2@x.co"],)]
    assert ctx.fake.called("remove_profiles_from_list") == [(LIST_ID, ["P1"])]
    assert _counts(ctx, run_id) == (2, 0)
    assert _members(ctx, run_id) == {"gone3@x.co", STAYING}  # chunk 1 not yet sent
    assert ctx.removals.missing(run_id) == [1]


def test_a_chunk_whose_members_klaviyo_does_not_know_sends_no_delete(
    ctx: ScriptedContext, run_id: str
) -> None:
    ctx.fake.script("iter_profiles_by_email", [])

    assert remove_members(ctx, run_id, 1) == RemovalResult(run_id, 1, "removed", 1, 0)
    assert ctx.fake.called("remove_profiles_from_list") == []
    assert _members(ctx, run_id) == {"gone1@x.co", "gone2@x.co", STAYING}


def test_a_second_delivery_is_done_and_counts_once(ctx: ScriptedContext, run_id: str) -> None:
    ctx.fake.script("iter_profiles_by_email", [Profile("P1", "gone1@x.co")])
    ctx.fake.script("remove_profiles_from_list", None)
    remove_members(ctx, run_id, 0)
    calls = len(ctx.fake.calls)

    assert remove_members(ctx, run_id, 0) == RemovalResult(run_id, 0, "done")
    assert len(ctx.fake.calls) == calls
    assert _counts(ctx, run_id) == (2, 0)


@pytest.mark.parametrize("cancel", [False, True])
def test_a_chunk_of_an_aborted_run_is_not_sent(
    ctx: ScriptedContext, run_id: str, cancel: bool
) -> None:
    ctx.lifecycle.abort(run_id, "the export was removed", cancel=cancel)

    _failed(ctx, run_id, remove_members(ctx, run_id, 0), "not_sent")
    assert ctx.fake.calls == []


def test_a_removed_connection_fails_the_chunk_connection_removed(
    ctx: ScriptedContext, run_id: str
) -> None:
    connection_id, _ = ctx.runs.target(run_id)
    ctx.store.remove_connection(connection_id)

    _failed(ctx, run_id, remove_members(ctx, run_id, 0), "connection_removed")
    assert ctx.fake.calls == []


def test_transient_faults_are_retried_then_fail_the_chunk_transient(
    ctx: ScriptedContext, run_id: str
) -> None:
    fault = RetriableError("connection reset", status=None, operation=Operation.GET_PROFILES)
    ctx.fake.script("iter_profiles_by_email", *[fault] * MAX_TRANSIENT_ATTEMPTS)

    for attempt in range(1, MAX_TRANSIENT_ATTEMPTS):
        with pytest.raises(RetryLater) as wait:
            remove_members(ctx, run_id, 0)
        assert wait.value.reason == f"transient: {fault}"
        assert ctx.runs.removal_attempts(run_id, 0) == attempt
        assert _counts(ctx, run_id) == (0, 0)
    result = remove_members(ctx, run_id, 0)

    assert len(ctx.fake.called("iter_profiles_by_email")) == MAX_TRANSIENT_ATTEMPTS
    _failed(ctx, run_id, result, "transient")


def test_a_transient_fault_on_the_delete_is_retried_too(ctx: ScriptedContext, run_id: str) -> None:
    ctx.fake.script("iter_profiles_by_email", [Profile("P1", "gone1@x.co")])
    ctx.fake.script("remove_profiles_from_list", RetriableError("503", status=503))

    with pytest.raises(RetryLater):
        remove_members(ctx, run_id, 0)

    assert ctx.removals.chunk(run_id, 0) == ["gone1@x.co", "gone2@x.co"]  # kept for the retry
    assert _members(ctx, run_id) == {*LEAVING, STAYING}


def test_throttling_hands_back_for_the_retry_after_and_counts_no_attempt(
    ctx: ScriptedContext, run_id: str
) -> None:
    throttled = ThrottledError("slow down", retry_after=4.0, operation=Operation.GET_PROFILES)
    ctx.fake.script("iter_profiles_by_email", throttled)

    with pytest.raises(RetryLater) as wait:
        remove_members(ctx, run_id, 0)

    assert 4.0 <= wait.value.countdown <= 4.5
    assert ctx.runs.removal_attempts(run_id, 0) == 0
    assert _counts(ctx, run_id) == (0, 0)


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (klaviyo_error(BadRequestError, 400, "invalid"), "invalid"),
        (klaviyo_error(PermissionDeniedError, 403, "permission_denied"), "permission_denied"),
        (klaviyo_error(FatalError, 409, None), "rejected"),
    ],
)
def test_a_fatal_error_fails_the_chunk_with_klaviyos_code(
    ctx: ScriptedContext, run_id: str, error: FatalError, outcome: str
) -> None:
    ctx.fake.script("iter_profiles_by_email", [Profile("P1", "gone1@x.co")])
    ctx.fake.script("remove_profiles_from_list", error)

    result = remove_members(ctx, run_id, 0)

    assert result == RemovalResult(run_id, 0, outcome, 0, 2)
    assert _counts(ctx, run_id) == (0, 2)
    assert _members(ctx, run_id) == {*LEAVING, STAYING}
    assert ctx.runs.abort_reason(run_id) is None  # the other chunks go on
