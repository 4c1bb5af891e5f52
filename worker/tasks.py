"""The Celery tasks: thin wrappers that turn ``RetryLater`` into a countdown.

Arguments are ids only (a run id and a batch number): no profile, email or
key ever travels in a message, so Flower and the logs show nothing personal.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

from celery import Task

from core.context import Context
from core.errors import RetryLater
from schemas import tasks as names
from schemas.contracts import RunStatus
from worker import removals, schedules, upload
from worker.celery_app import app
from worker.config import max_countdown
from worker.context import context
from worker.watchdog import Stage, clear_locks, sweep

log = logging.getLogger(__name__)

Result = TypeVar("Result")


def _or_retry(
    task: Task, work: Callable[[Context, str, int], Result], run_id: str, part: int
) -> Result:
    """Do ``work``; a ``RetryLater`` hands the message back with a capped countdown.

    The retry is raised after the ``except`` block, not in it: raised inside, the
    ``Retry`` would carry the ``RetryLater`` as its context, and with it the
    traceback's frames and the batch they hold (megabytes). Celery keeps the
    ``Retry`` in a reference cycle, so each batch then lived until the cyclic
    GC ran: a pool process grew to 580 MB over a 5M-profile run.
    """
    try:
        return work(context(), run_id, part)
    except RetryLater as wait:
        countdown = min(wait.countdown, max_countdown(context().settings))
        queue = names.POLLS_QUEUE if wait.polling else None  # None: where it came from
        log.info(
            "%s run %s part %s: %s; again in %.1fs", task.name, run_id, part, wait.reason, countdown
        )
    raise task.retry(countdown=countdown, queue=queue)


@app.task(name=names.UPLOAD_BATCH, bind=True, max_retries=None, acks_late=True)
def upload_batch(self: Task, run_id: str, batch: int, **_: Any) -> dict[str, Any]:
    """Upload one stored batch and follow its job; returns its ``BatchResult``."""
    result = _or_retry(self, upload.upload_batch, run_id, batch)
    log.info(
        "run %s batch %s: %s (%s imported, %s failed)",
        run_id,
        batch,
        result.status,
        result.imported,
        result.failed,
    )
    return result.to_json()


@app.task(name=names.FINALIZE_RUN, acks_late=True)
def finalize_run(results: list[dict[str, Any]], run_id: str, **_: Any) -> dict[str, Any]:
    """The chord's body: the adds are done; end the run, or start a mirror run's
    removals (or hold them at the safety brake)."""
    stage = context().lifecycle.after_adds(run_id)
    log.info("run %s adds done (%s batch results): %s", run_id, len(results), stage)
    return {"run_id": run_id, "status": stage.value}


@app.task(name=names.REMOVE_MEMBERS, bind=True, max_retries=None, acks_late=True)
def remove_members(self: Task, run_id: str, chunk: int, **_: Any) -> dict[str, Any]:
    """Remove one chunk of a mirror run's departed members from the list."""
    result = _or_retry(self, removals.remove_members, run_id, chunk)
    log.info("run %s removals %s: %s", run_id, chunk, result.outcome)
    return result.to_json()


@app.task(name=names.FINALIZE_REMOVALS, acks_late=True)
def finalize_removals(results: list[dict[str, Any]], run_id: str, **_: Any) -> dict[str, Any]:
    """The removals' chord body: the run's end."""
    run = context().lifecycle.finish(run_id)
    log.info("run %s finished: %s (%s removal chunks)", run_id, run.status, len(results))
    return {"run_id": run_id, "status": run.status.value}


@app.task(name=names.RUN_FAILED, acks_late=True)
def run_failed(request: Any, exc: Any, traceback: Any, run_id: str, **_: Any) -> None:
    """The chord's errback: a batch task raised instead of returning a result."""
    reason = f"a batch task failed unexpectedly: {type(exc).__name__}"
    log.error("run %s: %s", run_id, reason)
    context().lifecycle.fail(run_id, reason)


@app.task(name=names.WATCHDOG, acks_late=True)
def watchdog(**_: Any) -> dict[str, Any]:
    """Do what a lost chord callback would have; resend the parts of stalled runs."""
    ctx = context()
    stages = {
        RunStatus.RUNNING: Stage(
            missing=ctx.batches.missing,
            resend=lambda run_id, number: upload_batch.apply_async((run_id, number)),
            fail=partial(upload.fail_lost_batch, ctx),
            done=ctx.lifecycle.after_adds,
        ),
        RunStatus.REMOVING: Stage(
            missing=ctx.removals.missing,
            resend=lambda run_id, chunk: remove_members.apply_async((run_id, chunk)),
            fail=partial(removals.fail_lost_chunk, ctx),
            done=ctx.lifecycle.finish,
        ),
    }
    outcome = sweep(ctx.lifecycle, stages, stale_after=ctx.settings.stall_seconds)
    freed = clear_locks(ctx.lifecycle, stale_after=ctx.settings.stall_seconds)
    return {
        "finished": outcome.finished,
        "resent": outcome.resent,
        "failed": outcome.failed,
        "locks_released": freed,
    }


@app.task(name=names.SCHEDULE_TICK, acks_late=True)
def schedule_tick(**_: Any) -> dict[str, Any]:
    """Publish an export request for every export whose schedule is due."""
    ctx = context()
    with app.connection_for_write() as connection:
        requested = schedules.tick(
            ctx.store,
            ctx.redis,
            schedules.publisher(connection),
            now=datetime.now(UTC),
            refresh_cron=ctx.settings.refresh_cron,
        )
    return {"requested": [r.export_id for r in requested]}
