"""How a task is put back: to which queue, and holding nothing it no longer needs.

Celery keeps the ``Retry`` a task raises in a reference cycle (the tracer's
exception info and its frames), freed only when the cyclic GC runs, which
large bytes and lists hardly ever trigger. Anything the ``Retry`` reaches
lives that long: a pool process once grew by a batch (megabytes) per retry.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from celery.exceptions import Retry

from core.errors import RetryLater
from core.settings import Settings
from schemas.tasks import POLLS_QUEUE
from worker import tasks


class Payload:
    """Stands for a loaded batch: megabytes of profiles in the real thing."""


class FakeTask:
    name = "kx.upload_batch"

    def __init__(self) -> None:
        self.queues: list[str | None] = []

    def retry(self, countdown: float, queue: str | None = None) -> Retry:
        self.queues.append(queue)
        return Retry("again", when=countdown)


@pytest.fixture
def no_cyclic_gc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    ctx = SimpleNamespace(settings=Settings.from_env())
    monkeypatch.setattr(tasks, "context", lambda: ctx)
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def test_the_retry_does_not_reach_the_batch(no_cyclic_gc: None) -> None:
    refs: list[weakref.ref[Payload]] = []

    def work(ctx: Any, run_id: str, part: int) -> dict[str, Any]:
        batch = Payload()
        refs.append(weakref.ref(batch))
        raise RetryLater(2.0, "job submitted")

    with pytest.raises(Retry) as raised:
        tasks._or_retry(FakeTask(), work, "r_1", 0)
    held = raised.value  # as Celery's tracer holds it
    assert held.when == 2.0
    assert held.__context__ is None
    assert refs[0]() is None  # freed by reference counting alone


def test_the_countdown_is_capped(no_cyclic_gc: None) -> None:
    def work(ctx: Any, run_id: str, part: int) -> dict[str, Any]:
        raise RetryLater(10_000.0, "job processing")

    with pytest.raises(Retry) as raised:
        tasks._or_retry(FakeTask(), work, "r_1", 0)
    assert raised.value.when == min(300, Settings.from_env().visibility_timeout // 3)


@pytest.mark.parametrize(("polling", "queue"), [(True, POLLS_QUEUE), (False, None)])
def test_a_poll_goes_to_the_polls_queue(no_cyclic_gc: None, polling: bool, queue: str) -> None:
    """None: Celery sends the retry back where the message came from."""
    task = FakeTask()

    def work(ctx: Any, run_id: str, part: int) -> dict[str, Any]:
        raise RetryLater(1.0, "job processing", polling=polling)

    with pytest.raises(Retry):
        tasks._or_retry(task, work, "r_1", 0)
    assert task.queues == [queue]
