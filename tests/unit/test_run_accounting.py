"""Run counts add up, and a batch result counts once however often it arrives."""

from __future__ import annotations

import time

import fakeredis
import pytest

from core.runs import Runs
from schemas import keys
from schemas.contracts import BATCH_RESULT, RUN_STATUS, load


@pytest.fixture
def runs() -> Runs:
    return Runs(fakeredis.FakeRedis())


def _result(run_id: str, batch: int, imported: int, failed: int, status: str) -> dict[str, object]:
    return {
        "v": 1,
        "run_id": run_id,
        "batch": batch,
        "status": status,
        "submitted": imported + failed,
        "imported": imported,
        "failed": failed,
        "job_id": "J",
        "error": None,
    }


def _started(runs: Runs, submitted: int = 10, batches: int = 2) -> str:
    run_id = runs.create("e_1", "seg.csv", "tester", "c_1", "L1")
    runs.add_rejections(
        run_id, [{"row": 3, "field": "email", "code": "invalid_email", "reason": "x"}]
    )
    for n in range(batches):
        runs.store_batch(run_id, n, b"[]", [], [], [])
    runs.mark_running(run_id, rows_read=submitted + 1, submitted=submitted, batches=batches)
    return run_id


def test_a_redelivered_batch_counts_once(runs: Runs) -> None:
    run_id = _started(runs)
    result = _result(run_id, 0, 4, 1, "partially_succeeded")
    failed = [{"row": 9, "email": "a@b.co", "code": "invalid", "detail": "bad"}]
    assert runs.record_batch(run_id, result, failed) is True
    assert runs.record_batch(run_id, result, failed) is False
    status = runs.status(run_id)
    assert status["counts"]["imported"] == 4
    assert status["counts"]["failed"] == 1
    assert status["batches"]["done"] == 1
    assert runs.failed_rows(run_id) == failed


def test_payloads_of_succeeded_batches_are_deleted_failed_ones_kept(runs: Runs) -> None:
    run_id = _started(runs)
    runs.record_batch(run_id, _result(run_id, 0, 5, 0, "succeeded"))
    runs.record_batch(run_id, _result(run_id, 1, 0, 5, "failed"))
    assert not runs.redis.exists(keys.batch(run_id, 0))
    assert runs.redis.exists(keys.batch(run_id, 1))
    assert runs.redis.ttl(keys.batch(run_id, 1)) > 0


@pytest.mark.parametrize(
    ("results", "expected"),
    [
        ([(5, 0), (5, 0)], "succeeded"),
        ([(5, 0), (3, 2)], "partially_succeeded"),
        ([(0, 5), (0, 5)], "failed"),
    ],
)
def test_final_status_follows_the_counts(
    runs: Runs, results: list[tuple[int, int]], expected: str
) -> None:
    run_id = _started(runs)
    for n, (imported, failed) in enumerate(results):
        runs.record_batch(run_id, _result(run_id, n, imported, failed, "succeeded"))
    status = runs.finish(run_id)
    assert status["status"] == expected
    counts = status["counts"]
    assert counts["rows_read"] == counts["rejected"] + counts["imported"] + counts["failed"]
    load(RUN_STATUS, status)  # the record honours its published contract


def test_an_aborted_run_fails_with_the_first_reason(runs: Runs) -> None:
    run_id = _started(runs)
    runs.abort(run_id, "Klaviyo list X does not exist (404)")
    runs.abort(run_id, "a later reason")
    assert runs.finish(run_id)["message"] == "Klaviyo list X does not exist (404)"
    assert runs.finish(run_id)["status"] == "failed"  # final states do not change


def test_a_cancelled_run_ends_cancelled(runs: Runs) -> None:
    run_id = _started(runs)
    runs.abort(run_id, "the export was removed", cancel=True)
    assert runs.finish(run_id)["status"] == "cancelled"


def test_all_rows_rejected_is_a_failed_run_empty_segment_is_not(runs: Runs) -> None:
    run_id = runs.create("e_1", "seg.csv", "t", "c_1", "L1")
    runs.add_rejections(
        run_id, [{"row": 1, "field": "email", "code": "missing_email", "reason": "x"}]
    )
    runs.mark_running(run_id, rows_read=1, submitted=0, batches=0)
    assert runs.finish(run_id)["status"] == "failed"
    empty = runs.create("e_1", "empty.csv", "t", "c_1", "L1")
    runs.mark_running(empty, rows_read=0, submitted=0, batches=0)
    assert runs.finish(empty)["status"] == "succeeded"


def test_batch_result_contract_refuses_counts_that_do_not_add_up() -> None:
    bad = _result("r", 0, 4, 1, "succeeded")
    bad["submitted"] = 9
    with pytest.raises(Exception, match="imported \\+ failed"):
        load(BATCH_RESULT, bad)
    assert load(BATCH_RESULT, _result("r", 0, 4, 1, "succeeded"))["imported"] == 4


def test_reopening_batches_takes_their_results_out_of_the_counts(runs: Runs) -> None:
    run_id = _started(runs, submitted=10, batches=2)
    runs.record_batch(run_id, _result(run_id, 0, 5, 0, "succeeded"))
    runs.record_batch(
        run_id,
        _result(run_id, 1, 3, 2, "partially_succeeded"),
        [{"batch": 1, "row": 7, "code": "invalid", "detail": "bad"}],
    )
    runs.finish(run_id)
    assert runs.unfinished_batches(run_id) == [1]

    runs.reopen(run_id, [1])

    status = runs.status(run_id)
    assert (status["status"], status["attempt"]) == ("running", 2)
    assert (status["counts"]["imported"], status["counts"]["failed"]) == (5, 0)
    assert status["batches"]["done"] == 1
    assert status["batches"]["partially_succeeded"] == 0
    assert runs.failed_rows(run_id) == []
    assert runs.redis.ttl(keys.batch(run_id, 1)) == -1  # kept until it is done again
    assert runs.record_batch(run_id, _result(run_id, 1, 5, 0, "succeeded"))
    assert runs.finish(run_id)["status"] == "succeeded"


def test_a_resumed_runs_duration_counts_from_its_own_attempt(runs: Runs) -> None:
    from frontdoors.cli.waiting import summarize

    run_id = _started(runs, submitted=10, batches=2)
    runs.record_batch(run_id, _result(run_id, 0, 5, 0, "succeeded"))
    runs.record_batch(run_id, _result(run_id, 1, 0, 5, "failed"))
    runs.finish(run_id)
    runs.redis.hset(keys.run(run_id), "created_at", repr(time.time() - 3600))  # an hour ago
    runs.reopen(run_id, [1])
    runs.record_batch(run_id, _result(run_id, 1, 5, 0, "succeeded"))

    status = runs.finish(run_id)

    assert status["attempt"] == 2
    assert 0 <= summarize(status)["duration_s"] < 600  # this attempt, not the hour before
