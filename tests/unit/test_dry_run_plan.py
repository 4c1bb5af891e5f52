"""A dry run predicts exactly what a run would send and reject."""

from __future__ import annotations

from pathlib import Path

from klaviyo_client import Operation
from klaviyo_export.sample import write_sample
from klaviyo_export.store import Export
from producer.plan import import_schedule_seconds, plan_run

EXPORT = Export(id="e_1", name="n", connection_id="c_1", list_id="L1", email_field="email")


def test_plan_counts_match_the_sample(tmp_path: Path) -> None:
    segment = tmp_path / "s.csv"
    makeup = write_sample(segment, 2500)
    plan = plan_run(EXPORT, str(segment), None, batch_profiles=1000, headroom=0.9)
    assert plan.rows_read == makeup.rows
    assert plan.rejected == makeup.rejected
    assert plan.rejected_by_reason == {
        "invalid_email": makeup.invalid_email,
        "missing_email": makeup.missing_email,
        "duplicate": makeup.duplicate,
    }
    assert plan.adds == makeup.valid
    assert plan.batches == -(-makeup.valid // 1000)
    assert plan.calls[Operation.BULK_IMPORT] == plan.batches
    assert (plan.updates, plan.unchanged, plan.removals) == (0, 0, 0)
    assert plan.expected_seconds > 0


def test_import_schedule_follows_both_windows() -> None:
    assert import_schedule_seconds(0, 10, 150) == 0.0
    assert import_schedule_seconds(1, 10, 150) == 0.0
    assert import_schedule_seconds(10, 10, 150) == 0.0  # one burst
    assert import_schedule_seconds(11, 10, 150) == 1.0
    assert import_schedule_seconds(150, 10, 150) == 14.0  # the burst binds
    assert import_schedule_seconds(151, 10, 150) == 60.0  # then the steady window
    assert import_schedule_seconds(100, 9, 135) == 11.0  # 1M profiles, with headroom
