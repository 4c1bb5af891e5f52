"""Export run locks: runs of one export never overlap.

A lock is a string key per export holding the id of the run in progress,
with a TTL that outlives any healthy run; the watchdog frees the locks of
runs that ended or died first (``worker.watchdog.clear_locks``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import redis

from core.scripts import RELEASE_LOCK
from core.store import text
from schemas import keys

LOCK_TTL: Final = 24 * 3600
"""A run lock outlives any healthy run; the watchdog ends stalled ones first."""


@dataclass(frozen=True)
class Lock:
    export_id: str
    run_id: str  # the run holding it
    age: float  # seconds since it was taken


class ExportLocks:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._release = client.register_script(RELEASE_LOCK)

    def take(self, export_id: str, run_id: str) -> str:
        """Take the export's run lock for ``run_id``; returns the holder's run id."""
        key = keys.export_lock(export_id)
        if self.redis.set(key, run_id, nx=True, ex=LOCK_TTL):
            return run_id
        holder = self.redis.get(key)
        return text(holder) if holder else self.take(export_id, run_id)

    def holder(self, export_id: str) -> str | None:
        """The id of the export's run in progress, if any."""
        raw = self.redis.get(keys.export_lock(export_id))
        return text(raw) if raw is not None else None

    def release(self, export_id: str, run_id: str) -> bool:
        """Give up the export's run lock if ``run_id`` holds it."""
        return bool(self._release(keys=[keys.export_lock(export_id)], args=[run_id]))

    def all(self) -> list[Lock]:
        """Every export run lock."""
        found = []
        for key in self.redis.scan_iter(match=keys.EXPORT_LOCK_PATTERN, count=1000):
            pipe = self.redis.pipeline(transaction=False)
            pipe.get(key)
            pipe.ttl(key)
            holder, ttl = pipe.execute()
            if holder is not None:
                age = LOCK_TTL - int(ttl) if int(ttl) >= 0 else float(LOCK_TTL)
                found.append(Lock(keys.export_of_lock(text(key)), text(holder), float(age)))
        return found
