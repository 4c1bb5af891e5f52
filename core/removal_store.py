"""A mirror run's removals: the emails of members that left the segment, in
chunks of at most ``REMOVAL_CHUNK``, and each chunk's result, counted once."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Final

import redis

from core.batch_store import parts_without_result
from core.scripts import RECORD_REMOVAL
from core.store import text
from schemas import keys
from schemas.keys import RunField

REMOVAL_CHUNK: Final = 1000
"""Emails per removal task: Klaviyo's limit on one list-relationship delete."""


@dataclass(frozen=True)
class RemovalResult:
    """What one removal task did; ``outcome`` says why when nothing was removed."""

    run_id: str
    chunk: int
    outcome: str  # removed, done (counted already), not_sent, connection_removed, lost, ...
    removed: int = 0
    failed: int = 0

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = asdict(self)
        data["status"] = data.pop("outcome")
        return data


class RemovalStore:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._record = client.register_script(RECORD_REMOVAL)

    def store(self, run_id: str, emails: Iterable[str], chunk_size: int = REMOVAL_CHUNK) -> int:
        """Store the emails a mirror run removes, in chunks; returns how many."""
        count = chunks = 0
        chunk: list[str] = []
        pipe = self.redis.pipeline(transaction=False)
        for email in emails:
            chunk.append(email)
            count += 1
            if len(chunk) == chunk_size:
                pipe.rpush(keys.run_removals(run_id, chunks), *chunk)
                chunks, chunk = chunks + 1, []
        if chunk:
            pipe.rpush(keys.run_removals(run_id, chunks), *chunk)
            chunks += 1
        pipe.hset(
            keys.run(run_id),
            mapping={RunField.TO_REMOVE: count, RunField.REMOVAL_CHUNKS: chunks},
        )
        pipe.execute()
        return count

    def chunks(self, run_id: str) -> int:
        return int(self.redis.hget(keys.run(run_id), RunField.REMOVAL_CHUNKS) or 0)

    def chunk(self, run_id: str, chunk: int) -> list[str] | None:
        """The chunk's emails; None once its result is recorded (or rejected)."""
        key = keys.run_removals(run_id, chunk)
        if not self.redis.exists(key):
            return None
        return [text(e) for e in self.redis.lrange(key, 0, -1)]

    def drop(self, run_id: str) -> None:
        """Forget the emails (the removals were rejected at the brake)."""
        chunks = [keys.run_removals(run_id, c) for c in range(self.chunks(run_id))]
        if chunks:
            self.redis.delete(*chunks)

    def record(self, result: RemovalResult) -> bool:
        """Count a chunk's result once; False if counted already."""
        body = json.dumps({"removed": result.removed, "failed": result.failed})
        return bool(
            self._record(
                keys=[
                    keys.run_removal_results(result.run_id),
                    keys.run(result.run_id),
                    keys.run_removals(result.run_id, result.chunk),
                ],
                args=[result.chunk, body, result.removed, result.failed],
            )
        )

    def sent(self, run_id: str) -> bool:
        """Any chunk has a result."""
        return bool(self.redis.hlen(keys.run_removal_results(run_id)))

    def missing(self, run_id: str) -> list[int]:
        """A removing run's chunks without a result yet."""
        return parts_without_result(
            self.redis, self.chunks(run_id), keys.run_removal_results(run_id)
        )
