"""Task names and queues: the other half of the producer-worker contract.

The producer sends tasks by name only; it never imports the worker package.

- ``UPLOAD_BATCH(run_id, batch)`` on ``UPLOADS_QUEUE``: upload one stored batch
  and follow its Klaviyo job; returns a ``BatchResult``.
- ``FINALIZE_RUN(results, run_id)`` on ``CONTROL_QUEUE``: the chord's body.
- ``RUN_FAILED(request, exc, traceback, run_id)`` on ``CONTROL_QUEUE``: the
  chord's errback, for a header task that raised instead of returning.
- ``WATCHDOG()`` on ``CONTROL_QUEUE``: periodic (beat); finishes runs whose
  chord never fired (see ``worker.watchdog``).

Uploads and control work travel on separate queues so that a backlog of
rate-limited uploads never delays the finalisation of a run.
"""

from __future__ import annotations

from typing import Final

from kombu.entity import Exchange, Queue

UPLOAD_BATCH: Final = "kx.upload_batch"
FINALIZE_RUN: Final = "kx.finalize_run"
RUN_FAILED: Final = "kx.run_failed"
WATCHDOG: Final = "kx.watchdog"

UPLOADS_QUEUE: Final = "kx.uploads"
CONTROL_QUEUE: Final = "kx.control"

ROUTES: Final = {
    UPLOAD_BATCH: {"queue": UPLOADS_QUEUE},
    FINALIZE_RUN: {"queue": CONTROL_QUEUE},
    RUN_FAILED: {"queue": CONTROL_QUEUE},
    WATCHDOG: {"queue": CONTROL_QUEUE},
}


def queues() -> tuple[Queue, Queue]:
    """Both queues, each on its own direct exchange with its own routing key.

    Spelled out because Celery binds a bare ``Queue(name)`` to the default
    exchange and key, and two such queues would both receive every message.
    """
    return tuple(  # type: ignore[return-value]
        Queue(name, Exchange(name, type="direct"), routing_key=name)
        for name in (UPLOADS_QUEUE, CONTROL_QUEUE)
    )
