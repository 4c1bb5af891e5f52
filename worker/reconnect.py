"""One log line when a worker's broker connection comes back, saying what it found.

Celery reconnects by itself (``broker_connection_retry``) and logs each
attempt; this consumer step adds the line an operator looks for afterwards:
how long the broker was away, and whether Redis came back empty (restarted
without persistence), in which case the runs that were in progress are gone
(``klaviyo-export status`` says so for each).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from celery import bootsteps

from core.broker import StoreMark
from worker.context import context

log = logging.getLogger(__name__)


class BrokerBack(bootsteps.StartStopStep):  # type: ignore[misc]
    """Runs each time the consumer (re)connects; ``stop`` marks the loss."""

    requires = ("celery.worker.consumer.connection:Connection",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.lost_at: float | None = None
        self.mark: StoreMark | None = None

    def start(self, parent: Any) -> None:
        emptied = self._store_emptied()
        if self.lost_at is None:
            return
        away = time.monotonic() - self.lost_at
        self.lost_at = None
        if emptied:
            log.warning(
                "broker connection back after %.0f s: consuming again; Redis came back "
                "empty, so the runs that were in progress are gone",
                away,
            )
        else:
            log.warning("broker connection back after %.0f s: consuming again", away)

    def stop(self, parent: Any) -> None:
        self.lost_at = time.monotonic()

    def _store_emptied(self) -> bool:
        try:
            if self.mark is None:
                self.mark = StoreMark(context().redis)
            return self.mark.check()
        except redis.RedisError:
            return False  # the store is not the broker, and it is away: nothing to say
