"""Waiting for a run (``run --wait``, ``resume --wait``, ``status --watch``) and
saying how it stands.

A wait ends when the run ends, when it needs a person's decision (a mirror run
held at the safety brake: waiting longer would wait forever), or when
``--timeout`` passes; each has its own exit code (``output.Exit``). A wait
rides out Redis going away and coming back: it says so once on stderr and
carries on; if Redis comes back without the run's records (restarted with no
persistence), it says that plainly and exits 5.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Final

import redis

from core.context import Context
from core.errors import NotFound, Unavailable
from core.run_record import Run
from frontdoors.cli.output import Exit, emit_json, exit_for
from frontdoors.cli.progress import RunProgress
from schemas.contracts import RunStatus

MAX_POLL_SECONDS: Final = 2.0
_REDIS_LOST: Final = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)


@dataclass(frozen=True)
class Waited:
    run: Run
    outcome: str  # "ended", "needs_decision" or "timed_out"
    waited_s: float


def follow(
    ctx: Context, run_id: str, progress: RunProgress, timeout: float | None = None
) -> Waited:
    """Poll the run until it ends, needs a decision, or ``timeout`` seconds pass."""
    started = time.monotonic()
    delay = 0.2
    seen: Run | None = None
    lost = False
    try:
        while True:
            waited = time.monotonic() - started
            try:
                run = ctx.runs.get(run_id)
                in_flight = ctx.batches.in_flight(run_id) if run.status is RunStatus.RUNNING else 0
            except NotFound:
                if seen is None:
                    raise
                raise Unavailable(_gone(run_id, seen)) from None
            except _REDIS_LOST as exc:
                if seen is None:
                    raise  # never reached: a plain "cannot reach Redis"
                if not lost:
                    progress.note(f"lost Redis ({type(exc).__name__}): still waiting, retrying")
                    lost = True
                if timeout is not None and waited >= timeout:
                    raise Unavailable(
                        f"Redis did not come back within --timeout {timeout:g} s; run {run_id} "
                        "goes on without us: see `klaviyo-export status` later"
                    ) from None
                time.sleep(MAX_POLL_SECONDS)
                continue
            if lost:
                progress.note("Redis is back: following the run again")
                lost = False
            seen = run
            if run.final:
                return Waited(run, "ended", waited)
            if run.status is RunStatus.AWAITING_APPROVAL:
                return Waited(run, "needs_decision", waited)
            if timeout is not None and waited >= timeout:
                return Waited(run, "timed_out", waited)
            progress.run(run.to_json(), in_flight)
            time.sleep(delay)
            delay = min(MAX_POLL_SECONDS, delay * 1.5)
    finally:
        progress.close()


def _gone(run_id: str, seen: Run) -> str:
    return (
        f"run {run_id} is no longer in Redis (was it restarted without persistence?): "
        f"its outcome is unknown; `klaviyo-export reconcile {seen.export_id}` compares "
        "the list with what the export put there"
    )


def report(waited: Waited, as_json: bool) -> int:
    """Print how the run stands; returns the command's exit code."""
    run = waited.run
    run_id = run.run_id
    summary = summarize(run)
    if waited.outcome == "needs_decision":
        decision = {
            "reason": run.message,
            "approve": f"klaviyo-export approve {run_id}",
            "reject": f"klaviyo-export reject {run_id}",
        }
        if as_json:
            emit_json({**summary, "decision": decision})
        else:
            print_status(run)
            print(f"run {run_id} needs a decision: {run.message}")
            print(f"  to remove the members:  {decision['approve']}")
            print(f"  to keep every member:   {decision['reject']}")
        return int(Exit.NEEDS_DECISION)
    if waited.outcome == "timed_out":
        note = (
            f"run {run_id} is still {run.status} after {waited.waited_s:.0f} s; it goes on: "
            f"`klaviyo-export status {run_id} --watch` follows it"
        )
        if as_json:
            emit_json({**summary, "timed_out": True, "note": note})
        else:
            print_status(run)
            print(note)
        return int(Exit.TIMED_OUT)
    if as_json:
        emit_json(summary)
    else:
        print_status(run)
    return int(exit_for(run.status))


def summarize(run: Run) -> dict[str, Any]:
    """What ``--json`` prints of a run."""
    return run.summary()


def print_status(run: Run) -> None:
    summary = summarize(run)
    counts = summary["counts"]
    print(f"run {summary['run_id']} (export {summary['export_id']}): {summary['status']}")
    if summary["message"]:
        print(f"  {summary['message']}")
    print(f"  rows read        {counts['rows_read']:>10,}")
    print(f"  rejected         {counts['rejected']:>10,}")
    for reason, n in sorted(counts["rejected_by_reason"].items()):
        print(f"    {reason:<14} {n:>10,}")
    if counts.get("unchanged"):
        print(f"  unchanged        {counts['unchanged']:>10,}")
    print(f"  submitted        {counts['submitted']:>10,}")
    print(f"  imported         {counts['imported']:>10,}")
    print(f"  failed (Klaviyo) {counts['failed']:>10,}")
    if counts.get("to_remove"):
        print(f"  to remove        {counts['to_remove']:>10,}")
        print(f"  removed          {counts['removed']:>10,}")
        print(f"  removal failed   {counts['removal_failed']:>10,}")
    batches = summary["batches"]
    print(f"  batches          {batches['done']}/{batches['total']} done")
    if summary["duration_s"] is not None:
        attempt = f" (attempt {summary['attempt']})" if summary["attempt"] > 1 else ""
        print(f"  duration         {summary['duration_s']:.1f} s{attempt}")
