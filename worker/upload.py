"""One batch's life: submit it as a Klaviyo bulk import job, follow the job,
map each row Klaviyo failed back to its source row, record the result once.

It never sleeps and never raises for a business failure. A wait (throttling,
a job still running, a transient error) is ``RetryLater``: the task hands the
batch back to the broker with a countdown and frees its worker process. A
failure is a result with every row accounted for, so the run's chord always
completes. Delivered twice (a worker killed mid-task), it resumes from the
job id it kept and counts its result once.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from core.context import Context
from core.errors import NotFound
from core.pointers import source_field
from core.policy import MAX_TRANSIENT_ATTEMPTS, Quota, account_key, backoff
from core.ratelimit import RateLimiter
from core.runs import Runs
from core.state import ExportState
from core.store import Connection, Store
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
from schemas.contracts import VERSION

JOB_DEADLINE_SECONDS: Final = 3600
"""A Klaviyo job not complete this long after submission fails its batch."""
MAX_RATE_SLEEP: Final = 1.0
"""A rate-limit wait up to this long is slept; a longer one re-schedules the task."""


class RetryLater(Exception):
    """Hand the batch back to the queue for ``countdown`` seconds.

    ``polling``: Klaviyo has the batch's job, so the retry follows it up and
    goes to ``POLLS_QUEUE`` rather than behind every batch not yet sent.
    """

    def __init__(self, countdown: float, reason: str, polling: bool = False) -> None:
        super().__init__(reason)
        self.countdown = countdown
        self.reason = reason
        self.polling = polling


@dataclass(frozen=True)
class Batch:
    run_id: str
    number: int
    profiles_json: bytes
    rows: list[int]
    emails: list[str]  # aligned with rows: the normalised email each profile carries
    digests: list[str]  # aligned with rows: each profile's digest, for the export's state


def poll_delay(polls: int) -> float:
    """Klaviyo jobs take seconds to minutes: start quick, slow down to 30 s."""
    return min(30.0, 0.5 * 1.6**polls)


def upload_batch(ctx: Context, run_id: str, number: int) -> dict[str, Any]:
    runs = ctx.runs
    recorded = runs.batch_result(run_id, number)
    if recorded is not None:
        return recorded
    payload = runs.load_batch(run_id, number)
    if payload is None:
        raise RuntimeError(f"run {run_id} batch {number}: payload missing from the store")
    batch = Batch(run_id, number, *payload)
    abort = runs.abort_reason(run_id)
    submitted = bool(runs.batch_state(run_id, number).get("job_id"))
    if abort is not None and not submitted:
        # Not sent yet: do not send. A batch Klaviyo already took is followed
        # to its end, so that the counts say what really happened.
        return _fail_all(
            runs, batch, "not_sent", f"not sent: {abort}", status=_stop_status(runs, run_id)
        )
    connection_id, list_id = runs.target(run_id)
    try:
        connection = ctx.store.get_connection(connection_id)
    except NotFound:
        runs.abort(run_id, "the connection was removed", cancel=True)
        if submitted:
            detail = "the connection was removed while Klaviyo imported this batch: outcome unknown"
            return _fail_all(runs, batch, "outcome_unknown", detail, status="cancelled")
        detail = "not sent: the connection was removed"
        return _fail_all(runs, batch, "not_sent", detail, status="cancelled")
    client, quota = worker_client(ctx, connection)
    try:
        return _advance(runs, client, quota, batch, list_id)
    except RetryLater as wait:
        wait.polling = wait.polling or submitted
        raise


def fail_lost_batch(ctx: Context, run_id: str, number: int, reason: str) -> None:
    """The watchdog gave up on a batch: every row of it failed, with the reason."""
    payload = ctx.runs.load_batch(run_id, number)
    if payload is not None:
        _fail_all(ctx.runs, Batch(run_id, number, *payload), "lost", reason)


def worker_client(ctx: Context, connection: Connection) -> tuple[KlaviyoClient, Quota]:
    """A client whose every call first takes its turn in the shared limiter; a
    wait longer than ``MAX_RATE_SLEEP`` hands the task back (``RetryLater``)."""
    quota = Quota(RateLimiter(ctx.redis, ctx.settings.rate_headroom), account_key(connection))

    def before_request(operation: str) -> None:
        wait = quota.acquire(operation, max_sleep=MAX_RATE_SLEEP)
        if wait:
            raise RetryLater(wait + random.uniform(0, 0.25), f"rate limit on {operation}")

    return ctx.klaviyo(connection.id, before_request=before_request), quota


def _advance(
    runs: Runs, client: KlaviyoClient, quota: Quota, batch: Batch, list_id: str
) -> dict[str, Any]:
    state = runs.batch_state(batch.run_id, batch.number)
    job_id = state.get("job_id")
    attempts = int(state.get("attempts", 0))
    try:
        if not job_id:
            job = client.create_bulk_import_job(batch.profiles_json, list_id)
            runs.set_batch_state(
                batch.run_id, batch.number, job_id=job.id, submitted_at=repr(time.time()), polls=0
            )
            raise RetryLater(poll_delay(0), "job submitted", polling=True)
        if state.get("job_done"):
            return _outcome(runs, client, batch, job_id)
        job = client.get_bulk_import_job(job_id)
        if not job.done:
            polls = int(state.get("polls", 0)) + 1
            if time.time() - float(state.get("submitted_at", time.time())) > JOB_DEADLINE_SECONDS:
                return _fail_all(
                    runs, batch, "job_timeout", f"Klaviyo job {job_id} did not complete in time"
                )
            done = job.completed_count + job.failed_count
            runs.set_batch_state(batch.run_id, batch.number, polls=polls, completed=done)
            raise RetryLater(poll_delay(polls), f"job {job.status}")
        if job.status == "cancelled":
            return _fail_all(runs, batch, "job_cancelled", f"Klaviyo cancelled job {job_id}")
        if not job.failed_count:
            return _record_job_outcome(runs, batch, job_id, [])
        runs.set_batch_state(batch.run_id, batch.number, job_done=1)
        return _outcome(runs, client, batch, job_id)
    except ThrottledError as exc:
        wait = quota.throttled(exc.operation, exc.retry_after, attempts + 1)
        raise RetryLater(wait + random.uniform(0, 0.5), "throttled by Klaviyo") from None
    except RetriableError as exc:
        attempts += 1
        if attempts >= MAX_TRANSIENT_ATTEMPTS:
            return _fail_all(runs, batch, "transient", f"gave up after {attempts} attempts: {exc}")
        runs.set_batch_state(batch.run_id, batch.number, attempts=attempts)
        raise RetryLater(backoff(attempts), f"transient: {exc}") from None
    except (AuthenticationError, PermissionDeniedError) as exc:
        message = (
            f"Klaviyo refused the connection's API key ({exc.status} {exc.code}): {exc.message}"
        )
        runs.abort(batch.run_id, message)
        return _fail_all(runs, batch, exc.code or "auth", message)
    except NotFoundError:
        if job_id:
            return _fail_all(runs, batch, "job_not_found", f"Klaviyo job {job_id} not found")
        message = f"Klaviyo list {list_id} does not exist (404)"
        runs.abort(batch.run_id, message)
        return _fail_all(runs, batch, "list_not_found", message)
    except (BadRequestError, FatalError) as exc:
        return _fail_all(runs, batch, exc.code or "rejected", f"Klaviyo rejected the batch: {exc}")


def _outcome(runs: Runs, client: KlaviyoClient, batch: Batch, job_id: str) -> dict[str, Any]:
    """A done job with failed rows: gather them (resumably), then record the result."""
    errors = _gather_errors(runs, client, batch)
    if errors is None:
        recorded = runs.batch_result(batch.run_id, batch.number)
        if recorded is None:
            raise RetryLater(1.0, "the batch's state is gone; looking again", polling=True)
        return recorded
    return _record_job_outcome(runs, batch, job_id, errors)


def _gather_errors(runs: Runs, client: KlaviyoClient, batch: Batch) -> list[ImportErrorItem] | None:
    """Every row the batch's job failed, page by page, kept in Redis as it goes.

    A wait (the rate limit) hands the task back between pages; the next
    delivery goes on from the page it reached. None: another delivery of the
    batch recorded its result meanwhile. Starting over each time, a
    batch Klaviyo failed whole (100 pages of errors) never got to its end.
    """
    state = runs.batch_state(batch.run_id, batch.number)
    job_id = state["job_id"]
    page = state.get("errors_next")
    done = bool(state.get("errors_done"))
    while not done:
        items, following = client.import_errors_page(job_id, page)
        runs.add_job_errors(batch.run_id, batch.number, page, map(_error_record, items), following)
        state = runs.batch_state(batch.run_id, batch.number)  # where any delivery got to
        if not state:  # another delivery recorded the batch: its result stands
            return None
        page, done = state.get("errors_next"), bool(state.get("errors_done"))
    seen: set[str] = set()
    errors = []
    for record in runs.job_errors(batch.run_id, batch.number):
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
    runs: Runs, batch: Batch, job_id: str, errors: list[ImportErrorItem]
) -> dict[str, Any]:
    failed_rows = []
    if errors:
        row_of = {email: row for email, row in zip(batch.emails, batch.rows, strict=True)}
        # Klaviyo names the field at fault with a pointer into the batch
        # (".../data/3/attributes/email"); the user knows the segment's column.
        # The export says which column became what. Removed mid-run: the
        # pointer is all there is, and it is kept.
        try:
            export = Store(runs.redis).get_export(runs.export_id(batch.run_id))
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
    result = _result(batch, _status(submitted - failed, failed), submitted - failed, failed, job_id)
    failed_emails = {row["email"] for row in failed_rows}
    imported = [
        (email, d)
        for email, d in zip(batch.emails, batch.digests, strict=True)
        if email not in failed_emails
    ]
    state = ExportState(runs.redis, runs.export_id(batch.run_id))
    state.record((email for email, _ in imported), (d for _, d in imported))
    runs.record_batch(batch.run_id, result, failed_rows)
    return runs.batch_result(batch.run_id, batch.number) or result


def _fail_all(
    runs: Runs, batch: Batch, code: str, detail: str, status: str = "failed"
) -> dict[str, Any]:
    """Every row of the batch failed, each listed with the same reason."""
    emails = batch.emails
    rows = [
        {
            "batch": batch.number,
            "row": row,
            "email": email,
            "code": code,
            "detail": detail,
            "field": None,
        }
        for row, email in zip(batch.rows, emails, strict=True)
    ]
    result = _result(batch, status, 0, len(rows), None, error=detail)
    runs.record_batch(batch.run_id, result, rows)
    return runs.batch_result(batch.run_id, batch.number) or result


def _status(imported: int, failed: int) -> str:
    if failed == 0:
        return "succeeded"
    return "partially_succeeded" if imported else "failed"


def _stop_status(runs: Runs, run_id: str) -> str:
    return "cancelled" if runs.is_cancelled(run_id) else "failed"


def _result(
    batch: Batch,
    status: str,
    imported: int,
    failed: int,
    job_id: str | None,
    error: str | None = None,
) -> dict[str, Any]:
    return {
        "v": VERSION,
        "run_id": batch.run_id,
        "batch": batch.number,
        "status": status,
        "submitted": imported + failed,
        "imported": imported,
        "failed": failed,
        "job_id": job_id,
        "error": error,
    }
