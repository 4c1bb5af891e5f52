"""The one chord builder: a run's parts go to the workers by task name only.

The producer (a run's uploads), the lifecycle (a mirror run's removals, sent
by a worker's chord callback or by ``approve``) and a resume all publish
through ``CeleryDispatcher``: a Celery app with no tasks registered, which
needs the broker to publish and the result backend because, with Redis, the
chord's size is recorded by the sender. Unit tests give the domain a
recording ``Dispatcher`` instead, and need no broker.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Protocol

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


class Dispatcher(Protocol):
    """Who sends a run's parts to the workers."""

    def launch_uploads(self, run_id: str, batches: Iterable[int]) -> None:
        """An upload per batch, then the run's ``FINALIZE_RUN``."""

    def launch_removals(self, run_id: str, chunks: int) -> None:
        """A removal per chunk, then the run's ``FINALIZE_REMOVALS``."""


class CeleryDispatcher:
    """Chords by task name on the configured broker."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def launch_uploads(self, run_id: str, batches: Iterable[int]) -> None:
        self._chord(run_id, tasks.UPLOAD_BATCH, batches, tasks.FINALIZE_RUN)

    def launch_removals(self, run_id: str, chunks: int) -> None:
        self._chord(run_id, tasks.REMOVE_MEMBERS, range(chunks), tasks.FINALIZE_REMOVALS)

    def _chord(self, run_id: str, part: str, numbers: Iterable[int], callback: str) -> None:
        app = sender(self.settings)
        header = [app.signature(part, args=(run_id, n), immutable=True) for n in numbers]
        body = app.signature(callback, kwargs={"run_id": run_id})
        body.on_error(app.signature(tasks.RUN_FAILED, kwargs={"run_id": run_id}))
        chord(header)(body)
