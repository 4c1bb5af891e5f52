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

from klaviyo_client import FatalError, KlaviyoError, NotFoundError
from klaviyo_client.retry import with_retries
from klaviyo_export import audit
from klaviyo_export.actors import Actor, require_use
from klaviyo_export.context import Context
from klaviyo_export.errors import ExportError
from klaviyo_export.mirror import after_adds, brake_reason
from klaviyo_export.state import ExportState, digest
from klaviyo_export.store import Connection, Export
from producer.batches import Batch, BatchPacker
from producer.dispatch import launch_removals, launch_run
from producer.profiles import EmailDeduplicator, MappedProfile
from producer.segment import Rejected, checked_rows
from schemas import keys

log = logging.getLogger(__name__)

REJECTION_FLUSH: Final = 1000
STATE_LOOKUP_CHUNK: Final = 1000
"""Accepted rows looked up in the export's state per round trip (delta runs)."""
PROGRESS_EVERY: Final = 50_000


class ExportBusy(ExportError):
    """The export has a run in progress: runs of one export never overlap."""


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

    Refused outright (no run recorded): an actor who may not use the export's
    connection, a disabled export, an export with a run in progress (the
    second run is skipped, never queued). A run that cannot complete its
    start (bad key, unknown list, unreadable source, over a cap, the export
    removed meanwhile) is recorded as ``failed`` or ``cancelled`` with the
    reason, and its id is still returned.
    """
    export = ctx.store.get_export(request.export_id)
    connection = ctx.store.get_connection(export.connection_id)
    require_use(request.actor, connection)
    if not export.enabled:
        raise ExportError(f"export {export.id} is disabled: enable it to run it")
    run_id = ctx.runs.create(
        export.id, request.source, request.actor.user, connection.id, export.list_id
    )
    holder = ctx.runs.lock_export(export.id, run_id)
    if holder != run_id:
        ctx.runs.discard(run_id)
        raise ExportBusy(f"export {export.id} has run {holder} in progress: this run is skipped")
    audit.record(
        ctx.redis,
        request.actor,
        "run.start",
        run_id,
        export=export.id,
        trigger=request.trigger,
        source=request.source,
    )
    try:
        _preflight(ctx, export)
        loaded = _read_and_store(ctx, run_id, export, request, on_progress)
    except (ExportError, KlaviyoError) as exc:
        ctx.runs.discard_batches(run_id)
        ctx.runs.finish(run_id, status="failed", message=str(exc))
        return run_id
    ctx.runs.mark_running(
        run_id,
        rows_read=loaded.rows_read,
        submitted=loaded.submitted,
        batches=loaded.batches,
        unchanged=loaded.unchanged,
    )
    try:
        _check_caps(loaded.submitted, export, connection, ctx.settings.max_profiles_per_run)
    except ExportError as exc:
        ctx.runs.unsent(run_id, loaded.submitted)
        ctx.runs.finish(run_id, status="failed", message=str(exc))
        return run_id
    if ctx.runs.abort_reason(run_id) is not None:  # removed while we read: send nothing
        ctx.runs.unsent(run_id, loaded.submitted)
        ctx.runs.finish(run_id)
    elif loaded.batches == 0:
        after_adds(ctx, run_id, partial(launch_removals, ctx.settings))
    else:
        launch_run(ctx.settings, run_id, loaded.batches)
    return run_id


def _check_caps(submitted: int, export: Export, connection: Connection, default: int) -> None:
    """Over a cap, nothing is sent: the run fails before any upload."""
    caps = [
        (export.max_profiles or default, f"export {export.id}'s cap"),
        (connection.contract_cap, f"connection {connection.id}'s contract cap"),
    ]
    for cap, name in caps:
        if cap and submitted > cap:
            raise ExportError(
                f"the segment has {submitted:,} profiles to send, over {name} of {cap:,}: "
                "nothing was sent"
            )


def _preflight(ctx: Context, export: Export) -> None:
    """Fail fast, before reading anything, on a bad key or an unknown list."""
    client = ctx.klaviyo(export.connection_id)
    try:
        with_retries(lambda: client.get_list(export.list_id))
    except NotFoundError:
        raise ExportError(f"Klaviyo list {export.list_id} does not exist (404)") from None
    except FatalError as exc:
        raise ExportError(
            f"Klaviyo refused the connection's API key ({exc.status} {exc.code}): {exc.message}"
        ) from None


@dataclass
class Loaded:
    """What reading a segment produced."""

    rows_read: int = 0
    submitted: int = 0
    unchanged: int = 0
    batches: int = 0
    in_segment: int = 0  # valid, unique rows (sent or unchanged)


def _read_and_store(
    ctx: Context,
    run_id: str,
    export: Export,
    request: RunRequest,
    on_progress: Callable[[int], None] | None,
) -> Loaded:
    """Stream the segment into stored batches; a delta run skips unchanged rows.

    A mirror run also remembers every valid email of the segment (as 8-byte
    fingerprints) to find, at the end, the members that left it.
    """
    state = ExportState(ctx.redis, export.id)
    delta = not request.full and state.size() > 0
    segment = EmailDeduplicator() if export.mode == "mirror" else None
    packer = BatchPacker(max_profiles=ctx.settings.batch_profiles)
    loaded = Loaded()
    rejected: list[dict[str, object]] = []
    pending: list[tuple[str, str]] = []  # (email, digest) of the rows in the packer
    waiting: list[MappedProfile] = []  # accepted rows whose state lookup is pending

    def store(batch: Batch) -> None:
        meta = pending[: len(batch.rows)]
        del pending[: len(batch.rows)]
        emails, digests = [m[0] for m in meta], [m[1] for m in meta]
        ctx.runs.store_batch(run_id, batch.number, batch.profiles_json, batch.rows, emails, digests)
        loaded.batches += 1
        loaded.submitted += len(batch.rows)

    def send(rows: list[MappedProfile]) -> None:
        digests = [digest(r.profile_json) for r in rows]
        known = state.digests([r.email for r in rows]) if delta else [None] * len(rows)
        for row, new, old in zip(rows, digests, known, strict=True):
            if new == old:
                loaded.unchanged += 1
                continue
            pending.append((row.email, new))
            finished = packer.add(row.profile_json, row.row)
            if finished is not None:
                store(finished)
        rows.clear()

    for outcome in checked_rows(export, request.source, request.format):
        loaded.rows_read += 1
        if on_progress is not None and loaded.rows_read % PROGRESS_EVERY == 0:
            on_progress(loaded.rows_read)
            ctx.runs.set_progress(run_id, loaded.rows_read)
        if isinstance(outcome, Rejected):
            rejected.append(outcome.record())
            if len(rejected) >= REJECTION_FLUSH:
                ctx.runs.add_rejections(run_id, rejected)
                rejected.clear()
            continue
        loaded.in_segment += 1
        if segment is not None:
            segment.seen_before(outcome.email)
        waiting.append(outcome)
        if len(waiting) >= STATE_LOOKUP_CHUNK:
            send(waiting)
    send(waiting)
    last = packer.flush()
    if last is not None:
        store(last)
    ctx.runs.add_rejections(run_id, rejected)
    if segment is not None:
        _plan_removals(ctx, run_id, export, state, segment, loaded.in_segment)
    return loaded


def _plan_removals(
    ctx: Context,
    run_id: str,
    export: Export,
    state: ExportState,
    segment: EmailDeduplicator,
    in_segment: int,
) -> None:
    """Members the export put in the list that are not in this segment: to remove."""
    members = state.size()
    leaving = (email for email in state.emails() if not segment.seen_before(email))
    to_remove = ctx.runs.store_removals(run_id, leaving)
    reason = brake_reason(export, to_remove, members, in_segment)
    if reason is not None:
        ctx.redis.hset(keys.run(run_id), "brake_reason", reason)
