"""Send a run's chord to the workers, by task name only.

The producer has its own Celery app with no tasks registered: it needs the
broker to publish and the result backend because, with Redis, the chord's
size is recorded by the sender.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from celery import Celery, chord
from celery.backends.redis import RedisBackend

from core.settings import Settings
from schemas import tasks


class SenderRedisBackend(RedisBackend):  # type: ignore[misc]
    """The Redis result backend, minus the pub/sub subscription to each task
    sent: the producer follows runs through their records, never waits on a
    task's result, and must not leave subscriptions to tear down at exit."""

    def on_task_call(self, producer: object, task_id: str) -> None:
        return None

    def on_result_fulfilled(self, result: object) -> None:
        return None  # nothing was subscribed, so nothing to unsubscribe


@lru_cache(maxsize=4)
def sender(settings: Settings) -> Celery:
    backend = f"{__name__}:SenderRedisBackend+{settings.result_backend}"
    app = Celery("klaviyo_export_producer", broker=settings.broker_url, backend=backend)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_queues=tasks.queues(),
        task_default_queue=tasks.CONTROL_QUEUE,
        task_routes=dict(tasks.ROUTES),
        result_extended=False,
        broker_connection_retry_on_startup=True,
    )
    return app


def launch_run(settings: Settings, run_id: str, batches: int | Sequence[int]) -> str:
    """Start one chord: an upload per batch, then the run's finalisation.

    ``batches`` is the run's batch count, or the numbers of the batches to
    send again (a resume).
    """
    app = sender(settings)
    numbers = range(batches) if isinstance(batches, int) else batches
    header = [
        app.signature(tasks.UPLOAD_BATCH, args=(run_id, number), immutable=True)
        for number in numbers
    ]
    body = app.signature(tasks.FINALIZE_RUN, kwargs={"run_id": run_id})
    body.on_error(app.signature(tasks.RUN_FAILED, kwargs={"run_id": run_id}))
    result = chord(header)(body)
    return str(result.id)


def launch_removals(settings: Settings, run_id: str, chunks: int) -> str:
    """Start a mirror run's removals: a task per chunk, then the run's end."""
    app = sender(settings)
    header = [
        app.signature(tasks.REMOVE_MEMBERS, args=(run_id, chunk), immutable=True)
        for chunk in range(chunks)
    ]
    body = app.signature(tasks.FINALIZE_REMOVALS, kwargs={"run_id": run_id})
    body.on_error(app.signature(tasks.RUN_FAILED, kwargs={"run_id": run_id}))
    return str(chord(header)(body).id)
