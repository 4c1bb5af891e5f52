"""Stored batches and their results: what the producer hands the workers.

A batch is stored once by the producer (``StoredBatch``: the profiles' JSON
array, and aligned with it their source rows, emails and digests) and read by
the worker that uploads it; its task message carries only the run id and the
batch number. Its ``BatchResult`` counts once however often the task runs
(``RECORD_BATCH``); payloads of batches that succeeded are deleted at once,
those of failed batches kept ``FAILED_PAYLOAD_TTL`` for a resume.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Final

import redis

from core.scripts import APPEND_JOB_ERRORS, RECORD_BATCH, REOPEN_BATCH
from core.store import text
from schemas import keys
from schemas.contracts import BATCH_RESULT, VERSION, BatchStatus, load
from schemas.keys import RunField

FAILED_PAYLOAD_TTL: Final = 7 * 24 * 3600


@dataclass(frozen=True)
class StoredBatch:
    run_id: str
    number: int
    profiles_json: bytes  # the bulk-import job's profiles, a JSON array
    rows: list[int]  # aligned with the profiles: each one's source row
    emails: list[str]  # ... the normalised email each profile carries
    digests: list[str]  # ... each profile's digest, for the export's state


@dataclass(frozen=True)
class BatchResult:
    """A batch's final outcome: small, it travels in the chord's callback."""

    run_id: str
    batch: int
    status: BatchStatus
    imported: int
    failed: int
    job_id: str | None = None
    error: str | None = None

    @property
    def submitted(self) -> int:
        return self.imported + self.failed

    def to_json(self) -> dict[str, Any]:
        """The ``BatchResult`` contract, validated."""
        data = {**asdict(self), "v": VERSION, "status": self.status.value}
        return load(BATCH_RESULT, {**data, "submitted": self.submitted})

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BatchResult:
        checked = load(BATCH_RESULT, data)
        return cls(
            run_id=checked["run_id"],
            batch=checked["batch"],
            status=BatchStatus(checked["status"]),
            imported=checked["imported"],
            failed=checked["failed"],
            job_id=checked["job_id"],
            error=checked["error"],
        )


def parts_without_result(client: redis.Redis, total: int, results_key: str) -> list[int]:
    """Of a run's parts 0..total-1 (batches, removal chunks), those with no
    entry yet in their results hash."""
    done = {int(text(n)) for n in client.hkeys(results_key)}
    return [n for n in range(total) if n not in done]


class BatchStore:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._record = client.register_script(RECORD_BATCH)
        self._reopen = client.register_script(REOPEN_BATCH)
        self._append_job_errors = client.register_script(APPEND_JOB_ERRORS)

    # -- payloads ------------------------------------------------------------------

    def store(self, batch: StoredBatch) -> None:
        self.redis.hset(
            keys.batch(batch.run_id, batch.number),
            mapping={
                "profiles": batch.profiles_json,
                "rows": json.dumps(batch.rows),
                "emails": json.dumps(batch.emails),
                "digests": json.dumps(batch.digests),
            },
        )

    def load(self, run_id: str, number: int) -> StoredBatch | None:
        """The stored batch, or None once deleted (its result was recorded)."""
        fields = ["profiles", "rows", "emails", "digests"]
        profiles, rows, emails, digests = self.redis.hmget(keys.batch(run_id, number), fields)
        if profiles is None or rows is None or emails is None or digests is None:
            return None
        data = profiles if isinstance(profiles, bytes) else profiles.encode()
        return StoredBatch(
            run_id, number, data, json.loads(rows), json.loads(emails), json.loads(digests)
        )

    def has_payload(self, run_id: str, number: int) -> bool:
        return bool(self.redis.exists(keys.batch(run_id, number)))

    def discard_all(self, run_id: str) -> None:
        """Delete stored batches of a run that will not send them (they hold emails)."""
        pattern = keys.batch(run_id, 0)[: -len("0")] + "*"
        for key in self.redis.scan_iter(match=pattern, count=1000):
            self.redis.delete(key)

    # -- a batch's progress (for idempotent redelivery) ----------------------------

    def state(self, run_id: str, number: int) -> dict[str, str]:
        raw = self.redis.hgetall(keys.batch_state(run_id, number))
        return {text(k): text(v) for k, v in raw.items()}

    def set_state(self, run_id: str, number: int, **fields: str | int) -> None:
        mapping: dict[Any, Any] = dict(fields)
        self.redis.hset(keys.batch_state(run_id, number), mapping=mapping)

    def add_job_errors(
        self,
        run_id: str,
        number: int,
        page: str | None,
        errors: Iterable[Mapping[str, Any]],
        next_url: str | None,
    ) -> bool:
        """The page ``page`` (None: the first) of the batch job's errors, and where
        the next page is (None: that was the last), once: a task handed back
        between two pages goes on from the page it reached, and of two
        deliveries of one batch only the first appends a page. False if it
        was not appended."""
        return bool(
            self._append_job_errors(
                keys=[
                    keys.batch_errors(run_id, number),
                    keys.batch_state(run_id, number),
                    keys.run_batch_results(run_id),
                ],
                args=[
                    number,
                    page or "",
                    next_url or "",
                    FAILED_PAYLOAD_TTL,
                    *(json.dumps(dict(e)) for e in errors),
                ],
            )
        )

    def job_errors(self, run_id: str, number: int) -> list[dict[str, Any]]:
        raw = self.redis.lrange(keys.batch_errors(run_id, number), 0, -1)
        return [json.loads(item) for item in raw]

    # -- results -------------------------------------------------------------------

    def record(self, result: BatchResult, failed_rows: Iterable[Mapping[str, Any]] = ()) -> bool:
        """Count a batch's final result once; False if it was counted already."""
        succeeded = result.status is BatchStatus.SUCCEEDED
        recorded = self._record(
            keys=[
                keys.run_batch_results(result.run_id),
                keys.run(result.run_id),
                keys.run_failed(result.run_id),
                keys.batch(result.run_id, result.batch),
                keys.batch_state(result.run_id, result.batch),
                keys.batch_errors(result.run_id, result.batch),
            ],
            args=[
                result.batch,
                json.dumps(result.to_json()),
                result.status.value,
                result.imported,
                result.failed,
                0 if succeeded else FAILED_PAYLOAD_TTL,
                *(json.dumps(dict(row)) for row in failed_rows),
            ],
        )
        return bool(recorded)

    def result(self, run_id: str, number: int) -> BatchResult | None:
        raw = self.redis.hget(keys.run_batch_results(run_id), str(number))
        return BatchResult.from_json(json.loads(raw)) if raw else None

    def missing(self, run_id: str) -> list[int]:
        """The run's batches without a result yet."""
        total = int(self.redis.hget(keys.run(run_id), RunField.BATCHES_TOTAL) or 0)
        return parts_without_result(self.redis, total, keys.run_batch_results(run_id))

    def unfinished(self, run_id: str) -> list[int]:
        """What a resume resends: batches whose recorded result is not ``succeeded``,
        and batches with no result whose rows are still stored (a resume whose
        batches could not be queued)."""
        raw = self.redis.hgetall(keys.run_batch_results(run_id))
        done = {int(text(n)): json.loads(r)["status"] for n, r in raw.items()}
        total = int(self.redis.hget(keys.run(run_id), RunField.BATCHES_TOTAL) or 0)
        return [
            n
            for n in range(total)
            if (n in done and done[n] != BatchStatus.SUCCEEDED)
            or (n not in done and self.has_payload(run_id, n))
        ]

    def reopen(self, run_id: str, numbers: Iterable[int]) -> None:
        """Take the batches' results back out of the run's counts (a resume)."""
        for number in numbers:
            self._reopen(
                keys=[
                    keys.run_batch_results(run_id),
                    keys.run(run_id),
                    keys.batch_state(run_id, number),
                    keys.batch(run_id, number),
                ],
                args=[number],
            )

    def in_flight(self, run_id: str) -> int:
        """Rows Klaviyo reports done in jobs it is still importing (progress only)."""
        missing = self.missing(run_id)
        if not missing:
            return 0
        pipe = self.redis.pipeline(transaction=False)
        for number in missing:
            pipe.hget(keys.batch_state(run_id, number), "completed")
        return sum(int(done) for done in pipe.execute() if done)
