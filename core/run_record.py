"""The run record: one Redis hash a run (fields: ``schemas.keys.RunField``) and
the indexes that find runs (all runs, an export's runs, the active ones).

Reading gives a typed ``Run``; its JSON form is the ``RunStatus`` contract,
checked against the schema when it is built. The status field is written by
``core.lifecycle`` only: this module stores what the lifecycle decides.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields
from typing import Any, Final

import redis

from core.errors import NotFound
from core.store import new_id, text
from schemas import keys
from schemas.contracts import RUN_STATUS, VERSION, BatchStatus, RunStatus, load
from schemas.keys import RunField

ROW_COUNTERS: Final = (
    RunField.ROWS_READ,
    RunField.REJECTED,
    RunField.SUBMITTED,
    RunField.IMPORTED,
    RunField.FAILED,
    RunField.UNCHANGED,
    RunField.TO_REMOVE,
    RunField.REMOVED,
    RunField.REMOVAL_FAILED,
)


@dataclass(frozen=True)
class Counts:
    rows_read: int = 0
    rejected: int = 0
    rejected_by_reason: dict[str, int] | None = None
    submitted: int = 0
    imported: int = 0
    failed: int = 0
    unchanged: int = 0  # delta runs: rows not sent, as imported before
    to_remove: int = 0  # mirror runs: members no longer in the segment
    removed: int = 0
    removal_failed: int = 0


@dataclass(frozen=True)
class BatchCounts:
    total: int = 0
    done: int = 0
    succeeded: int = 0
    partially_succeeded: int = 0
    failed: int = 0
    cancelled: int = 0


@dataclass(frozen=True)
class Run:
    """A run as ``status`` shows it."""

    run_id: str
    export_id: str
    status: RunStatus
    message: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    attempt_started_at: float | None  # this attempt's start (a resume starts another)
    attempt: int
    counts: Counts
    batches: BatchCounts

    @property
    def final(self) -> bool:
        return self.status.final

    @property
    def duration_s(self) -> float | None:
        """How long the run took; a resume's duration is its own attempt's."""
        if self.finished_at is None:
            return None
        began = self.created_at
        if self.attempt > 1 and self.attempt_started_at:
            began = self.attempt_started_at
        return round(self.finished_at - began, 3)

    def summary(self) -> dict[str, Any]:
        """What every front door shows of a run (``status --json``, ``GET /api/v1/runs/ID``).

        Built from the typed record directly (a status poll is the API's most
        frequent request); ``to_json`` is the same counts checked by the contract,
        and a unit test holds the two together.
        """
        counts = {f.name: getattr(self.counts, f.name) for f in fields(Counts)}
        counts["rejected_by_reason"] = dict(self.counts.rejected_by_reason or {})
        return {
            "run_id": self.run_id,
            "export_id": self.export_id,
            "status": self.status.value,
            "message": self.message,
            "counts": counts,
            "batches": {f.name: getattr(self.batches, f.name) for f in fields(BatchCounts)},
            "attempt": self.attempt,
            "duration_s": self.duration_s,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
        }

    def to_json(self) -> dict[str, Any]:
        """The ``RunStatus`` contract (``status --json``), validated."""
        data = asdict(self)
        data["v"] = VERSION
        data["status"] = self.status.value
        data["counts"]["rejected_by_reason"] = dict(self.counts.rejected_by_reason or {})
        return load(RUN_STATUS, data)


def _float(raw: dict[str, str], name: str) -> float | None:
    value = raw.get(name)
    return float(value) if value else None


class RunRecords:
    """The run hashes and run indexes; every other module goes through here."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def insert(self, *, status: RunStatus, export_id: str, **fields: str) -> str:
        """A new run record with zeroed counters; returns its id (``core.lifecycle``)."""
        run_id = new_id("r_")
        now = time.time()
        record: dict[Any, Any] = {
            RunField.RUN_ID: run_id,
            RunField.EXPORT_ID: export_id,
            RunField.STATUS: status.value,
            RunField.MESSAGE: "",
            RunField.CREATED_AT: repr(now),
            RunField.UPDATED_AT: repr(now),
            RunField.BATCHES_TOTAL: 0,
            RunField.ATTEMPT: 1,
            **fields,
            **dict.fromkeys(ROW_COUNTERS, 0),
        }
        pipe = self.redis.pipeline()
        pipe.hset(keys.run(run_id), mapping=record)
        pipe.zadd(keys.RUNS, {run_id: now})
        pipe.zadd(keys.export_runs(export_id), {run_id: now})
        pipe.execute()
        return run_id

    def delete(self, run_id: str) -> None:
        """Forget a run that never started (it was skipped)."""
        export_id = self.export_id(run_id)
        pipe = self.redis.pipeline()
        pipe.delete(keys.run(run_id))
        pipe.zrem(keys.RUNS, run_id)
        pipe.zrem(keys.export_runs(export_id), run_id)
        pipe.execute()

    def exists(self, run_id: str) -> bool:
        return bool(self.redis.exists(keys.run(run_id)))

    def raw(self, run_id: str) -> dict[str, str]:
        raw = {text(k): text(v) for k, v in self.redis.hgetall(keys.run(run_id)).items()}
        if not raw:
            raise NotFound(f"no run {run_id!r}")
        return raw

    def get(self, run_id: str) -> Run:
        """The run and its rejection reasons, read in one round trip (a status
        poll is the most frequent request the HTTP API answers)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(keys.run(run_id))
        pipe.hgetall(keys.run_rejected_reasons(run_id))
        found, reasons = pipe.execute()
        raw = {text(k): text(v) for k, v in found.items()}
        if not raw:
            raise NotFound(f"no run {run_id!r}")
        counts = Counts(
            **{name: int(raw.get(name, 0)) for name in ROW_COUNTERS},
            rejected_by_reason={text(k): int(v) for k, v in reasons.items()},
        )
        prefix = RunField.BATCHES_PREFIX
        batches = BatchCounts(
            total=int(raw.get(RunField.BATCHES_TOTAL, 0)),
            done=int(raw.get(RunField.BATCHES_DONE, 0)),
            **{s.value: int(raw.get(prefix + s.value, 0)) for s in BatchStatus},
        )
        return Run(
            run_id=run_id,
            export_id=raw[RunField.EXPORT_ID],
            status=RunStatus(raw[RunField.STATUS]),
            message=raw.get(RunField.MESSAGE, ""),
            created_at=float(raw[RunField.CREATED_AT]),
            started_at=_float(raw, RunField.STARTED_AT),
            finished_at=_float(raw, RunField.FINISHED_AT),
            attempt_started_at=_float(raw, RunField.ATTEMPT_STARTED_AT),
            attempt=int(raw.get(RunField.ATTEMPT, 1)),
            counts=counts,
            batches=batches,
        )

    def status(self, run_id: str) -> RunStatus:
        raw = self.redis.hget(keys.run(run_id), RunField.STATUS)
        if raw is None:
            raise NotFound(f"no run {run_id!r}")
        return RunStatus(text(raw))

    def recent(self, export_id: str | None = None, limit: int = 50) -> list[Run]:
        key = keys.export_runs(export_id) if export_id else keys.RUNS
        ids = [text(i) for i in self.redis.zrevrange(key, 0, limit - 1)]  # type: ignore[arg-type]
        return [self.get(i) for i in ids if self.redis.exists(keys.run(i))]

    def active(self) -> list[str]:
        """Runs whose parts are uploading or removing, oldest first."""
        return sorted(text(m) for m in self.redis.smembers(keys.RUNS_ACTIVE))

    def export_id(self, run_id: str) -> str:
        raw = self.redis.hget(keys.run(run_id), RunField.EXPORT_ID)
        if raw is None:
            raise NotFound(f"no run {run_id!r}")
        return text(raw)

    def target(self, run_id: str) -> tuple[str, str]:
        """(connection id, list id) this run sends to."""
        connection_id, list_id = self.redis.hmget(
            keys.run(run_id), [RunField.CONNECTION_ID, RunField.LIST_ID]
        )
        if connection_id is None or list_id is None:
            raise NotFound(f"no run {run_id!r}")
        return text(connection_id), text(list_id)

    def field(self, run_id: str, name: str) -> str | None:
        raw = self.redis.hget(keys.run(run_id), name)
        return text(raw) if raw is not None else None

    def set_fields(self, run_id: str, **fields: str | int) -> None:
        """Facts about the run (never its status: ``core.lifecycle`` writes that)."""
        if RunField.STATUS in fields:
            raise ValueError("a run's status changes through core.lifecycle")
        mapping: dict[Any, Any] = dict(fields)
        self.redis.hset(keys.run(run_id), mapping=mapping)

    def touch(self, run_id: str) -> None:
        """Progress the watchdog sees."""
        self.redis.hset(keys.run(run_id), RunField.UPDATED_AT, repr(time.time()))

    def updated_at(self, run_id: str) -> float:
        """When the run last made progress (started, or a part finished)."""
        raw = self.field(run_id, RunField.UPDATED_AT)
        return float(raw) if raw else 0.0

    def set_progress(self, run_id: str, rows_read: int) -> None:
        """Rows read so far; also progress the watchdog sees for a pending run."""
        self.redis.hset(
            keys.run(run_id),
            mapping={RunField.ROWS_READ: rows_read, RunField.UPDATED_AT: repr(time.time())},
        )

    def abort_reason(self, run_id: str) -> str | None:
        return self.field(run_id, RunField.ABORT_REASON) or None

    def is_cancelled(self, run_id: str) -> bool:
        return self.field(run_id, RunField.CANCELLED) is not None

    def brake_reason(self, run_id: str) -> str | None:
        return self.field(run_id, RunField.BRAKE_REASON) or None

    def count_resend(self, run_id: str, stage: str) -> int:
        """One more watchdog resend round for the run's ``stage``; how many so far."""
        field = RunField.WATCHDOG_RESENDS_PREFIX + stage
        return int(self.redis.hincrby(keys.run(run_id), field, 1))

    def count_removal_attempt(self, run_id: str, chunk: int) -> int:
        field = RunField.REMOVAL_ATTEMPTS_PREFIX + str(chunk)
        return int(self.redis.hincrby(keys.run(run_id), field, 1))

    def removal_attempts(self, run_id: str, chunk: int) -> int:
        return int(self.field(run_id, RunField.REMOVAL_ATTEMPTS_PREFIX + str(chunk)) or 0)
