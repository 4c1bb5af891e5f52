"""Finish the runs whose chord never fired.

A chord's callback can be lost: a message dropped by a broker restart, chord
keys expired in the result backend, a worker killed in the instant between
taking a message from Redis and recording it as unacknowledged (kombu's Redis
transport has that window). Every ``KLAVIYO_EXPORT_WATCHDOG_SECONDS`` (Celery
beat, ``kx.watchdog``) each active run is checked:

- every batch has its result, yet the run is not final after ``GRACE``
  seconds: the callback was lost, so finish the run from its record;
- no batch has finished for ``KLAVIYO_EXPORT_STALL_SECONDS``: send the missing
  batches again (the upload task is idempotent: a batch already done is a
  no-op, a job already submitted is followed, not resubmitted);
- still stale after ``MAX_RESENDS`` such rounds: fail the missing batches,
  every row of them listed with the reason, and finish the run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from klaviyo_export.runs import Runs

log = logging.getLogger(__name__)

GRACE: Final = 30.0
MAX_RESENDS: Final = 3


@dataclass(frozen=True)
class Sweep:
    finished: list[str]
    resent: dict[str, list[int]]
    failed: list[str]


def sweep(
    runs: Runs,
    resend: Callable[[str, int], None],
    fail_batch: Callable[[str, int, str], None],
    stale_after: float,
    now: float | None = None,
    grace: float = GRACE,
) -> Sweep:
    now = time.time() if now is None else now
    result = Sweep([], {}, [])
    for run_id in runs.active():
        if runs.status(run_id)["status"] != "running":
            continue  # a mirror run at its brake or removing: its own stage
        idle = now - runs.updated_at(run_id)
        missing = runs.missing_batches(run_id)
        if not missing:
            if idle >= grace:
                runs.finish(run_id)
                log.warning("run %s: chord callback lost; finished by the watchdog", run_id)
                result.finished.append(run_id)
            continue
        if idle < stale_after:
            continue
        if runs.count_resend(run_id) <= MAX_RESENDS:
            for number in missing:
                resend(run_id, number)
            runs.touch(run_id)
            log.warning("run %s: no progress for %.0fs; resent batches %s", run_id, idle, missing)
            result.resent[run_id] = missing
            continue
        reason = f"no result after {MAX_RESENDS} resends (lost by the queue)"
        for number in missing:
            fail_batch(run_id, number, reason)
        runs.finish(run_id)
        result.failed.append(run_id)
    return result
