"""The run lifecycle: every change of a run's status happens here.

    pending --segment read--> running --adds done--> final
                                 | (mirror run with removals)
                                 +--over the brake--> awaiting_approval --approve--> removing
                                 |                                      --reject---> rejected
                                 +--under the brake--> removing --chunks done--> final
    final (failed, partially_succeeded, rejected) --resume--> running (attempt + 1)
    not final --cancel (export or connection removed)--> cancelled, at its next step

The finals are ``succeeded``, ``partially_succeeded``, ``failed``,
``cancelled`` and ``rejected``; a final run's status is never written again
(but by a resume, which makes it a new attempt). ``finish`` derives the final
status from the counts unless it is given. The producer (starting, resuming,
approving), the workers (the chords' callbacks) and the watchdog (lost
callbacks, dead producers) all call these functions, and so will the HTTP API.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any, Final

from core.batch_store import BatchStore
from core.dispatch import Dispatcher
from core.errors import ExportError
from core.locks import ExportLocks
from core.removal_store import RemovalStore
from core.reports import Reports
from core.run_record import Run, RunRecords
from core.scripts import MARK_RUNNING
from schemas import keys
from schemas.contracts import FINAL_RUN_STATUSES, RunStatus
from schemas.keys import RunField

RESUMABLE: Final = frozenset({RunStatus.FAILED, RunStatus.PARTIALLY_SUCCEEDED, RunStatus.REJECTED})
"""A rejected mirror run may still have adds that failed; its removals stay rejected."""

STAGES: Final = {
    RunStatus.AWAITING_APPROVAL: frozenset({RunStatus.RUNNING}),
    RunStatus.REMOVING: frozenset({RunStatus.RUNNING, RunStatus.AWAITING_APPROVAL}),
}
"""The stages between a run's adds and its end, and where each is entered from."""


class Lifecycle:
    def __init__(
        self,
        records: RunRecords,
        batches: BatchStore,
        removals: RemovalStore,
        reports: Reports,
        locks: ExportLocks,
        dispatcher: Dispatcher,
    ) -> None:
        self.records = records
        self.batches = batches
        self.removals = removals
        self.reports = reports
        self.locks = locks
        self.dispatcher = dispatcher
        self.redis = records.redis
        self._mark_running = self.redis.register_script(MARK_RUNNING)

    # -- start ---------------------------------------------------------------------

    def create(
        self, export_id: str, source: str, requested_by: str, connection_id: str, list_id: str
    ) -> str:
        """A ``pending`` run; it snapshots where it sends (connection, list)."""
        return self.records.insert(
            status=RunStatus.PENDING,
            export_id=export_id,
            source=source,
            requested_by=requested_by,
            connection_id=connection_id,
            list_id=list_id,
        )

    def begin_upload(
        self, run_id: str, rows_read: int, submitted: int, batches: int, unchanged: int = 0
    ) -> bool:
        """pending -> running: the segment is read. False if the run was ended meanwhile."""
        now = repr(time.time())
        fields: dict[str, Any] = {
            RunField.STATUS: RunStatus.RUNNING.value,
            RunField.ROWS_READ: rows_read,
            RunField.SUBMITTED: submitted,
            RunField.BATCHES_TOTAL: batches,
            RunField.UNCHANGED: unchanged,
            RunField.STARTED_AT: now,
            RunField.ATTEMPT_STARTED_AT: now,
            RunField.UPDATED_AT: now,
        }
        pairs = [item for pair in fields.items() for item in pair]
        return bool(
            self._mark_running(keys=[keys.run(run_id), keys.RUNS_ACTIVE], args=[run_id, *pairs])
        )

    def launch(self, run_id: str, batches: int) -> RunStatus:
        """Send a running run's batches; with none (a delta run with nothing new),
        go straight to what follows its adds."""
        if batches == 0:
            return self.after_adds(run_id)
        self.dispatcher.launch_uploads(run_id, range(batches))
        return RunStatus.RUNNING

    # -- after the adds: the end, or a mirror run's removals -----------------------

    def after_adds(self, run_id: str) -> RunStatus:
        """The run's adds are done: finish it, hold it at the brake, or start removing."""
        chunks = self.removals.chunks(run_id)
        # A resumed run decided its removals in its first attempt (removed, or
        # rejected at the brake): resending its failed adds must not ask again.
        decided = self.removals_decided(run_id)
        if chunks == 0 or decided or self.records.abort_reason(run_id) is not None:
            return self.finish(run_id).status
        reason = self.records.brake_reason(run_id)
        if reason is not None:
            self._move(run_id, RunStatus.AWAITING_APPROVAL, reason)
            return RunStatus.AWAITING_APPROVAL
        self._move(run_id, RunStatus.REMOVING)
        self.dispatcher.launch_removals(run_id, chunks)
        return RunStatus.REMOVING

    def removals_decided(self, run_id: str) -> bool:
        """The run's removals were rejected at the brake, or sent (a chunk has a result)."""
        rejected = self.records.field(run_id, RunField.REMOVALS_REJECTED) is not None
        return rejected or self.removals.sent(run_id)

    def held(self, run_id: str) -> Run:
        """The run, which must be waiting at the brake."""
        run = self.records.get(run_id)
        if run.status is not RunStatus.AWAITING_APPROVAL:
            raise ExportError(f"run {run_id} is {run.status}, not awaiting approval")
        return run

    def approve(self, run_id: str, by: str) -> int:
        """awaiting_approval -> removing; returns how many members will be removed."""
        run = self.held(run_id)
        self._move(run_id, RunStatus.REMOVING, f"removals approved by {by}")
        self.dispatcher.launch_removals(run_id, self.removals.chunks(run_id))
        return run.counts.to_remove

    def reject(self, run_id: str, by: str) -> Run:
        """awaiting_approval -> rejected: nothing is removed; the list keeps every member."""
        self.held(run_id)
        self.removals.drop(run_id)
        self.records.set_fields(run_id, **{RunField.REMOVALS_REJECTED: by})
        return self.finish(run_id)

    # -- stopping and ending -------------------------------------------------------

    def abort(self, run_id: str, reason: str, *, cancel: bool = False) -> None:
        """Send none of the run's remaining parts; the first reason wins. With
        ``cancel`` (the export or its connection was removed), the run ends
        ``cancelled`` at its next step."""
        self.redis.hsetnx(keys.run(run_id), RunField.ABORT_REASON, reason)
        if cancel:
            self.redis.hsetnx(keys.run(run_id), RunField.CANCELLED, "1")

    def cancel_unfinished(self, export_id: str, reason: str) -> list[str]:
        """Cancel every unfinished run of the export; returns their ids."""
        cancelled = []
        for run in self.records.recent(export_id, limit=1000):
            if not run.final:
                self.abort(run.run_id, reason, cancel=True)
                cancelled.append(run.run_id)
        return cancelled

    def finish(self, run_id: str, status: RunStatus | None = None, message: str = "") -> Run:
        """-> final: the given status, or the one the counts and flags say. A final
        run stays as it is. Releases the export's run lock."""
        current = self.records.get(run_id)
        if current.final:
            return current
        if status is None:
            status, message = derive(current, self.records.raw(run_id))
        pipe = self.redis.pipeline()
        pipe.hset(
            keys.run(run_id),
            mapping={
                RunField.STATUS: status.value,
                RunField.MESSAGE: message,
                RunField.FINISHED_AT: repr(time.time()),
            },
        )
        pipe.srem(keys.RUNS_ACTIVE, run_id)
        pipe.execute()
        self.reports.keep(run_id)
        self.locks.release(current.export_id, run_id)
        return self.records.get(run_id)

    def fail(self, run_id: str, message: str) -> Run:
        return self.finish(run_id, RunStatus.FAILED, message)

    def fail_before_sending(self, run_id: str, message: str) -> Run:
        """A run that could not start: its stored rows go (they hold emails)."""
        self.batches.discard_all(run_id)
        return self.fail(run_id, message)

    def end_unsent(self, run_id: str, count: int, message: str | None = None) -> Run:
        """A run stopped before sending: its ``count`` rows failed, its batches go;
        failed with ``message``, else as its flags say (cancelled, aborted)."""
        self.batches.discard_all(run_id)
        self.records.set_fields(run_id, **{RunField.FAILED: count})
        if message is not None:
            return self.fail(run_id, message)
        return self.finish(run_id)

    # -- resume --------------------------------------------------------------------

    def reopen(self, run_id: str, numbers: Iterable[int]) -> None:
        """final -> running, as a new attempt of the same run, sending ``numbers`` again.

        Their results leave the counts and their failed rows leave the report;
        ``attempt`` is one higher.
        """
        status = self.records.status(run_id)
        if status not in RESUMABLE:
            raise ExportError(f"run {run_id} is {status}: it cannot be resumed")
        wanted = list(numbers)
        self.batches.reopen(run_id, wanted)
        self.reports.drop_failed_rows(run_id, set(wanted))
        now = repr(time.time())
        pipe = self.redis.pipeline()
        pipe.hdel(keys.run(run_id), RunField.FINISHED_AT, RunField.ABORT_REASON, RunField.CANCELLED)
        pipe.hset(
            keys.run(run_id),
            mapping={
                RunField.STATUS: RunStatus.RUNNING.value,
                RunField.MESSAGE: "",
                RunField.UPDATED_AT: now,
                RunField.ATTEMPT_STARTED_AT: now,
            },
        )
        pipe.hincrby(keys.run(run_id), RunField.ATTEMPT, 1)
        pipe.sadd(keys.RUNS_ACTIVE, run_id)
        pipe.execute()

    def _move(self, run_id: str, status: RunStatus, message: str = "") -> None:
        """Enter a stage between the adds and the end (``STAGES``)."""
        current = self.records.status(run_id)
        if current not in STAGES[status]:
            raise ExportError(f"run {run_id} is {current}: it cannot become {status}")
        self.redis.hset(
            keys.run(run_id),
            mapping={
                RunField.STATUS: status.value,
                RunField.MESSAGE: message,
                RunField.UPDATED_AT: repr(time.time()),
            },
        )


def derive(run: Run, raw: Mapping[str, str]) -> tuple[RunStatus, str]:
    """The final status a run's counts and flags say, and why."""
    counts = run.counts
    if raw.get(RunField.CANCELLED) == "1":
        return RunStatus.CANCELLED, raw.get(RunField.ABORT_REASON, "cancelled")
    if raw.get(RunField.ABORT_REASON):
        return RunStatus.FAILED, raw[RunField.ABORT_REASON]
    if raw.get(RunField.REMOVALS_REJECTED):
        adds = f"{counts.imported:,} imported, {counts.failed:,} failed at Klaviyo"
        return RunStatus.REJECTED, (
            f"removals rejected by {raw[RunField.REMOVALS_REJECTED]}: the list keeps all "
            f"{counts.to_remove:,} members; adds done ({adds})"
        )
    if counts.submitted == 0 and counts.unchanged == 0:
        if counts.removed or counts.to_remove:
            return RunStatus.SUCCEEDED, f"removed {counts.removed} members that left the segment"
        if counts.rows_read == 0:
            return RunStatus.SUCCEEDED, "the segment is empty"
        return RunStatus.FAILED, "no row passed the checks: see `klaviyo-export rejected`"
    if counts.removal_failed:
        return (
            RunStatus.PARTIALLY_SUCCEEDED,
            f"{counts.removal_failed} of {counts.to_remove} removals from the list failed",
        )
    if counts.imported == 0 and counts.unchanged == 0:
        return RunStatus.FAILED, "Klaviyo imported no profile: see `klaviyo-export rejected`"
    if counts.failed:
        return (
            RunStatus.PARTIALLY_SUCCEEDED,
            f"Klaviyo failed {counts.failed} of {counts.submitted} profiles",
        )
    return RunStatus.SUCCEEDED, ""


__all__ = ["FINAL_RUN_STATUSES", "RESUMABLE", "STAGES", "Lifecycle", "RunStatus", "derive"]
