"""Run records: the one place a run's counts and status are kept.

Producer and workers both write here, always through these functions, so the
accounting rules live in one module:

- rows_read = rejected + submitted (the producer, while reading);
- submitted = imported + failed (the workers, one batch result at a time);
- a batch result counts once however often its task runs (``RECORD_BATCH``);
- payloads of batches that succeeded are deleted at once; those of failed
  batches are kept ``FAILED_PAYLOAD_TTL`` seconds for a resume.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, Final

import redis

from core.errors import NotFound
from core.scripts import (
    APPEND_JOB_ERRORS,
    MARK_RUNNING,
    RECORD_BATCH,
    RECORD_REMOVAL,
    RELEASE_LOCK,
    REOPEN_BATCH,
)
from core.store import new_id, text
from schemas import keys
from schemas.contracts import FINAL_RUN_STATUSES, VERSION

FAILED_PAYLOAD_TTL: Final = 7 * 24 * 3600
REPORT_TTL: Final = 30 * 24 * 3600


LOCK_TTL: Final = 24 * 3600
"""A run lock outlives any healthy run; the watchdog ends stalled ones first."""

_COUNTERS = (
    "rows_read",
    "rejected",
    "submitted",
    "imported",
    "failed",
    "unchanged",
    "to_remove",
    "removed",
    "removal_failed",
)
_BATCH_COUNTERS = ("succeeded", "partially_succeeded", "failed", "cancelled")


class Runs:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._record_batch = client.register_script(RECORD_BATCH)
        self._release_lock = client.register_script(RELEASE_LOCK)
        self._reopen_batch = client.register_script(REOPEN_BATCH)
        self._record_removal = client.register_script(RECORD_REMOVAL)
        self._mark_running = client.register_script(MARK_RUNNING)
        self._append_job_errors = client.register_script(APPEND_JOB_ERRORS)

    # -- producer side -------------------------------------------------------------

    def create(
        self, export_id: str, source: str, requested_by: str, connection_id: str, list_id: str
    ) -> str:
        """A run snapshots where it sends (connection, list) when it starts."""
        run_id = new_id("r_")
        now = time.time()
        record: dict[Any, Any] = {
            "run_id": run_id,
            "export_id": export_id,
            "connection_id": connection_id,
            "list_id": list_id,
            "status": "pending",
            "message": "",
            "source": source,
            "requested_by": requested_by,
            "created_at": repr(now),
            "updated_at": repr(now),
            "batches_total": 0,
            "attempt": 1,
            **dict.fromkeys(_COUNTERS, 0),
        }
        pipe = self.redis.pipeline()
        pipe.hset(keys.run(run_id), mapping=record)
        pipe.zadd(keys.RUNS, {run_id: now})
        pipe.zadd(keys.export_runs(export_id), {run_id: now})
        pipe.execute()
        return run_id

    def lock_export(self, export_id: str, run_id: str) -> str:
        """Take the export's run lock for ``run_id``; returns the holder's run id."""
        key = keys.export_lock(export_id)
        if self.redis.set(key, run_id, nx=True, ex=LOCK_TTL):
            return run_id
        holder = self.redis.get(key)
        return text(holder) if holder else self.lock_export(export_id, run_id)

    def release_lock(self, export_id: str, run_id: str) -> bool:
        """Give up the export's run lock if ``run_id`` holds it."""
        return bool(self._release_lock(keys=[keys.export_lock(export_id)], args=[run_id]))

    def locks(self) -> list[tuple[str, str, float]]:
        """Every export run lock: (export id, the run id holding it, its age in s)."""
        found = []
        for key in self.redis.scan_iter(match=keys.EXPORT_LOCK_PATTERN, count=1000):
            pipe = self.redis.pipeline(transaction=False)
            pipe.get(key)
            pipe.ttl(key)
            holder, ttl = pipe.execute()
            if holder is not None:
                age = LOCK_TTL - int(ttl) if int(ttl) >= 0 else float(LOCK_TTL)
                found.append((keys.export_of_lock(text(key)), text(holder), float(age)))
        return found

    def discard(self, run_id: str) -> None:
        """Forget a run that never started (it was skipped)."""
        export_id = self.export_id(run_id)
        pipe = self.redis.pipeline()
        pipe.delete(keys.run(run_id))
        pipe.zrem(keys.RUNS, run_id)
        pipe.zrem(keys.export_runs(export_id), run_id)
        pipe.execute()

    def discard_batches(self, run_id: str) -> None:
        """Delete stored batches of a run that will not send them."""
        pattern = keys.batch(run_id, 0)[: -len("0")] + "*"
        for key in self.redis.scan_iter(match=pattern, count=1000):
            self.redis.delete(key)

    def unsent(self, run_id: str, count: int) -> None:
        """A run stopped before sending: drop its batches, count its rows failed."""
        self.discard_batches(run_id)
        self.redis.hset(keys.run(run_id), "failed", count)

    def add_rejections(self, run_id: str, rejections: Iterable[Mapping[str, Any]]) -> None:
        """Append rejected rows (each with row, field, reason, code) and count them.

        One ``RPUSH`` for all of them and one ``HINCRBY`` per reason code, in
        one round trip: a million-row segment can have tens of thousands of
        rejections, and a command per row cost the producer about a second.
        """
        items = list(rejections)
        if not items:
            return
        by_code = Counter(str(item["code"]) for item in items)
        pipe = self.redis.pipeline(transaction=False)
        pipe.rpush(keys.run_rejected(run_id), *[json.dumps(item) for item in items])
        for code, count in by_code.items():
            pipe.hincrby(keys.run_rejected_reasons(run_id), code, count)
        pipe.hincrby(keys.run(run_id), "rejected", len(items))
        pipe.execute()

    def store_batch(
        self,
        run_id: str,
        number: int,
        profiles_json: bytes,
        rows: list[int],
        emails: list[str],
        digests: list[str],
    ) -> None:
        """A batch as workers read it: the profiles' JSON array, and aligned
        with it their source rows, emails and digests (for the export's state)."""
        self.redis.hset(
            keys.batch(run_id, number),
            mapping={
                "profiles": profiles_json,
                "rows": json.dumps(rows),
                "emails": json.dumps(emails),
                "digests": json.dumps(digests),
            },
        )

    def mark_running(
        self, run_id: str, rows_read: int, submitted: int, batches: int, unchanged: int = 0
    ) -> bool:
        """The segment is read: the run uploads. False if it was ended meanwhile."""
        now = repr(time.time())
        fields: dict[str, Any] = {
            "status": "running",
            "rows_read": rows_read,
            "submitted": submitted,
            "batches_total": batches,
            "unchanged": unchanged,
            "started_at": now,
            "attempt_started_at": now,
            "updated_at": now,
        }
        pairs = [item for pair in fields.items() for item in pair]
        return bool(
            self._mark_running(keys=[keys.run(run_id), keys.RUNS_ACTIVE], args=[run_id, *pairs])
        )

    def set_progress(self, run_id: str, rows_read: int) -> None:
        """Rows read so far; also progress the watchdog sees for a pending run."""
        self.redis.hset(
            keys.run(run_id), mapping={"rows_read": rows_read, "updated_at": repr(time.time())}
        )

    # -- worker side ---------------------------------------------------------------

    def load_batch(
        self, run_id: str, number: int
    ) -> tuple[bytes, list[int], list[str], list[str]] | None:
        """(profiles JSON, rows, emails, digests), or None once deleted."""
        fields = ["profiles", "rows", "emails", "digests"]
        profiles, rows, emails, digests = self.redis.hmget(keys.batch(run_id, number), fields)
        if profiles is None or rows is None or emails is None or digests is None:
            return None
        data = profiles if isinstance(profiles, bytes) else profiles.encode()
        return data, json.loads(rows), json.loads(emails), json.loads(digests)

    # -- mirror runs ---------------------------------------------------------------

    def store_removals(self, run_id: str, emails: Iterable[str], chunk_size: int = 1000) -> int:
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
        pipe.hset(keys.run(run_id), mapping={"to_remove": count, "removal_chunks": chunks})
        pipe.execute()
        return count

    def removal_chunk(self, run_id: str, chunk: int) -> list[str] | None:
        key = keys.run_removals(run_id, chunk)
        if not self.redis.exists(key):
            return None
        return [text(e) for e in self.redis.lrange(key, 0, -1)]

    def removal_chunks(self, run_id: str) -> int:
        return int(self.redis.hget(keys.run(run_id), "removal_chunks") or 0)

    def record_removal(self, run_id: str, chunk: int, removed: int, failed: int) -> bool:
        """Count a removal chunk's result once; False if counted already."""
        return bool(
            self._record_removal(
                keys=[
                    keys.run_removal_results(run_id),
                    keys.run(run_id),
                    keys.run_removals(run_id, chunk),
                ],
                args=[chunk, json.dumps({"removed": removed, "failed": failed}), removed, failed],
            )
        )

    def set_stage(self, run_id: str, status: str, message: str = "") -> None:
        """A mirror run between its adds and its end: removing, or awaiting approval."""
        self.redis.hset(
            keys.run(run_id),
            mapping={"status": status, "message": message, "updated_at": repr(time.time())},
        )

    def removals_decided(self, run_id: str) -> bool:
        """The run's removals were rejected at the brake, or sent (any chunk has a result)."""
        return bool(
            self.redis.hexists(keys.run(run_id), "removals_rejected")
            or self.redis.hlen(keys.run_removal_results(run_id))
        )

    def brake_reason(self, run_id: str) -> str | None:
        raw = self.redis.hget(keys.run(run_id), "brake_reason")
        return text(raw) if raw else None

    def record_batch(
        self,
        run_id: str,
        result: Mapping[str, Any],
        failed_rows: Iterable[Mapping[str, Any]] = (),
    ) -> bool:
        """Count a batch's final result once; False if it was counted already."""
        number = int(result["batch"])
        ttl = 0 if result["status"] == "succeeded" else FAILED_PAYLOAD_TTL
        recorded = self._record_batch(
            keys=[
                keys.run_batch_results(run_id),
                keys.run(run_id),
                keys.run_failed(run_id),
                keys.batch(run_id, number),
                keys.batch_state(run_id, number),
                keys.batch_errors(run_id, number),
            ],
            args=[
                number,
                json.dumps(dict(result)),
                result["status"],
                result["imported"],
                result["failed"],
                ttl,
                *(json.dumps(dict(row)) for row in failed_rows),
            ],
        )
        return bool(recorded)

    def batch_result(self, run_id: str, number: int) -> dict[str, Any] | None:
        raw = self.redis.hget(keys.run_batch_results(run_id), str(number))
        return json.loads(raw) if raw else None

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

    def batch_state(self, run_id: str, number: int) -> dict[str, str]:
        raw = self.redis.hgetall(keys.batch_state(run_id, number))
        return {text(k): text(v) for k, v in raw.items()}

    def set_batch_state(self, run_id: str, number: int, **fields: str | int) -> None:
        mapping: dict[Any, Any] = dict(fields)
        self.redis.hset(keys.batch_state(run_id, number), mapping=mapping)

    def abort_reason(self, run_id: str) -> str | None:
        raw = self.redis.hget(keys.run(run_id), "abort_reason")
        return text(raw) if raw else None

    def export_id(self, run_id: str) -> str:
        raw = self.redis.hget(keys.run(run_id), "export_id")
        if raw is None:
            raise NotFound(f"no run {run_id!r}")
        return text(raw)

    def target(self, run_id: str) -> tuple[str, str]:
        """(connection id, list id) this run sends to."""
        connection_id, list_id = self.redis.hmget(keys.run(run_id), ["connection_id", "list_id"])
        if connection_id is None or list_id is None:
            raise NotFound(f"no run {run_id!r}")
        return text(connection_id), text(list_id)

    def is_cancelled(self, run_id: str) -> bool:
        return self.redis.hget(keys.run(run_id), "cancelled") is not None

    def abort(self, run_id: str, reason: str, *, cancel: bool = False) -> None:
        """Stop sending this run's remaining batches; the first reason wins."""
        self.redis.hsetnx(keys.run(run_id), "abort_reason", reason)
        if cancel:
            self.redis.hsetnx(keys.run(run_id), "cancelled", "1")

    # -- both ----------------------------------------------------------------------

    def finish(
        self, run_id: str, status: str | None = None, message: str | None = None
    ) -> dict[str, Any]:
        """Set the final status (derived from the counts unless given)."""
        current = self.status(run_id)
        if current["status"] in FINAL_RUN_STATUSES:
            return current
        final, why = (status, message or "") if status else _derive(current, self._raw(run_id))
        pipe = self.redis.pipeline()
        pipe.hset(
            keys.run(run_id),
            mapping={"status": final, "message": why, "finished_at": repr(time.time())},
        )
        for key in (keys.run_rejected(run_id), keys.run_failed(run_id)):
            pipe.expire(key, REPORT_TTL)
        pipe.srem(keys.RUNS_ACTIVE, run_id)
        pipe.execute()
        self.release_lock(current["export_id"], run_id)
        return self.status(run_id)

    def _raw(self, run_id: str) -> dict[str, str]:
        raw = {text(k): text(v) for k, v in self.redis.hgetall(keys.run(run_id)).items()}
        if not raw:
            raise NotFound(f"no run {run_id!r}")
        return raw

    def status(self, run_id: str) -> dict[str, Any]:
        """The run as the ``RunStatus`` contract describes it."""
        raw = self._raw(run_id)
        reasons = self.redis.hgetall(keys.run_rejected_reasons(run_id))
        counts: dict[str, Any] = {name: int(raw.get(name, 0)) for name in _COUNTERS}
        counts["rejected_by_reason"] = {text(k): int(v) for k, v in reasons.items()}
        batches = {name: int(raw.get(f"batches_{name}", 0)) for name in _BATCH_COUNTERS}
        batches["total"] = int(raw.get("batches_total", 0))
        batches["done"] = int(raw.get("batches_done", 0))
        return {
            "v": VERSION,
            "run_id": run_id,
            "export_id": raw["export_id"],
            "status": raw["status"],
            "message": raw.get("message", ""),
            "created_at": float(raw["created_at"]),
            "started_at": float(raw["started_at"]) if raw.get("started_at") else None,
            "finished_at": float(raw["finished_at"]) if raw.get("finished_at") else None,
            "attempt_started_at": (
                float(raw["attempt_started_at"]) if raw.get("attempt_started_at") else None
            ),
            "attempt": int(raw.get("attempt", 1)),
            "counts": counts,
            "batches": batches,
        }

    def recent(self, export_id: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        key = keys.export_runs(export_id) if export_id else keys.RUNS
        ids = [text(i) for i in self.redis.zrevrange(key, 0, limit - 1)]  # type: ignore[arg-type]
        return [self.status(i) for i in ids if self.redis.exists(keys.run(i))]

    def unfinished_batches(self, run_id: str) -> list[int]:
        """What a resume resends: batches whose recorded result is not ``succeeded``,
        and batches with no result whose rows are still stored (a resume whose
        batches could not be queued)."""
        raw = self.redis.hgetall(keys.run_batch_results(run_id))
        done = {int(text(n)): json.loads(r)["status"] for n, r in raw.items()}
        total = int(self.redis.hget(keys.run(run_id), "batches_total") or 0)
        return [
            n
            for n in range(total)
            if (n in done and done[n] != "succeeded")
            or (n not in done and self.has_payload(run_id, n))
        ]

    def reopen(self, run_id: str, numbers: list[int]) -> None:
        """Make a final run send ``numbers`` again, as a new attempt of the same run.

        Their results leave the counts and their failed rows leave the report;
        the run is ``running`` again, with ``attempt`` one higher.
        """
        for number in numbers:
            self._reopen_batch(
                keys=[
                    keys.run_batch_results(run_id),
                    keys.run(run_id),
                    keys.batch_state(run_id, number),
                    keys.batch(run_id, number),
                ],
                args=[number],
            )
        wanted = set(numbers)
        failed_key = keys.run_failed(run_id)
        kept = [
            r
            for r in self.redis.lrange(failed_key, 0, -1)
            if json.loads(r).get("batch") not in wanted
        ]
        now = repr(time.time())
        pipe = self.redis.pipeline()
        pipe.delete(failed_key)
        if kept:
            pipe.rpush(failed_key, *kept)
        pipe.hdel(keys.run(run_id), "finished_at", "abort_reason", "cancelled")
        pipe.hset(
            keys.run(run_id),
            mapping={
                "status": "running",
                "message": "",
                "updated_at": now,
                "attempt_started_at": now,
            },
        )
        pipe.hincrby(keys.run(run_id), "attempt", 1)
        pipe.sadd(keys.RUNS_ACTIVE, run_id)
        pipe.execute()

    def has_payload(self, run_id: str, number: int) -> bool:
        return bool(self.redis.exists(keys.batch(run_id, number)))

    def active(self) -> list[str]:
        """Runs whose batches are uploading, oldest first."""
        return sorted(text(m) for m in self.redis.smembers(keys.RUNS_ACTIVE))

    def updated_at(self, run_id: str) -> float:
        """When the run last made progress (started, or a batch finished)."""
        raw = self.redis.hget(keys.run(run_id), "updated_at")
        return float(text(raw)) if raw else 0.0

    def in_flight(self, run_id: str) -> int:
        """Rows Klaviyo reports done in jobs it is still importing (progress only)."""
        missing = self.missing_batches(run_id)
        if not missing:
            return 0
        pipe = self.redis.pipeline(transaction=False)
        for number in missing:
            pipe.hget(keys.batch_state(run_id, number), "completed")
        return sum(int(done) for done in pipe.execute() if done)

    def missing_batches(self, run_id: str) -> list[int]:
        return self._missing(run_id, "batches_total", keys.run_batch_results(run_id))

    def missing_removal_chunks(self, run_id: str) -> list[int]:
        """A removing run's chunks without a result yet."""
        return self._missing(run_id, "removal_chunks", keys.run_removal_results(run_id))

    def _missing(self, run_id: str, total_field: str, results_key: str) -> list[int]:
        total = int(self.redis.hget(keys.run(run_id), total_field) or 0)
        done = {int(text(n)) for n in self.redis.hkeys(results_key)}
        return [n for n in range(total) if n not in done]

    def touch(self, run_id: str) -> None:
        self.redis.hset(keys.run(run_id), "updated_at", repr(time.time()))

    def count_resend(self, run_id: str, stage: str = "running") -> int:
        """One more watchdog resend round for the run's ``stage``; how many so far."""
        return int(self.redis.hincrby(keys.run(run_id), f"watchdog_resends:{stage}", 1))

    def rejected_rows(self, run_id: str) -> list[dict[str, Any]]:
        return [json.loads(r) for r in self.redis.lrange(keys.run_rejected(run_id), 0, -1)]

    def failed_rows(self, run_id: str) -> list[dict[str, Any]]:
        return [json.loads(r) for r in self.redis.lrange(keys.run_failed(run_id), 0, -1)]


def _derive(current: Mapping[str, Any], raw: Mapping[str, str]) -> tuple[str, str]:
    counts = current["counts"]
    if raw.get("cancelled") == "1":
        return "cancelled", raw.get("abort_reason", "cancelled")
    if raw.get("abort_reason"):
        return "failed", raw["abort_reason"]
    if raw.get("removals_rejected"):
        adds = f"{counts['imported']:,} imported, {counts['failed']:,} failed at Klaviyo"
        return "rejected", (
            f"removals rejected by {raw['removals_rejected']}: the list keeps all "
            f"{counts['to_remove']:,} members; adds done ({adds})"
        )
    if counts["submitted"] == 0 and counts["unchanged"] == 0:
        if counts["removed"] or counts["to_remove"]:
            return "succeeded", f"removed {counts['removed']} members that left the segment"
        if counts["rows_read"] == 0:
            return "succeeded", "the segment is empty"
        return "failed", "no row passed the checks: see `klaviyo-export rejected`"
    if counts["removal_failed"]:
        return (
            "partially_succeeded",
            f"{counts['removal_failed']} of {counts['to_remove']} removals from the list failed",
        )
    if counts["imported"] == 0 and counts["unchanged"] == 0:
        return "failed", "Klaviyo imported no profile: see `klaviyo-export rejected`"
    if counts["failed"]:
        return (
            "partially_succeeded",
            f"Klaviyo failed {counts['failed']} of {counts['submitted']} profiles",
        )
    return "succeeded", ""
