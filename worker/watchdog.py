"""Finish the runs whose chord never fired, at either of a run's two stages.

A chord's callback can be lost: a message dropped by a broker restart, chord
keys expired in the result backend, a worker killed in the instant between
taking a message from Redis and recording it as unacknowledged (kombu's Redis
transport has that window). Every ``KLAVIYO_EXPORT_WATCHDOG_SECONDS`` (Celery
beat, ``kx.watchdog``) each active run is checked, the same way for its
uploads (``running``: batches) and for a mirror run's removals (``removing``:
chunks of departed members):

- every part has its result, yet the run has not moved on after ``GRACE``
  seconds: the callback was lost, so do what it does (after the uploads, a
  mirror run goes on to its brake or its removals; otherwise the run ends);
- no part has finished for ``KLAVIYO_EXPORT_STALL_SECONDS``: send the missing
  parts again (both tasks are idempotent: a part already done is a no-op, a
  job already submitted is followed, not resubmitted);
- still stale after ``MAX_RESENDS`` such rounds: fail the missing parts (every
  row of a batch listed with the reason; a chunk's members counted as not
  removed) and end the run.

A run awaiting approval at the brake waits for a person, not for the watchdog.

Export run locks are swept too (``clear_locks``): a lock whose run is final
or gone is released (a producer that crashed between ending a run and
releasing its lock, or a run record lost with Redis), and a run still
``pending`` (reading its segment) with no progress for the stall time is
failed, which releases its lock: its producer is gone. Without this, every
later run of the export would be skipped as "in progress" for a day.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from core.errors import NotFound
from core.lifecycle import Lifecycle
from schemas.contracts import RunStatus

log = logging.getLogger(__name__)

GRACE: Final = 30.0
MAX_RESENDS: Final = 3


@dataclass(frozen=True)
class Stage:
    """What the watchdog does for one stage of a run; each callable takes the run id."""

    missing: Callable[[str], list[int]]  # parts without a result
    resend: Callable[[str, int], None]
    fail: Callable[[str, int, str], None]  # a part given up on, with the reason
    done: Callable[[str], object]  # what the stage's chord callback does


@dataclass(frozen=True)
class Sweep:
    finished: list[str]
    resent: dict[str, list[int]]
    failed: list[str]


def sweep(
    lifecycle: Lifecycle,
    stages: dict[RunStatus, Stage],
    stale_after: float,
    now: float | None = None,
    grace: float = GRACE,
) -> Sweep:
    """Check every active run whose status is a key of ``stages`` ("running",
    "removing"); others (at the brake) are left alone."""
    now = time.time() if now is None else now
    runs = lifecycle.records
    result = Sweep([], {}, [])
    for run_id in runs.active():
        status = runs.status(run_id)
        stage = stages.get(status)
        if stage is None:
            continue
        idle = now - runs.updated_at(run_id)
        missing = stage.missing(run_id)
        if not missing:
            if idle >= grace:
                stage.done(run_id)
                log.warning("run %s: %s callback lost; done by the watchdog", run_id, status)
                result.finished.append(run_id)
            continue
        if idle < stale_after:
            continue
        if runs.count_resend(run_id, status) <= MAX_RESENDS:
            for number in missing:
                stage.resend(run_id, number)
            runs.touch(run_id)
            log.warning(
                "run %s: no progress %s for %.0fs; resent %s", run_id, status, idle, missing
            )
            result.resent[run_id] = missing
            continue
        reason = f"no result after {MAX_RESENDS} resends (lost by the queue)"
        for number in missing:
            stage.fail(run_id, number, reason)
        lifecycle.finish(run_id)
        result.failed.append(run_id)
    return result


def clear_locks(lifecycle: Lifecycle, stale_after: float, now: float | None = None) -> list[str]:
    """Release the run locks no live run holds; returns the exports freed.

    A lock younger than ``GRACE`` is left alone: a ``resume`` takes the lock
    of a final run and only then makes it ``running`` again.
    """
    now = time.time() if now is None else now
    freed = []
    for lock in lifecycle.locks.all():
        if lock.age < GRACE:
            continue
        why = _why_free(lifecycle, lock.run_id, stale_after, now)
        if why is None:
            continue
        lifecycle.locks.release(lock.export_id, lock.run_id)  # ending a stalled run did already
        log.warning("export %s: run lock of %s released: %s", lock.export_id, lock.run_id, why)
        freed.append(lock.export_id)
    return freed


def _why_free(lifecycle: Lifecycle, run_id: str, stale_after: float, now: float) -> str | None:
    """Why the lock of ``run_id`` must go, or None while the run is alive."""
    try:
        status = lifecycle.records.status(run_id)
    except NotFound:
        return "its run is gone"
    if status.final:
        return f"its run is {status}"
    if status is not RunStatus.PENDING or now - lifecycle.records.updated_at(run_id) < stale_after:
        return None
    lifecycle.fail_before_sending(  # its rows (emails) must not linger
        run_id,
        f"the producer stopped reading the segment (no progress for {stale_after:.0f} s)",
    )
    return "its run stopped while reading the segment"
