"""Run counts add up, and a batch result counts once however often it arrives."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from core.batch_store import BatchResult, StoredBatch
from core.context import Context
from schemas import keys
from schemas.contracts import BATCH_RESULT, RUN_STATUS, BatchStatus, load
from schemas.keys import RunField


@pytest.fixture
def ctx(make_context: Callable[..., Context]) -> Context:
    return make_context()


def _result(run_id: str, batch: int, imported: int, failed: int, status: str) -> BatchResult:
    return BatchResult(run_id, batch, BatchStatus(status), imported, failed, job_id="J")


def _started(ctx: Context, submitted: int = 10, batches: int = 2) -> str:
    run_id = ctx.lifecycle.create("e_1", "seg.csv", "tester", "c_1", "L1")
    ctx.reports.add_rejections(
        run_id, [{"row": 3, "field": "email", "code": "invalid_email", "reason": "x"}]
    )
    for n in range(batches):
        ctx.batches.store(StoredBatch(run_id, n, b"[]", [], [], []))
    ctx.lifecycle.begin_upload(
        run_id, rows_read=submitted + 1, submitted=submitted, batches=batches
    )
    return run_id


def test_a_redelivered_batch_counts_once(ctx: Context) -> None:
    run_id = _started(ctx)
    result = _result(run_id, 0, 4, 1, "partially_succeeded")
    failed = [{"row": 9, "email": "a@b.co", "code": "invalid", "detail": "bad"}]
    assert ctx.batches.record(result, failed) is True
    assert ctx.batches.record(result, failed) is False
    run = ctx.runs.get(run_id)
    assert run.counts.imported == 4
    assert run.counts.failed == 1
    assert run.batches.done == 1
    assert ctx.reports.failed_rows(run_id) == failed


def test_payloads_of_succeeded_batches_are_deleted_failed_ones_kept(ctx: Context) -> None:
    run_id = _started(ctx)
    ctx.batches.record(_result(run_id, 0, 5, 0, "succeeded"))
    ctx.batches.record(_result(run_id, 1, 0, 5, "failed"))
    assert not ctx.redis.exists(keys.batch(run_id, 0))
    assert ctx.redis.exists(keys.batch(run_id, 1))
    assert ctx.redis.ttl(keys.batch(run_id, 1)) > 0


@pytest.mark.parametrize(
    ("results", "expected"),
    [
        ([(5, 0), (5, 0)], "succeeded"),
        ([(5, 0), (3, 2)], "partially_succeeded"),
        ([(0, 5), (0, 5)], "failed"),
    ],
)
def test_final_status_follows_the_counts(
    ctx: Context, results: list[tuple[int, int]], expected: str
) -> None:
    run_id = _started(ctx)
    for n, (imported, failed) in enumerate(results):
        ctx.batches.record(_result(run_id, n, imported, failed, "succeeded"))
    run = ctx.lifecycle.finish(run_id)
    assert run.status == expected
    counts = run.counts
    assert counts.rows_read == counts.rejected + counts.imported + counts.failed
    load(RUN_STATUS, run.to_json())  # the record honours its published contract


def test_an_aborted_run_fails_with_the_first_reason(ctx: Context) -> None:
    run_id = _started(ctx)
    ctx.lifecycle.abort(run_id, "Klaviyo list X does not exist (404)")
    ctx.lifecycle.abort(run_id, "a later reason")
    assert ctx.lifecycle.finish(run_id).message == "Klaviyo list X does not exist (404)"
    assert ctx.lifecycle.finish(run_id).status == "failed"  # final states do not change


def test_a_cancelled_run_ends_cancelled(ctx: Context) -> None:
    run_id = _started(ctx)
    ctx.lifecycle.abort(run_id, "the export was removed", cancel=True)
    assert ctx.lifecycle.finish(run_id).status == "cancelled"


def test_all_rows_rejected_is_a_failed_run_empty_segment_is_not(ctx: Context) -> None:
    run_id = ctx.lifecycle.create("e_1", "seg.csv", "t", "c_1", "L1")
    ctx.reports.add_rejections(
        run_id, [{"row": 1, "field": "email", "code": "missing_email", "reason": "x"}]
    )
    ctx.lifecycle.begin_upload(run_id, rows_read=1, submitted=0, batches=0)
    assert ctx.lifecycle.finish(run_id).status == "failed"
    empty = ctx.lifecycle.create("e_1", "empty.csv", "t", "c_1", "L1")
    ctx.lifecycle.begin_upload(empty, rows_read=0, submitted=0, batches=0)
    assert ctx.lifecycle.finish(empty).status == "succeeded"


def test_batch_result_contract_refuses_counts_that_do_not_add_up() -> None:
    good = _result("r", 0, 4, 1, "succeeded").to_json()
    bad = {**good, "submitted": 9}
    with pytest.raises(Exception, match="imported \\+ failed"):
        load(BATCH_RESULT, bad)
    with pytest.raises(Exception, match="imported \\+ failed"):
        BatchResult.from_json(bad)
    assert load(BATCH_RESULT, good)["imported"] == 4
    assert BatchResult.from_json(good) == _result("r", 0, 4, 1, "succeeded")


def test_reopening_batches_takes_their_results_out_of_the_counts(ctx: Context) -> None:
    run_id = _started(ctx, submitted=10, batches=2)
    ctx.batches.record(_result(run_id, 0, 5, 0, "succeeded"))
    ctx.batches.record(
        _result(run_id, 1, 3, 2, "partially_succeeded"),
        [{"batch": 1, "row": 7, "code": "invalid", "detail": "bad"}],
    )
    ctx.lifecycle.finish(run_id)
    assert ctx.batches.unfinished(run_id) == [1]

    ctx.lifecycle.reopen(run_id, [1])

    run = ctx.runs.get(run_id)
    assert (run.status, run.attempt) == ("running", 2)
    assert (run.counts.imported, run.counts.failed) == (5, 0)
    assert run.batches.done == 1
    assert run.batches.partially_succeeded == 0
    assert ctx.reports.failed_rows(run_id) == []
    assert ctx.redis.ttl(keys.batch(run_id, 1)) == -1  # kept until it is done again
    assert ctx.batches.record(_result(run_id, 1, 5, 0, "succeeded"))
    assert ctx.lifecycle.finish(run_id).status == "succeeded"


def test_a_resumed_runs_duration_counts_from_its_own_attempt(ctx: Context) -> None:
    from frontdoors.cli.waiting import summarize

    run_id = _started(ctx, submitted=10, batches=2)
    ctx.batches.record(_result(run_id, 0, 5, 0, "succeeded"))
    ctx.batches.record(_result(run_id, 1, 0, 5, "failed"))
    ctx.lifecycle.finish(run_id)
    ctx.redis.hset(keys.run(run_id), RunField.CREATED_AT, repr(time.time() - 3600))  # an hour ago
    ctx.lifecycle.reopen(run_id, [1])
    ctx.batches.record(_result(run_id, 1, 5, 0, "succeeded"))

    run = ctx.lifecycle.finish(run_id)

    assert run.attempt == 2
    assert 0 <= summarize(run)["duration_s"] < 600  # this attempt, not the hour before


def test_a_runs_summary_says_what_its_contract_says() -> None:
    """``Run.summary`` (built without the contract, for speed) agrees with
    ``Run.to_json`` (checked by the ``RunStatus`` contract) on every field."""
    from core.run_record import BatchCounts, Counts, Run
    from schemas.contracts import RunStatus

    run = Run(
        run_id="r_1", export_id="e_1", status=RunStatus.PARTIALLY_SUCCEEDED, message="m",
        created_at=1.0, started_at=2.0, finished_at=9.5, attempt_started_at=2.0, attempt=2,
        counts=Counts(rows_read=10, rejected=2, rejected_by_reason={"duplicate": 2},
                      submitted=8, imported=7, failed=1, unchanged=0, to_remove=3, removed=3),
        batches=BatchCounts(total=2, done=2, succeeded=1, partially_succeeded=1),
    )  # fmt: skip
    summary, contract = run.summary(), run.to_json()

    for field in ("run_id", "export_id", "status", "counts", "batches", "attempt"):
        assert summary[field] == contract[field], field
    assert summary["finished_at"] == 9.5
