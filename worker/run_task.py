"""The base of every task: a Redis restart costs a retry or one log line, not the run.

Two things a task of a run cannot do anything about, seen in a real restart:

- **Redis is away** (restarting, failing over). A task that touched the store
  raised ``redis.ConnectionError``; Celery recorded a failure, the run's chord
  raised ``ChordError`` and the run ended ``failed``, though every batch
  completed once Redis was back. Here such a task is retried in
  ``STORE_RETRY_SECONDS`` instead (a retry is not a chord result; the
  publish itself waits for the broker, see ``worker.config``), with no limit:
  the store coming back is the only way forward.
- **Redis came back empty** (no persistence): the run's records are gone
  (batch payload, counters, chord), and each of its tasks raised
  (``NotFound``, a missing payload), a traceback each. Here the run is checked
  first (one ``EXISTS``) and again when a task raises: if its record is gone,
  the task logs one line and returns ``None``.

A task without a ``run_id`` argument (the watchdog, the schedule tick) is not
retried: the next tick does its work.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any, Final

import redis
from celery import Task
from celery.exceptions import Ignore, Reject, Retry

from worker.context import context

log = logging.getLogger(__name__)

STORE_RETRY_SECONDS: Final = 2.0
"""How long a task waits before trying again when Redis could not be reached."""
UNREACHABLE: Final = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)


class RunTask(Task):  # type: ignore[misc]
    """The base of every task (``Celery(task_cls=...)``)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        run_id = self._run_id(args, kwargs)
        if run_id is None:
            return super().__call__(*args, **kwargs)
        try:
            if self._vanished(run_id):
                return None
            return super().__call__(*args, **kwargs)
        except (Retry, Ignore, Reject):
            raise
        except UNREACHABLE as exc:
            log.warning(
                "%s run %s: Redis unreachable (%s): again in %.0f s",
                self.name,
                run_id,
                type(exc).__name__,
                STORE_RETRY_SECONDS,
            )
            unreachable = exc
        except Exception:
            if self._gone_after_error(run_id):
                return None
            raise
        # Raised outside the except block, so the Retry does not carry the
        # traceback (and the frames holding a batch) as its context. No limit
        # (Celery reads ``max_retries=None`` as the task's own limit): this
        # one more try is always allowed.
        allowed = self.request.retries + 1
        raise self.retry(exc=unreachable, countdown=STORE_RETRY_SECONDS, max_retries=allowed)

    def _run_id(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
        try:
            bound = inspect.signature(self.run).bind_partial(*args, **kwargs)
        except TypeError:
            return None
        value = bound.arguments.get("run_id")
        return value if isinstance(value, str) else None

    def _gone_after_error(self, run_id: str) -> bool:
        try:
            return self._vanished(run_id)
        except redis.RedisError:
            return False  # the task's own error says more than this one

    def _vanished(self, run_id: str) -> bool:
        if context().runs.exists(run_id):
            return False
        log.warning(
            "%s: run %s is no longer in Redis (restarted without persistence?): "
            "nothing left to do, task dropped",
            self.name,
            run_id,
        )
        return True
