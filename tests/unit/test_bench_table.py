"""The benchmark's tables: each run as measured, and the median of each setting."""

from __future__ import annotations

import copy
from typing import Any

from bench.table import markdown, median_of, medians, row


def result(
    wall: float, producer_cpu: float, workers: int = 2, speed: float = 5000
) -> dict[str, Any]:
    return {
        "profiles": 1_000_000,
        "workers": workers,
        "sandbox": {"job_profiles_per_second": speed},
        "wall_s": wall,
        "producer_s": 15.0,
        "uploads_s": wall - 15.0,
        "profiles_per_s": 1_000_000 / wall,
        "lower_bound": {"seconds": 12.0},
        "ratio_to_lower_bound": wall / 12.0,
        "uploads_ratio_to_lower_bound": (wall - 15.0) / 12.0,
        "cpu_us_per_profile": {
            "producer": producer_cpu,
            "workers": 7.0,
            "sandbox": 9.0,
            "redis": 2.0,
        },
        "peak_rss_mb": {"producer": 90.0, "workers": [{"main": 70.0, "children": [140.0, 150.0]}]},
        "http": {
            "requests": 290,
            "throttled_429": 0,
            "busiest_windows": {
                "bulk_import_profiles": {"max_1s": 9},
                "get_bulk_import_profiles_job": {"max_1s": 8},
            },
        },
        "machine": {"calibration_ms_before": 150.0, "calibration_ms_after": 160.0},
    }


def test_a_row_carries_every_column() -> None:
    cells = row(result(40.0, 15.0))
    table = markdown([cells]).splitlines()
    assert len(table) == 3
    assert table[0].count("|") == table[2].count("|")
    assert cells[:4] == ["1,000,000", "2", "realistic", "40.0"]
    assert "15.0, 7.0, 9.0, 2.0" in cells
    assert "90, 150" in cells  # the producer, and the largest worker process
    assert "9, 8" in cells


def test_medians_group_by_setting() -> None:
    runs = [result(40.0, 15.0), result(50.0, 17.0), result(44.0, 16.0), result(30.0, 14.0, 4)]
    rows = medians(runs)
    assert [r[1] for r in rows] == ["2", "4"]
    assert rows[0][0] == "1,000,000 (3 runs)"
    assert rows[0][3] == "44.0"
    assert rows[0][10].startswith("16.0,")
    assert rows[1][0] == "1,000,000 (1 run)"


def test_the_median_of_an_even_number_of_counts_is_a_count() -> None:
    merged = median_of([result(40.0, 15.0), result(50.0, 17.0)])
    assert merged["profiles"] == 1_000_000
    assert type(merged["workers"]) is int
    assert merged["wall_s"] == 45.0


def test_the_limit_figures_are_the_worst_run_s() -> None:
    runs = [result(40.0, 15.0), result(50.0, 17.0), result(44.0, 16.0)]
    runs[2]["http"]["busiest_windows"]["bulk_import_profiles"]["max_1s"] = 10
    runs[0]["http"]["throttled_429"] = 1
    merged = median_of(runs)
    assert merged["http"]["busiest_windows"]["bulk_import_profiles"]["max_1s"] == 10
    assert merged["http"]["throttled_429"] == 1


def test_median_of_leaves_text_and_takes_lists_element_by_element() -> None:
    a, b, c = result(40.0, 15.0), result(50.0, 17.0), result(44.0, 16.0)
    c = copy.deepcopy(c)
    c["peak_rss_mb"]["workers"][0]["children"] = [100.0, 400.0]
    merged = median_of([a, b, c])
    assert merged["peak_rss_mb"]["workers"][0]["children"] == [140.0, 150.0]
    assert merged["wall_s"] == 44.0
    assert merged["sandbox"]["job_profiles_per_second"] == 5000
