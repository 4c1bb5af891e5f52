"""A mirror run's removals: one chunk of at most 1,000 emails per task.

Emails become Klaviyo profile ids through ``GET /api/profiles`` with
``any(email,[…])`` (100 emails a query, every page followed); the ids leave the
list in one ``DELETE /api/lists/{id}/relationships/profiles`` (at most 1,000):
membership only, never an unsubscribe or a suppression. An email Klaviyo no
longer knows is already out of the list and counts as removed. Waits and
retries work as for uploads (``worker.upload.RetryLater``); a chunk's result
counts once.
"""

from __future__ import annotations

import logging
import random
from typing import Any

from core.context import Context
from core.errors import NotFound
from core.policy import MAX_TRANSIENT_ATTEMPTS, backoff
from core.state import ExportState
from klaviyo_client import FatalError, RetriableError, ThrottledError
from schemas import keys
from worker.upload import RetryLater, worker_client

log = logging.getLogger(__name__)


def remove_members(ctx: Context, run_id: str, chunk: int) -> dict[str, Any]:
    runs = ctx.runs
    emails = runs.removal_chunk(run_id, chunk)
    if emails is None:  # recorded already (the list is deleted with the result)
        return {"run_id": run_id, "chunk": chunk, "status": "done"}
    if runs.abort_reason(run_id) is not None:
        return _record(ctx, run_id, chunk, 0, len(emails), "not_sent")
    connection_id, list_id = runs.target(run_id)
    try:
        connection = ctx.store.get_connection(connection_id)
    except NotFound:
        return _record(ctx, run_id, chunk, 0, len(emails), "connection_removed")
    client, quota = worker_client(ctx, connection)
    attempts_field = f"removal_attempts:{chunk}"
    attempts = int(ctx.redis.hget(keys.run(run_id), attempts_field) or 0)
    try:
        ids = [p.id for p in client.iter_profiles_by_email(emails)]
        if ids:
            client.remove_profiles_from_list(list_id, ids)
    except ThrottledError as exc:
        wait = quota.throttled(exc.operation, exc.retry_after, attempts + 1)
        raise RetryLater(wait + random.uniform(0, 0.5), "throttled by Klaviyo") from None
    except RetriableError as exc:
        attempts = int(ctx.redis.hincrby(keys.run(run_id), attempts_field, 1))
        if attempts >= MAX_TRANSIENT_ATTEMPTS:
            return _record(ctx, run_id, chunk, 0, len(emails), "transient")
        raise RetryLater(backoff(attempts), f"transient: {exc}") from None
    except FatalError as exc:
        return _record(ctx, run_id, chunk, 0, len(emails), exc.code or "rejected")
    ExportState(ctx.redis, runs.export_id(run_id)).forget(emails)
    return _record(ctx, run_id, chunk, len(emails), 0, "removed")


def fail_lost_chunk(ctx: Context, run_id: str, chunk: int, reason: str) -> None:
    """The watchdog gave up on a chunk: none of its members counts as removed."""
    emails = ctx.runs.removal_chunk(run_id, chunk)
    if emails is not None:
        log.warning("run %s removals %s: %s", run_id, chunk, reason)
        _record(ctx, run_id, chunk, 0, len(emails), "lost")


def _record(
    ctx: Context, run_id: str, chunk: int, removed: int, failed: int, outcome: str
) -> dict[str, Any]:
    ctx.runs.record_removal(run_id, chunk, removed, failed)
    return {
        "run_id": run_id,
        "chunk": chunk,
        "status": outcome,
        "removed": removed,
        "failed": failed,
    }
