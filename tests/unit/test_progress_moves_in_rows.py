"""The progress of a waiting command counts rows, moves while Klaviyo imports,
and off a terminal prints a plain line per stage and at most one per interval."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

from core.batch_store import StoredBatch
from core.context import Context
from frontdoors.cli.progress import PLAIN_EVERY, RunProgress


def _status(stage: str, submitted: int = 0, imported: int = 0, rows_read: int = 0) -> Any:
    counts = {
        "rows_read": rows_read, "submitted": submitted, "imported": imported, "failed": 0,
        "to_remove": 0, "removed": 0, "removal_failed": 0,
    }  # fmt: skip
    return {"status": stage, "counts": counts}


def test_off_a_terminal_a_plain_line_per_stage_and_interval() -> None:
    now = [0.0]
    out = io.StringIO()
    progress = RunProgress(enabled=True, stream=out, clock=lambda: now[0])
    progress.reading(10_000)
    now[0] = 1.0
    progress.reading(20_000)  # same stage, too soon: nothing
    progress.run(_status("running", submitted=40_000), in_flight=5_000)
    now[0] = 1.0 + PLAIN_EVERY
    progress.run(_status("running", submitted=40_000, imported=10_000), in_flight=20_000)

    lines = out.getvalue().splitlines()
    assert lines == [
        "reading the segment: 10,000 rows, 0 rows/s, 0 s elapsed",
        "importing to Klaviyo: 5,000/40,000 rows, 5,000 rows/s, 1 s elapsed",
        "importing to Klaviyo: 30,000/40,000 rows, 968 rows/s, 31 s elapsed",
    ]


def test_json_mode_shows_nothing() -> None:
    out = io.StringIO()
    progress = RunProgress(enabled=False, stream=out)
    progress.reading(10)
    progress.note("lost Redis")
    assert out.getvalue() == ""


def test_rows_in_jobs_still_importing_count_as_progress(
    make_context: Callable[..., Context],
) -> None:
    ctx = make_context()
    run_id = ctx.lifecycle.create("e_1", "s.csv", "ann", "c_1", "L1")
    for n in range(3):
        ctx.batches.store(StoredBatch(run_id, n, b"[]", [], [], []))
    ctx.lifecycle.begin_upload(run_id, rows_read=30, submitted=30, batches=3)
    ctx.batches.set_state(run_id, 0, completed=4)
    ctx.batches.set_state(run_id, 1, completed=7)
    assert ctx.batches.in_flight(run_id) == 11
