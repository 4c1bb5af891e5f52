"""One clock for every timing decision, so tests can replace it.

Windows, job progress and timestamps all read :meth:`Clock.now` (monotonic
seconds, immune to wall-clock jumps); :meth:`Clock.iso` turns such a reading
into the ISO-8601 text Klaviyo uses (``2026-11-22T10:15:00+00:00``, whole
seconds). Unit tests use :class:`ManualClock`, whose time only moves when told.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime


class Clock:
    """The real clock."""

    def __init__(self) -> None:
        self._wall_offset = time.time() - time.monotonic()

    def now(self) -> float:
        """Monotonic seconds."""
        return time.monotonic()

    def epoch(self, instant: float) -> float:
        """Unix time of a :meth:`now` reading."""
        return instant + self._wall_offset

    def iso(self, instant: float) -> str:
        """Klaviyo-style UTC timestamp of a :meth:`now` reading."""
        return datetime.fromtimestamp(self.epoch(instant), UTC).isoformat(timespec="seconds")


class ManualClock(Clock):
    """A clock for tests: starts at ``start`` and moves only by :meth:`advance`."""

    def __init__(self, start: float = 1_000.0) -> None:
        super().__init__()
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds
