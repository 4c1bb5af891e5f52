"""The watchdog does what a lost chord callback would have, and resends stalled parts,
for a run's uploads and for a mirror run's removals."""

from __future__ import annotations

import time
from collections.abc import Callable

import fakeredis
import pytest

from core.runs import Runs
from worker.watchdog import MAX_RESENDS, Stage, Sweep, sweep


@pytest.fixture
def runs() -> Runs:
    return Runs(fakeredis.FakeRedis())


def _running(runs: Runs, batches: int) -> str:
    run_id = runs.create("e_1", "seg.csv", "t", "c_1", "L1")
    for n in range(batches):
        profiles = b'[{"type":"profile","attributes":{"email":"a@b.co"}}]'
        runs.store_batch(run_id, n, profiles, [n + 1], ["a@b.co"], ["00"])
    runs.mark_running(run_id, rows_read=batches, submitted=batches, batches=batches)
    return run_id


def _done(runs: Runs, run_id: str, n: int) -> None:
    runs.record_batch(
        run_id,
        {
            "v": 1,
            "run_id": run_id,
            "batch": n,
            "status": "succeeded",
            "submitted": 1,
            "imported": 1,
            "failed": 0,
        },
    )


def _never(*_: object) -> None:
    raise AssertionError("not expected")


def _uploads(
    runs: Runs,
    resend: Callable[[str, int], None] = _never,
    fail: Callable[[str, int, str], None] = _never,
) -> dict[str, Stage]:
    return {"running": Stage(runs.missing_batches, resend, fail, runs.finish)}


def _removals(
    runs: Runs,
    resend: Callable[[str, int], None] = _never,
    fail: Callable[[str, int, str], None] = _never,
) -> dict[str, Stage]:
    return {"removing": Stage(runs.missing_removal_chunks, resend, fail, runs.finish)}


def _stall_through_every_resend(runs: Runs, run_id: str, stages: dict[str, Stage]) -> None:
    """Sweep ``MAX_RESENDS`` times with no progress in between; leave the run stale."""
    for _ in range(MAX_RESENDS):
        runs.redis.hset(f"kx:run:{run_id}", "updated_at", "0")
        assert run_id in sweep(runs, stages, 900).resent
    runs.redis.hset(f"kx:run:{run_id}", "updated_at", "0")


def _removing(runs: Runs, members: int) -> str:
    """A mirror run whose adds are done and whose removals are under way."""
    run_id = _running(runs, 1)
    _done(runs, run_id, 0)
    runs.store_removals(run_id, (f"gone{i}@example.org" for i in range(members)), chunk_size=2)
    runs.set_stage(run_id, "removing")
    return run_id


def test_a_run_with_every_result_but_no_callback_is_finished(runs: Runs) -> None:
    run_id = _running(runs, 2)
    _done(runs, run_id, 0)
    _done(runs, run_id, 1)
    assert sweep(runs, _uploads(runs), 900, now=time.time()).finished == []  # within the grace
    outcome = sweep(runs, _uploads(runs), 900, now=time.time() + 60)
    assert outcome.finished == [run_id]
    assert runs.status(run_id)["status"] == "succeeded"
    assert runs.active() == []


def test_a_stalled_run_gets_its_missing_batches_resent(runs: Runs) -> None:
    run_id = _running(runs, 3)
    _done(runs, run_id, 1)
    sent: list[tuple[str, int]] = []
    resend = _uploads(runs, lambda r, n: sent.append((r, n)))
    outcome = sweep(runs, resend, 900, now=time.time() + 10_000)
    assert sent == [(run_id, 0), (run_id, 2)]
    assert outcome.resent == {run_id: [0, 2]}
    assert runs.status(run_id)["status"] == "running"


def test_a_run_still_stalled_after_the_resends_fails_its_missing_rows(runs: Runs) -> None:
    run_id = _running(runs, 2)
    _done(runs, run_id, 0)

    def fail(run: str, number: int, reason: str) -> None:
        runs.record_batch(
            run,
            {
                "v": 1,
                "run_id": run,
                "batch": number,
                "status": "failed",
                "submitted": 1,
                "imported": 0,
                "failed": 1,
                "error": reason,
            },
            [{"row": 2, "code": "lost", "detail": reason}],
        )

    _stall_through_every_resend(runs, run_id, _uploads(runs, lambda *_: None))
    outcome = sweep(runs, _uploads(runs, fail=fail), 900)
    assert outcome.failed == [run_id]
    status = runs.status(run_id)
    assert status["status"] == "partially_succeeded"
    assert status["counts"]["failed"] == 1
    assert runs.failed_rows(run_id)[0]["code"] == "lost"


def test_a_removing_run_whose_callback_was_lost_is_finished(runs: Runs) -> None:
    run_id = _removing(runs, 3)  # chunks of 2 and 1
    assert runs.record_removal(run_id, 0, 2, 0)
    assert runs.record_removal(run_id, 1, 1, 0)
    assert sweep(runs, _uploads(runs), 900, now=time.time() + 60).finished == []  # not its stage
    outcome = sweep(runs, _removals(runs), 900, now=time.time() + 60)
    assert outcome.finished == [run_id]
    status = runs.status(run_id)
    assert status["status"] == "succeeded"
    assert status["counts"]["removed"] == 3
    assert runs.active() == []


def test_a_stalled_removing_run_gets_its_missing_chunks_resent(runs: Runs) -> None:
    run_id = _removing(runs, 5)  # chunks 0, 1, 2
    assert runs.record_removal(run_id, 1, 2, 0)
    sent: list[tuple[str, int]] = []
    stages = _removals(runs, lambda r, n: sent.append((r, n)))
    assert sweep(runs, stages, 900, now=time.time() + 60).resent == {}  # progress is recent
    outcome = sweep(runs, stages, 900, now=time.time() + 10_000)
    assert sent == [(run_id, 0), (run_id, 2)]
    assert outcome.resent == {run_id: [0, 2]}
    assert runs.status(run_id)["status"] == "removing"


def test_a_removing_run_still_stalled_fails_its_missing_chunks(runs: Runs) -> None:
    run_id = _removing(runs, 3)
    assert runs.record_removal(run_id, 0, 2, 0)

    def fail(run: str, chunk: int, reason: str) -> None:
        emails = runs.removal_chunk(run, chunk)
        assert emails is not None
        runs.record_removal(run, chunk, 0, len(emails))

    _stall_through_every_resend(runs, run_id, _removals(runs, lambda *_: None))
    outcome = sweep(runs, _removals(runs, fail=fail), 900)
    assert outcome.failed == [run_id]
    status = runs.status(run_id)
    assert (status["counts"]["removed"], status["counts"]["removal_failed"]) == (2, 1)
    assert status["status"] == "partially_succeeded"


def test_a_run_at_the_brake_is_left_to_a_person(runs: Runs) -> None:
    run_id = _removing(runs, 3)
    runs.set_stage(run_id, "awaiting_approval", "over 20%")
    stages = {**_uploads(runs), **_removals(runs)}
    outcome = sweep(runs, stages, 900, now=time.time() + 10_000)
    assert outcome == Sweep([], {}, [])
    assert runs.status(run_id)["status"] == "awaiting_approval"
