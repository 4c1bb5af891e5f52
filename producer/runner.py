"""Start a run: check the destination, read the segment once, launch the chord.

The segment is streamed: one batch is in memory at a time, and batches go to
Redis as they fill. The chord is launched only after the whole segment has
been read and stored, so a source that breaks halfway exports nothing.
Every row ends up counted: rejected here (with its reason), or submitted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Final

from core import audit, queries
from core.actors import Actor, require_use
from core.batch_store import StoredBatch
from core.context import Context
from core.errors import ExportBusy, ExportError, NotFound
from core.removal_store import REMOVAL_CHUNK
from core.state import ExportState
from core.store import Connection, Export
from klaviyo_client import FatalError, KlaviyoError, NotFoundError
from producer.batches import Batch
from producer.plan import (
    Reading,
    cap_breach,
    decide_removals,
    disabled_reason,
    read_segment,
)
from producer.segment import Rejected
from schemas.contracts import RunStatus
from schemas.keys import RunField

log = logging.getLogger(__name__)

REJECTION_FLUSH: Final = 1000


@dataclass(frozen=True)
class RunRequest:
    export_id: str
    source: str
    actor: Actor
    format: str | None = None
    trigger: str = "on demand"  # or "schedule", "upstream"
    full: bool = False  # send every row, even those unchanged since the last import


def start_run(
    ctx: Context,
    request: RunRequest,
    on_progress: Callable[[int], None] | None = None,
) -> str:
    """Record a run, read and store its batches, launch it; returns the run id.

    ``open_run`` then ``read_opened``, in this process: the CLI and the listener
    wait for the reading; the HTTP API answers after ``open_run`` and reads in
    the background.
    """
    run_id = open_run(ctx, request)
    read_opened(ctx, run_id, request, on_progress)
    return run_id


def open_run(ctx: Context, request: RunRequest) -> str:
    """Record the run as ``pending`` and take its export's lock; returns its id.

    Refused outright (no run recorded): an actor who may not use the export's
    connection, a disabled export, an export with a run in progress (the
    second run is skipped, never queued). Everything that can refuse a run
    without reading its segment is decided here, so a front door can answer at
    once and read later.
    """
    export = queries.get_export(ctx, request.actor, request.export_id)  # hidden: NotFound
    connection = ctx.store.get_connection(export.connection_id)
    require_use(request.actor, connection)
    disabled = disabled_reason(export)
    if disabled is not None:
        raise ExportError(disabled)
    run_id = ctx.lifecycle.create(
        export.id, request.source, request.actor.user, connection.id, export.list_id
    )
    holder = ctx.locks.take(export.id, run_id)
    if holder != run_id:
        ctx.runs.delete(run_id)
        raise ExportBusy(
            f"export {export.id} has run {holder} in progress: this run is skipped", holder
        )
    audit.record(
        ctx.redis,
        request.actor,
        "run.start",
        run_id,
        export=export.id,
        trigger=request.trigger,
        source=request.source,
    )
    return run_id


def read_opened(
    ctx: Context,
    run_id: str,
    request: RunRequest,
    on_progress: Callable[[int], None] | None = None,
) -> None:
    """Read the segment of a run ``open_run`` recorded, store it, launch it.

    A run that cannot complete its start (bad key, unknown list, unreadable
    source, over a cap, the export removed meanwhile) is recorded as
    ``failed`` or ``cancelled`` with the reason; an unexpected error ends it
    as failed (releasing the lock) and is raised.
    """
    try:
        export = ctx.store.get_export(request.export_id)
        connection = ctx.store.get_connection(export.connection_id)
        _start(ctx, run_id, export, connection, request, on_progress)
    except NotFound:  # removed since the run was opened, which cancelled it
        ctx.lifecycle.end_unsent(run_id, 0)
    except BaseException as exc:
        interrupted(ctx, run_id, exc)
        raise


def _start(
    ctx: Context,
    run_id: str,
    export: Export,
    connection: Connection,
    request: RunRequest,
    on_progress: Callable[[int], None] | None,
) -> None:
    try:
        _preflight(ctx, export)
        ctx.runs.touch(run_id)  # alive: the check may have waited on the rate limit
        loaded = _read_and_store(ctx, run_id, export, request, on_progress)
    except (ExportError, KlaviyoError) as exc:
        ctx.lifecycle.fail_before_sending(run_id, str(exc))
        return
    if not ctx.lifecycle.begin_upload(
        run_id,
        rows_read=loaded.rows_read,
        submitted=loaded.submitted,
        batches=loaded.batches,
        unchanged=loaded.unchanged,
    ):
        ctx.batches.discard_all(run_id)
        run = ctx.runs.get(run_id)
        raise ExportError(
            f"run {run_id} was ended while it read the segment ({run.status}: "
            f"{run.message}): nothing was sent"
        )
    try:
        _check_caps(loaded.submitted, export, connection, ctx.settings.max_profiles_per_run)
    except ExportError as exc:
        ctx.lifecycle.end_unsent(run_id, loaded.submitted, str(exc))
        return
    if ctx.runs.abort_reason(run_id) is not None:  # removed while we read: send nothing
        ctx.lifecycle.end_unsent(run_id, loaded.submitted)
    else:
        ctx.lifecycle.launch(run_id, loaded.batches)


def interrupted(ctx: Context, run_id: str, exc: BaseException, what: str = "start") -> None:
    """A start (or resume) broke off with an unexpected error: end the run as
    failed, which releases the export's run lock, rather than leave the lock to
    skip every later run for a day. A run still reading drops the batches it
    stored; one whose batches could not be queued keeps them for ``resume``.
    Best effort: with Redis down, the watchdog clears the lock later."""
    reason = f"the run's {what} was interrupted ({type(exc).__name__}): nothing more is sent"
    try:
        status = ctx.runs.status(run_id)
        if status is RunStatus.PENDING:
            ctx.batches.discard_all(run_id)
        if not status.final:
            ctx.lifecycle.fail(run_id, reason)
    except Exception as err:  # noqa: BLE001 - the first error is the one to report
        log.warning(
            "run %s: could not be ended after %s: %s",
            run_id,
            type(exc).__name__,
            type(err).__name__,
        )


def _check_caps(submitted: int, export: Export, connection: Connection, default: int) -> None:
    """Over a cap, nothing is sent: the run fails before any upload."""
    reason = cap_breach(submitted, export, connection, default)
    if reason is not None:
        raise ExportError(reason)


def _preflight(ctx: Context, export: Export) -> None:
    """Fail fast, before reading anything, on a bad key or an unknown list."""
    try:
        ctx.patient_klaviyo(export.connection_id).get_list(export.list_id)
    except NotFoundError:
        raise ExportError(f"Klaviyo list {export.list_id} does not exist (404)") from None
    except FatalError as exc:
        raise ExportError(
            f"Klaviyo refused the connection's API key ({exc.status} {exc.code}): {exc.message}"
        ) from None


def _read_and_store(
    ctx: Context,
    run_id: str,
    export: Export,
    request: RunRequest,
    on_progress: Callable[[int], None] | None,
) -> Reading:
    """Stream the segment into stored batches, as ``producer.plan`` decides each row.

    A delta run skips unchanged rows; a mirror run also stores, at the end,
    the members that left the segment and the brake's reason to hold them.
    """
    state = ExportState(ctx.redis, export.id)
    rejected: list[dict[str, object]] = []

    def store(batch: Batch, emails: list[str], digests: list[str]) -> None:
        ctx.batches.store(
            StoredBatch(run_id, batch.number, batch.profiles_json, batch.rows, emails, digests)
        )

    def reject(outcome: Rejected) -> None:
        rejected.append(outcome.record())
        if len(rejected) >= REJECTION_FLUSH:
            ctx.reports.add_rejections(run_id, rejected)
            rejected.clear()

    def progress(rows_read: int) -> None:
        if on_progress is not None:
            on_progress(rows_read)
        ctx.runs.set_progress(run_id, rows_read)

    loaded = read_segment(
        export,
        state,
        request.source,
        request.format,
        full=request.full,
        batch_profiles=ctx.settings.batch_profiles,
        on_batch=store,
        on_rejected=reject,
        on_progress=progress,  # always: it is also the heartbeat the watchdog reads
    )
    ctx.reports.add_rejections(run_id, rejected)
    removals = decide_removals(
        export,
        state,
        loaded,
        keep=partial(ctx.removals.store, run_id, chunk_size=REMOVAL_CHUNK),
    )
    if removals is not None and removals.brake_reason is not None:
        ctx.runs.set_fields(run_id, **{RunField.BRAKE_REASON: removals.brake_reason})
    return loaded
