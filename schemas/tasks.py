"""Task names and queues: the other half of the producer-worker contract.

The producer sends tasks by name only; it never imports the worker package.

- ``UPLOAD_BATCH(run_id, batch)`` on ``UPLOADS_QUEUE``: upload one stored batch
  and follow its Klaviyo job; returns a ``BatchResult``. Once the job is
  submitted, the task's retries (polls of the job) go to ``POLLS_QUEUE``.
- ``FINALIZE_RUN(results, run_id)`` on ``CONTROL_QUEUE``: the chord's body.
- ``RUN_FAILED(request, exc, traceback, run_id)`` on ``CONTROL_QUEUE``: the
  chord's errback, for a header task that raised instead of returning.
- ``REMOVE_MEMBERS(run_id, chunk)`` on ``UPLOADS_QUEUE``: a mirror run's
  removals, one stored chunk of at most 1,000 emails; returns a small result.
- ``FINALIZE_REMOVALS(results, run_id)`` on ``CONTROL_QUEUE``: the body of the
  removals' chord; ends the run.
- ``WATCHDOG()`` on ``CONTROL_QUEUE``: periodic (beat); finishes runs whose
  chord never fired (see ``worker.watchdog``).
- ``SCHEDULE_TICK()`` on ``CONTROL_QUEUE``: periodic (beat, every minute);
  publishes an ``ExportRequest`` for each export whose schedule is due (see
  ``worker.schedules``).

Besides the Celery queues, two plain queues carry JSON documents, not tasks:

- ``REQUESTS_QUEUE``: ``ExportRequest`` messages from upstream systems (any
  language) and from the schedule tick; ``klaviyo-export listen`` consumes it.
- ``DEAD_LETTER_QUEUE``: requests the listener refused, each wrapped with the
  error (``{"error": {...}, "message": ..., "received_at": ...}``).

Each is durable, on its own durable direct exchange of the same name, with
the routing key = its name; bodies are UTF-8 JSON (``application/json``).
On a Redis broker each is a list whose items are the documents themselves
(kombu's envelope is read too): see ``core.broker``.

Uploads and control work travel on separate queues so that a backlog of
rate-limited uploads never delays the finalisation of a run. Polls have their
own queue for the same reason: a retry goes to the back of its queue, and on
``UPLOADS_QUEUE`` a job submitted early waited behind every batch not yet
sent (a 2M-profile run's first polls came 46 s late). Every worker that
consumes ``UPLOADS_QUEUE`` must consume ``POLLS_QUEUE`` too.
"""

from __future__ import annotations

from typing import Any, Final

from kombu.entity import Exchange, Queue
from kombu.messaging import Producer

UPLOAD_BATCH: Final = "kx.upload_batch"
FINALIZE_RUN: Final = "kx.finalize_run"
RUN_FAILED: Final = "kx.run_failed"
WATCHDOG: Final = "kx.watchdog"
SCHEDULE_TICK: Final = "kx.schedule_tick"
REMOVE_MEMBERS: Final = "kx.remove_members"
FINALIZE_REMOVALS: Final = "kx.finalize_removals"

UPLOADS_QUEUE: Final = "kx.uploads"
POLLS_QUEUE: Final = "kx.polls"
CONTROL_QUEUE: Final = "kx.control"
REQUESTS_QUEUE: Final = "kx.requests"
DEAD_LETTER_QUEUE: Final = "kx.requests.dead"
JSON_CONTENT_TYPE: Final = "application/json"

ROUTES: Final = {
    UPLOAD_BATCH: {"queue": UPLOADS_QUEUE},
    FINALIZE_RUN: {"queue": CONTROL_QUEUE},
    RUN_FAILED: {"queue": CONTROL_QUEUE},
    WATCHDOG: {"queue": CONTROL_QUEUE},
    SCHEDULE_TICK: {"queue": CONTROL_QUEUE},
    REMOVE_MEMBERS: {"queue": UPLOADS_QUEUE},
    FINALIZE_REMOVALS: {"queue": CONTROL_QUEUE},
}


WORKER_QUEUES: Final = (UPLOADS_QUEUE, POLLS_QUEUE, CONTROL_QUEUE)
"""What a worker consumes (``celery worker -Q kx.uploads,kx.polls,kx.control``)."""


def queues() -> tuple[Queue, ...]:
    """The task queues, each on its own direct exchange with its own routing key.

    Spelled out because Celery binds a bare ``Queue(name)`` to the default
    exchange and key, and two such queues would both receive every message.
    """
    return tuple(
        Queue(name, Exchange(name, type="direct"), routing_key=name) for name in WORKER_QUEUES
    )


def document_queue(name: str) -> Queue:
    """``REQUESTS_QUEUE`` or ``DEAD_LETTER_QUEUE``: durable, on its own durable
    direct exchange, routing key = name (what a non-Python publisher declares)."""
    if name not in (REQUESTS_QUEUE, DEAD_LETTER_QUEUE):
        raise ValueError(f"{name!r} is not a document queue")
    return Queue(name, Exchange(name, type="direct", durable=True), routing_key=name, durable=True)


def publish_document(connection: Any, queue_name: str, body: bytes) -> None:
    """Publish a UTF-8 JSON ``body`` to a document queue, persistently.

    Declares the queue (and its exchange and binding) first, so a message
    sent before any listener ran is kept; retries on connection errors.
    """
    queue = document_queue(queue_name)
    Producer(connection).publish(
        body,
        exchange=queue.exchange,
        routing_key=queue.routing_key,
        declare=[queue],
        serializer=None,
        content_type=JSON_CONTENT_TYPE,
        content_encoding="utf-8",
        delivery_mode=2,  # persistent
        retry=True,
        retry_policy={
            "max_retries": 5,
            "interval_start": 0.2,
            "interval_step": 0.5,
            "interval_max": 2.0,
        },
    )
