from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Final

from core.batch_store import BatchResult, BatchStore, StoredBatch
from core.context import Context
from core.errors import NotFound, RetryLater
from core.pointers import source_field
from core.policy import Quota
from core.state import ExportState
from core.store import Store
from klaviyo_client import (
    AuthenticationError,
    BadRequestError,
    FatalError,
    ImportErrorItem,
    KlaviyoClient,
    NotFoundError,
    PermissionDeniedError,
    RetriableError,
    ThrottledError,
)
from schemas.contracts import BatchStatus
from worker.retries import throttled, transient, worker_client

JOB_DEADLINE_SECONDS: Final = 3600
"""A Klaviyo job not complete this long after submission fails its batch."""


def poll_delay(polls: int) -> float:
    """Klaviyo jobs take seconds to minutes: start quick, slow down to 30 s."""
    return min(30.0, 0.5 * 1.6**polls)


def upload_batch(ctx: Context, run_id: str, number: int) -> BatchResult:
    batches = ctx.batches
    recorded = batches.result(run_id, number)
    if recorded is not None:
        return recorded
    batch = batches.load(run_id, number)
    if batch is None:
        raise RuntimeError(f"run {run_id} batch {number}: payload missing from the store")
    abort = ctx.runs.abort_reason(run_id)
    submitted = bool(batches.state(run_id, number).get("job_id"))
    if abort is not None and not submitted:
        # Not sent yet: do not send. A batch Klaviyo already took is followed
        # to its end, so that the counts say what really happened.
        stop = BatchStatus.CANCELLED if ctx.runs.is_cancelled(run_id) else BatchStatus.FAILED
        return _fail_all(batches, batch, "not_sent", f"not sent: {abort}", status=stop)
    connection_id, list_id = ctx.runs.target(run_id)
    try:
        connection = ctx.store.get_connection(connection_id)
    except NotFound:
        ctx.lifecycle.abort(run_id, "the connection was removed", cancel=True)
        if submitted:
            detail = "the connection was removed while Klaviyo imported this batch: outcome unknown"
            return _fail_all(batches, batch, "outcome_unknown", detail, BatchStatus.CANCELLED)
        detail = "not sent: the connection was removed"
        return _fail_all(batches, batch, "not_sent", detail, BatchStatus.CANCELLED)
    client, quota = worker_client(ctx, connection)
    try:
        return _advance(ctx, client, quota, batch, list_id)
    except RetryLater as wait:
        wait.polling = wait.polling or submitted
        raise


def fail_lost_batch(ctx: Context, run_id: str, number: int, reason: str) -> None:
    """The watchdog gave up on a batch: every row of it failed, with the reason."""
    batch = ctx.batches.load(run_id, number)
    if batch is not None:
        _fail_all(ctx.batches, batch, "lost", reason)


def _advance(
    ctx: Context, client: KlaviyoClient, quota: Quota, batch: StoredBatch, list_id: str
) -> BatchResult:
    batches = ctx.batches
    state = batches.state(batch.run_id, batch.number)
    job_id = state.get("job_id")
    attempts = int(state.get("attempts", 0))
    try:
        if not job_id:
            job = client.create_bulk_import_job(batch.profiles_json, list_id)
            batches.set_state(
                batch.run_id, batch.number, job_id=job.id, submitted_at=repr(time.time()), polls=0
            )
            raise RetryLater(poll_delay(0), "job submitted", polling=True)
        if state.get("job_done"):
            return _outcome(ctx, client, batch, job_id)
        job = client.get_bulk_import_job(job_id)
        if not job.done:
            polls = int(state.get("polls", 0)) + 1
            if time.time() - float(state.get("submitted_at", time.time())) > JOB_DEADLINE_SECONDS:
                detail = f"Klaviyo job {job_id} did not complete in time"
                return _fail_all(batches, batch, "job_timeout", detail, job_id=job_id)
            done = job.completed_count + job.failed_count
            batches.set_state(batch.run_id, batch.number, polls=polls, completed=done)
            raise RetryLater(poll_delay(polls), f"job {job.status}")
        if job.status == "cancelled":
            detail = f"Klaviyo cancelled job {job_id}"
            return _fail_all(batches, batch, "job_cancelled", detail, job_id=job_id)
        if not job.failed_count:
            return _record_job_outcome(ctx, batch, job_id, [])
        batches.set_state(batch.run_id, batch.number, job_done=1)
        return _outcome(ctx, client, batch, job_id)
    except ThrottledError as exc:
        throttled(quota, exc, attempts)
    except RetriableError as exc:
        attempts += 1
        batches.set_state(batch.run_id, batch.number, attempts=attempts)
        transient(exc, attempts)
        detail = f"gave up after {attempts} attempts: {exc}"
        return _fail_all(batches, batch, "transient", detail)
    except (AuthenticationError, PermissionDeniedError) as exc:
        message = (
            f"Klaviyo refused the connection's API key ({exc.status} {exc.code}): {exc.message}"
        )
        ctx.lifecycle.abort(batch.run_id, message)
        return _fail_all(batches, batch, exc.code or "auth", message)
    except NotFoundError:
        if job_id:
            detail = f"Klaviyo job {job_id} not found"
            return _fail_all(batches, batch, "job_not_found", detail, job_id=job_id)
        message = f"Klaviyo list {list_id} does not exist (404)"
        ctx.lifecycle.abort(batch.run_id, message)
        return _fail_all(batches, batch, "list_not_found", message)
    except (BadRequestError, FatalError) as exc:
        detail = f"Klaviyo rejected the batch: {exc}"
        return _fail_all(batches, batch, exc.code or "rejected", detail)


def _outcome(ctx: Context, client: KlaviyoClient, batch: StoredBatch, job_id: str) -> BatchResult:
    """A done job with failed rows: gather them (resumably), then record the result."""
    errors = _gather_errors(ctx.batches, client, batch)
    if errors is None:
        recorded = ctx.batches.result(batch.run_id, batch.number)
        if recorded is None:
            raise RetryLater(1.0, "the batch's state is gone; looking again", polling=True)
        return recorded
    return _record_job_outcome(ctx, batch, job_id, errors)


def _gather_errors(
    batches: BatchStore, client: KlaviyoClient, batch: StoredBatch
) -> list[ImportErrorItem] | None:
    """Every row the batch's job failed, page by page, kept in Redis as it goes.

    A wait (the rate limit) hands the task back between pages; the next
    delivery goes on from the page it reached. None: another delivery of the
    batch recorded its result meanwhile. Starting over each time, a
    batch Klaviyo failed whole (100 pages of errors) never got to its end.
    """
    state = batches.state(batch.run_id, batch.number)
    job_id = state["job_id"]
    page = state.get("errors_next")
    done = bool(state.get("errors_done"))
    while not done:
        items, following = client.import_errors_page(job_id, page)
        batches.add_job_errors(
            batch.run_id, batch.number, page, map(_error_record, items), following
        )
        state = batches.state(batch.run_id, batch.number)  # where any delivery got to
        if not state:  # another delivery recorded the batch: its result stands
            return None
        page, done = state.get("errors_next"), bool(state.get("errors_done"))
    seen: set[str] = set()
    errors = []
    for record in batches.job_errors(batch.run_id, batch.number):
        if record["id"] not in seen:
            seen.add(record["id"])
            errors.append(_error_item(record))
    return errors


def _error_record(error: ImportErrorItem) -> dict[str, Any]:
    """What is kept of an import error: its id and reason, and the email that
    maps it back to its row (not the rest of the profile)."""
    return {
        "id": error.id,
        "code": error.code,
        "title": error.title,
        "detail": error.detail,
        "pointer": error.pointer,
        "email": error.email,
    }


def _error_item(record: Mapping[str, Any]) -> ImportErrorItem:
    email = record.get("email")
    return ImportErrorItem(
        id=record["id"],
        code=record["code"],
        title=record["title"],
        detail=record["detail"],
        pointer=record["pointer"],
        original_payload={"attributes": {"email": email}} if email else None,
    )


def _record_job_outcome(
    ctx: Context, batch: StoredBatch, job_id: str, errors: list[ImportErrorItem]
) -> BatchResult:
    export_id = ctx.runs.export_id(batch.run_id)
    failed_rows = []
    if errors:
        row_of = {email: row for email, row in zip(batch.emails, batch.rows, strict=True)}
        # Klaviyo names the field at fault with a pointer into the batch
        # (".../data/3/attributes/email"); the user knows the segment's column.
        # The export says which column became what. Removed mid-run: the
        # pointer is all there is, and it is kept.
        try:
            export = Store(ctx.redis).get_export(export_id)
        except NotFound:
            export = None
        for error in errors:
            email = error.email
            field = error.pointer
            if export is not None:
                field = source_field(field, export.email_field, export.properties)
            failed_rows.append(
                {
                    "batch": batch.number,
                    "row": row_of.get(email) if email else None,
                    "email": email,
                    "code": error.code,
                    "detail": error.detail or error.title,
                    "field": field,
                }
            )
    submitted = len(batch.rows)
    failed = min(len(failed_rows), submitted)
    result = BatchResult(
        batch.run_id,
        batch.number,
        _status(submitted - failed, failed),
        submitted - failed,
        failed,
        job_id,
    )
    failed_emails = {row["email"] for row in failed_rows}
    imported = [
        (email, d)
        for email, d in zip(batch.emails, batch.digests, strict=True)
        if email not in failed_emails
    ]
    state = ExportState(ctx.redis, export_id)
    state.record((email for email, _ in imported), (d for _, d in imported))
    ctx.batches.record(result, failed_rows)
    return ctx.batches.result(batch.run_id, batch.number) or result


def _fail_all(
    batches: BatchStore,
    batch: StoredBatch,
    code: str,
    detail: str,
    status: BatchStatus = BatchStatus.FAILED,
    job_id: str | None = None,
) -> BatchResult:
    """Every row of the batch failed, each listed with the same reason."""
    rows = [
        {
            "batch": batch.number,
            "row": row,
            "email": email,
            "code": code,
            "detail": detail,
            "field": None,
        }
        for row, email in zip(batch.rows, batch.emails, strict=True)
    ]
    result = BatchResult(batch.run_id, batch.number, status, 0, len(rows), job_id, error=detail)
    batches.record(result, rows)
    return batches.result(batch.run_id, batch.number) or result


def _status(imported: int, failed: int) -> BatchStatus:
    if failed == 0:
        return BatchStatus.SUCCEEDED
    return BatchStatus.PARTIALLY_SUCCEEDED if imported else BatchStatus.FAILED
