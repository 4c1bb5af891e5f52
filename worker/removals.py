"""A mirror run's removals: one chunk of at most 1,000 emails per task.

Emails become Klaviyo profile ids through ``GET /api/profiles`` with
``any(email,[…])`` (100 emails a query, every page followed); the ids leave the
list in one ``DELETE /api/lists/{id}/relationships/profiles`` (at most 1,000):
membership only, never an unsubscribe or a suppression. An email Klaviyo no
longer knows is already out of the list and counts as removed. Waits and
retries work as for uploads (``worker.retries``); a chunk's result
counts once.
"""

from __future__ import annotations

import logging

from core.context import Context
from core.errors import NotFound
from core.removal_store import RemovalResult
from core.state import ExportState
from klaviyo_client import FatalError, RetriableError, ThrottledError
from worker.retries import throttled, transient, worker_client

log = logging.getLogger(__name__)


def remove_members(ctx: Context, run_id: str, chunk: int) -> RemovalResult:
    emails = ctx.removals.chunk(run_id, chunk)
    if emails is None:  # recorded already (the list is deleted with the result)
        return RemovalResult(run_id, chunk, "done")
    if ctx.runs.abort_reason(run_id) is not None:
        return _record(ctx, RemovalResult(run_id, chunk, "not_sent", 0, len(emails)))
    connection_id, list_id = ctx.runs.target(run_id)
    try:
        connection = ctx.store.get_connection(connection_id)
    except NotFound:
        return _record(ctx, RemovalResult(run_id, chunk, "connection_removed", 0, len(emails)))
    client, quota = worker_client(ctx, connection)
    try:
        ids = [p.id for p in client.iter_profiles_by_email(emails)]
        if ids:
            client.remove_profiles_from_list(list_id, ids)
    except ThrottledError as exc:
        throttled(quota, exc, ctx.runs.removal_attempts(run_id, chunk))
    except RetriableError as exc:
        transient(exc, ctx.runs.count_removal_attempt(run_id, chunk))
        return _record(ctx, RemovalResult(run_id, chunk, "transient", 0, len(emails)))
    except FatalError as exc:
        outcome = exc.code or "rejected"
        return _record(ctx, RemovalResult(run_id, chunk, outcome, 0, len(emails)))
    ExportState(ctx.redis, ctx.runs.export_id(run_id)).forget(emails)
    return _record(ctx, RemovalResult(run_id, chunk, "removed", len(emails), 0))


def fail_lost_chunk(ctx: Context, run_id: str, chunk: int, reason: str) -> None:
    """The watchdog gave up on a chunk: none of its members counts as removed."""
    emails = ctx.removals.chunk(run_id, chunk)
    if emails is not None:
        log.warning("run %s removals %s: %s", run_id, chunk, reason)
        _record(ctx, RemovalResult(run_id, chunk, "lost", 0, len(emails)))


def _record(ctx: Context, result: RemovalResult) -> RemovalResult:
    ctx.removals.record(result)
    return result
