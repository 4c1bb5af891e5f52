"""The watchdog finishes runs whose chord never fired, and resends stalled batches."""

from __future__ import annotations

import time

import fakeredis
import pytest

from klaviyo_export.runs import Runs
from worker.watchdog import MAX_RESENDS, sweep


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


def test_a_run_with_every_result_but_no_callback_is_finished(runs: Runs) -> None:
    run_id = _running(runs, 2)
    _done(runs, run_id, 0)
    _done(runs, run_id, 1)
    assert sweep(runs, _never, _never, 900, now=time.time()).finished == []  # within the grace
    outcome = sweep(runs, _never, _never, 900, now=time.time() + 60)
    assert outcome.finished == [run_id]
    assert runs.status(run_id)["status"] == "succeeded"
    assert runs.active() == []


def test_a_stalled_run_gets_its_missing_batches_resent(runs: Runs) -> None:
    run_id = _running(runs, 3)
    _done(runs, run_id, 1)
    sent: list[tuple[str, int]] = []
    outcome = sweep(runs, lambda r, n: sent.append((r, n)), _never, 900, now=time.time() + 10_000)
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

    for _ in range(MAX_RESENDS):
        runs.redis.hset(f"kx:run:{run_id}", "updated_at", "0")
        sweep(runs, lambda *_: None, _never, 900)
    runs.redis.hset(f"kx:run:{run_id}", "updated_at", "0")
    outcome = sweep(runs, _never, fail, 900)
    assert outcome.failed == [run_id]
    status = runs.status(run_id)
    assert status["status"] == "partially_succeeded"
    assert status["counts"]["failed"] == 1
    assert runs.failed_rows(run_id)[0]["code"] == "lost"
