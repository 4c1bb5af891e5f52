"""Every way ``worker.upload.upload_batch`` ends a batch, and the waits it hands back.

Each outcome is checked where a user meets it: the ``BatchResult`` the chord
callback gets, the run's counts, and the failed rows ``rejected RUN_ID``
lists (every row of a batch that failed whole, with the reason). No Celery,
no HTTP: fakeredis, a recording dispatcher and a scripted Klaviyo
(``tests.support.domain``).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from core.batch_store import BatchResult
from core.errors import RetryLater
from core.policy import MAX_TRANSIENT_ATTEMPTS
from core.state import ExportState
from klaviyo_client import (
    AuthenticationError,
    BadRequestError,
    ImportErrorItem,
    NotFoundError,
    Operation,
    PermissionDeniedError,
    RetriableError,
    ThrottledError,
)
from schemas import keys
from schemas.contracts import BatchStatus, RunStatus
from tests.support.domain import (
    API_KEY,
    LIST_ID,
    ScriptedContext,
    add_connection,
    add_export,
    job,
    klaviyo_error,
    running_run,
    scripted_context,
)
from worker.upload import JOB_DEADLINE_SECONDS, upload_batch

EMAILS = ["a@x.co", "b@x.co", "c@x.co"]
ROWS = [1, 2, 3]


@pytest.fixture
def ctx() -> ScriptedContext:
    return scripted_context()


@pytest.fixture
def run_id(ctx: ScriptedContext) -> str:
    export = add_export(ctx, add_connection(ctx))
    return running_run(ctx, export, [EMAILS])


def _submitted(ctx: ScriptedContext, run_id: str, job_id: str = "J1") -> None:
    """The first delivery: the job is created, and the task hands back to poll it."""
    ctx.fake.script("create_bulk_import_job", job(job_id, "queued", completed=0))
    with pytest.raises(RetryLater) as wait:
        upload_batch(ctx, run_id, 0)
    assert wait.value.polling
    assert ctx.batches.state(run_id, 0)["job_id"] == job_id


def _failed_whole(
    ctx: ScriptedContext, run_id: str, result: BatchResult, code: str, detail: str
) -> None:
    """The batch failed whole: result, counts and one failed row per row, all with the reason."""
    assert (result.imported, result.failed, result.error) == (0, 3, detail)
    run = ctx.runs.get(run_id)
    assert (run.counts.imported, run.counts.failed, run.batches.done) == (0, 3, 1)
    assert ctx.reports.failed_rows(run_id) == [
        {"batch": 0, "row": row, "email": email, "code": code, "detail": detail, "field": None}
        for row, email in zip(ROWS, EMAILS, strict=True)
    ]
    assert ctx.batches.result(run_id, 0) == result


def _nothing_recorded(ctx: ScriptedContext, run_id: str) -> None:
    run = ctx.runs.get(run_id)
    assert (run.counts.imported, run.counts.failed, run.batches.done) == (0, 0, 0)
    assert ctx.batches.result(run_id, 0) is None
    assert ctx.reports.failed_rows(run_id) == []


# -- Klaviyo's job ends badly ----------------------------------------------------------


def test_a_job_klaviyo_no_longer_knows_fails_the_batch_job_not_found(
    ctx: ScriptedContext, run_id: str
) -> None:
    _submitted(ctx, run_id)
    ctx.fake.script("get_bulk_import_job", klaviyo_error(NotFoundError, 404, "not_found"))

    result = upload_batch(ctx, run_id, 0)

    assert result.status is BatchStatus.FAILED
    _failed_whole(ctx, run_id, result, "job_not_found", "Klaviyo job J1 not found")
    assert ctx.runs.abort_reason(run_id) is None  # the run's other batches go on


def test_a_job_not_done_by_the_deadline_fails_the_batch_job_timeout(
    ctx: ScriptedContext, run_id: str
) -> None:
    _submitted(ctx, run_id)
    ctx.fake.script("get_bulk_import_job", job("J1", "processing", completed=1))
    with pytest.raises(RetryLater) as wait:  # within the deadline: poll again
        upload_batch(ctx, run_id, 0)
    assert wait.value.polling
    assert ctx.batches.in_flight(run_id) == 1
    _nothing_recorded(ctx, run_id)

    late = time.time() - JOB_DEADLINE_SECONDS - 1
    ctx.batches.set_state(run_id, 0, submitted_at=repr(late))
    ctx.fake.script("get_bulk_import_job", job("J1", "processing", completed=1))
    result = upload_batch(ctx, run_id, 0)

    assert result.status is BatchStatus.FAILED
    _failed_whole(ctx, run_id, result, "job_timeout", "Klaviyo job J1 did not complete in time")


def test_a_job_klaviyo_cancelled_fails_the_batch_job_cancelled(
    ctx: ScriptedContext, run_id: str
) -> None:
    _submitted(ctx, run_id)
    ctx.fake.script("get_bulk_import_job", job("J1", "cancelled", completed=0))

    result = upload_batch(ctx, run_id, 0)

    assert result.status is BatchStatus.FAILED
    _failed_whole(ctx, run_id, result, "job_cancelled", "Klaviyo cancelled job J1")


def test_a_connection_removed_after_submission_cancels_with_outcome_unknown(
    ctx: ScriptedContext, run_id: str
) -> None:
    _submitted(ctx, run_id)
    connection_id, _ = ctx.runs.target(run_id)
    ctx.store.remove_connection(connection_id)

    result = upload_batch(ctx, run_id, 0)

    assert result.status is BatchStatus.CANCELLED
    detail = "the connection was removed while Klaviyo imported this batch: outcome unknown"
    _failed_whole(ctx, run_id, result, "outcome_unknown", detail)
    assert ctx.runs.get(run_id).batches.cancelled == 1
    assert ctx.runs.is_cancelled(run_id)
    assert ctx.lifecycle.finish(run_id).status is RunStatus.CANCELLED
    assert ctx.fake.called("get_bulk_import_job") == []  # nobody left to ask


# -- not sent --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cancel", "status"), [(False, BatchStatus.FAILED), (True, BatchStatus.CANCELLED)]
)
def test_a_batch_of_an_aborted_run_is_not_sent(
    ctx: ScriptedContext, run_id: str, cancel: bool, status: BatchStatus
) -> None:
    ctx.lifecycle.abort(run_id, "the list is gone", cancel=cancel)

    result = upload_batch(ctx, run_id, 0)

    assert result.status is status
    _failed_whole(ctx, run_id, result, "not_sent", "not sent: the list is gone")
    assert ctx.fake.calls == []


def test_a_connection_removed_before_sending_cancels_the_run_not_sent(
    ctx: ScriptedContext, run_id: str
) -> None:
    connection_id, _ = ctx.runs.target(run_id)
    ctx.store.remove_connection(connection_id)

    result = upload_batch(ctx, run_id, 0)

    assert result.status is BatchStatus.CANCELLED
    _failed_whole(ctx, run_id, result, "not_sent", "not sent: the connection was removed")
    assert ctx.runs.is_cancelled(run_id)
    assert ctx.fake.calls == []


def test_a_batch_klaviyo_took_is_followed_to_its_end_after_an_abort(
    ctx: ScriptedContext, run_id: str
) -> None:
    _submitted(ctx, run_id)
    ctx.lifecycle.abort(run_id, "another batch found the list gone")
    ctx.fake.script("get_bulk_import_job", job("J1"))

    result = upload_batch(ctx, run_id, 0)

    assert (result.status, result.imported, result.failed) == (BatchStatus.SUCCEEDED, 3, 0)
    assert ctx.runs.get(run_id).counts.imported == 3
    assert ctx.reports.failed_rows(run_id) == []


# -- Klaviyo refuses the request -------------------------------------------------------


def test_a_list_that_does_not_exist_aborts_the_run_list_not_found(
    ctx: ScriptedContext, run_id: str
) -> None:
    ctx.fake.script("create_bulk_import_job", klaviyo_error(NotFoundError, 404, "not_found"))

    result = upload_batch(ctx, run_id, 0)

    assert result.status is BatchStatus.FAILED
    message = f"Klaviyo list {LIST_ID} does not exist (404)"
    _failed_whole(ctx, run_id, result, "list_not_found", message)
    assert ctx.runs.abort_reason(run_id) == message
    finished = ctx.lifecycle.finish(run_id)
    assert (finished.status, finished.message) == (RunStatus.FAILED, message)


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        (AuthenticationError, 401, "not_authenticated"),
        (PermissionDeniedError, 403, "permission_denied"),
    ],
)
def test_a_refused_key_aborts_the_run(
    ctx: ScriptedContext,
    run_id: str,
    kind: type[AuthenticationError | PermissionDeniedError],
    status: int,
    code: str,
) -> None:
    ctx.fake.script("create_bulk_import_job", klaviyo_error(kind, status, code, "bad key"))

    result = upload_batch(ctx, run_id, 0)

    message = f"Klaviyo refused the connection's API key ({status} {code}): bad key"
    assert result.status is BatchStatus.FAILED
    _failed_whole(ctx, run_id, result, code, message)
    assert ctx.runs.abort_reason(run_id) == message
    assert API_KEY not in str(ctx.runs.raw(run_id))


def test_a_refused_key_without_an_error_code_is_recorded_as_auth(
    ctx: ScriptedContext, run_id: str
) -> None:
    ctx.fake.script("create_bulk_import_job", klaviyo_error(AuthenticationError, 401, None))

    result = upload_batch(ctx, run_id, 0)

    message = ctx.runs.abort_reason(run_id)
    assert message is not None
    assert message.startswith("Klaviyo refused the connection's API key (401")
    _failed_whole(ctx, run_id, result, "auth", message)


def test_a_bad_request_fails_the_batch_with_klaviyos_code_and_the_run_goes_on(
    ctx: ScriptedContext, run_id: str
) -> None:
    error = klaviyo_error(BadRequestError, 400, "invalid", "the body is wrong")
    ctx.fake.script("create_bulk_import_job", error)

    result = upload_batch(ctx, run_id, 0)

    _failed_whole(ctx, run_id, result, "invalid", f"Klaviyo rejected the batch: {error}")
    assert ctx.runs.abort_reason(run_id) is None


# -- waits: transient faults and throttling ---------------------------------------------


def test_transient_faults_are_retried_then_fail_the_batch_transient(
    ctx: ScriptedContext, run_id: str
) -> None:
    fault = RetriableError("connection reset", status=None, operation=Operation.BULK_IMPORT)
    ctx.fake.script("create_bulk_import_job", *[fault] * MAX_TRANSIENT_ATTEMPTS)

    for attempt in range(1, MAX_TRANSIENT_ATTEMPTS):
        with pytest.raises(RetryLater) as wait:
            upload_batch(ctx, run_id, 0)
        assert wait.value.reason == f"transient: {fault}"
        assert not wait.value.polling  # nothing was sent: back behind the other batches
        assert ctx.batches.state(run_id, 0)["attempts"] == str(attempt)
        _nothing_recorded(ctx, run_id)
    result = upload_batch(ctx, run_id, 0)

    assert len(ctx.fake.called("create_bulk_import_job")) == MAX_TRANSIENT_ATTEMPTS
    assert result.status is BatchStatus.FAILED
    detail = f"gave up after {MAX_TRANSIENT_ATTEMPTS} attempts: {fault}"
    _failed_whole(ctx, run_id, result, "transient", detail)


def test_a_transient_fault_while_polling_retries_on_the_polls_queue(
    ctx: ScriptedContext, run_id: str
) -> None:
    _submitted(ctx, run_id)
    ctx.fake.script("get_bulk_import_job", RetriableError("502", status=502))

    with pytest.raises(RetryLater) as wait:
        upload_batch(ctx, run_id, 0)

    assert wait.value.polling
    _nothing_recorded(ctx, run_id)


def test_throttling_hands_back_for_the_retry_after_and_counts_no_attempt(
    ctx: ScriptedContext, run_id: str
) -> None:
    throttled = ThrottledError("slow down", retry_after=7.0, operation=Operation.BULK_IMPORT)
    ctx.fake.script("create_bulk_import_job", throttled)

    with pytest.raises(RetryLater) as wait:
        upload_batch(ctx, run_id, 0)

    assert 7.0 <= wait.value.countdown <= 7.5
    assert wait.value.reason == "throttled by Klaviyo"
    cooldown = ctx.redis.pttl(keys.rate_cooldown("A1", Operation.BULK_IMPORT))
    assert 6000 < cooldown <= 7000  # every worker of the account waits it out
    assert "attempts" not in ctx.batches.state(run_id, 0)
    _nothing_recorded(ctx, run_id)


# -- a partial job ---------------------------------------------------------------------


def _error(n: int, email: str, attribute: str) -> ImportErrorItem:
    pointer = f"/data/attributes/profiles/data/{n}/attributes/{attribute}"
    payload: dict[str, Any] = {"type": "profile", "attributes": {"email": email}}
    return ImportErrorItem(f"err{n}", "invalid", "Invalid input.", "Bad value.", pointer, payload)


def _partial(ctx: ScriptedContext, run_id: str) -> BatchResult:
    """A job that failed b@ (its email) and c@ (its tier), errors on two pages."""
    _submitted(ctx, run_id)
    ctx.fake.script("get_bulk_import_job", job("J1", completed=1, failed=2))
    ctx.fake.script(
        "import_errors_page",
        ([_error(1, "b@x.co", "email")], "page-2"),
        ([_error(2, "c@x.co", "properties/tier")], None),
    )
    return upload_batch(ctx, run_id, 0)


def test_a_partial_jobs_failed_rows_name_their_rows_and_source_columns(
    ctx: ScriptedContext, run_id: str
) -> None:
    result = _partial(ctx, run_id)

    assert result == BatchResult(run_id, 0, BatchStatus.PARTIALLY_SUCCEEDED, 1, 2, "J1")
    run = ctx.runs.get(run_id)
    assert (run.counts.imported, run.counts.failed, run.batches.partially_succeeded) == (1, 2, 1)
    assert ctx.reports.failed_rows(run_id) == [
        {"batch": 0, "row": 2, "email": "b@x.co", "code": "invalid", "detail": "Bad value.",
         "field": "Email"},
        {"batch": 0, "row": 3, "email": "c@x.co", "code": "invalid", "detail": "Bad value.",
         "field": "Tier"},
    ]  # fmt: skip
    assert ctx.fake.called("import_errors_page") == [("J1", None), ("J1", "page-2")]
    state = ExportState(ctx.redis, ctx.runs.export_id(run_id))
    assert [d is not None for d in state.digests(EMAILS)] == [True, False, False]


def test_a_wait_between_error_pages_goes_on_from_the_page_it_reached(
    ctx: ScriptedContext, run_id: str
) -> None:
    _submitted(ctx, run_id)
    ctx.fake.script("get_bulk_import_job", job("J1", completed=1, failed=2))
    ctx.fake.script(
        "import_errors_page",
        ([_error(1, "b@x.co", "email")], "page-2"),
        ThrottledError("slow down", retry_after=1.0, operation=Operation.GET_IMPORT_ERRORS),
        ([_error(2, "c@x.co", "properties/tier")], None),
    )
    with pytest.raises(RetryLater):
        upload_batch(ctx, run_id, 0)
    _nothing_recorded(ctx, run_id)

    result = upload_batch(ctx, run_id, 0)

    assert (result.imported, result.failed) == (1, 2)
    assert len(ctx.fake.called("get_bulk_import_job")) == 1  # the job is known done
    pages = ctx.fake.called("import_errors_page")
    assert pages == [("J1", None), ("J1", "page-2"), ("J1", "page-2")]
    assert [row["row"] for row in ctx.reports.failed_rows(run_id)] == [2, 3]


def test_a_second_delivery_after_the_result_returns_it_and_counts_once(
    ctx: ScriptedContext, run_id: str
) -> None:
    first = _partial(ctx, run_id)
    calls = len(ctx.fake.calls)

    again = upload_batch(ctx, run_id, 0)

    assert again == first
    assert len(ctx.fake.calls) == calls  # Klaviyo is not asked again
    run = ctx.runs.get(run_id)
    assert (run.counts.imported, run.counts.failed, run.batches.done) == (1, 2, 1)
    assert len(ctx.reports.failed_rows(run_id)) == 2
    assert ctx.batches.record(first, [{"batch": 0}]) is False


def test_a_second_delivery_of_a_batch_failed_whole_counts_once(
    ctx: ScriptedContext, run_id: str
) -> None:
    ctx.fake.script("create_bulk_import_job", klaviyo_error(NotFoundError, 404, "not_found"))
    first = upload_batch(ctx, run_id, 0)

    assert upload_batch(ctx, run_id, 0) == first
    assert len(ctx.fake.calls) == 1
    assert ctx.runs.get(run_id).counts.failed == 3
    assert len(ctx.reports.failed_rows(run_id)) == 3
