"""Markdown tables from ``bench.run --json`` results, one JSON object a line.

``python -m bench.table results.jsonl`` prints the tables BENCHMARKS.md
carries: every run as measured, then the median of each setting.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Iterable
from typing import Any

COLUMNS = (
    "profiles",
    "workers",
    "job speed",
    "wall s",
    "read s",
    "uploads s",
    "profiles/s",
    "bound s",
    "wall/bound",
    "uploads/bound",
    "CPU us/profile: producer, workers, sandbox, redis",
    "peak MB: producer, worker (largest)",
    "requests",
    "429s",
    "busiest 1 s: create job, get job",
    "calibration ms",
)


def setting(result: dict[str, Any]) -> tuple[int, int, str]:
    speed = result["sandbox"]["job_profiles_per_second"]
    return result["profiles"], result["workers"], "fast" if speed >= 50_000 else "realistic"


def row(result: dict[str, Any]) -> list[str]:
    profiles, workers, speed = setting(result)
    cpu = result["cpu_us_per_profile"]
    peak = result["peak_rss_mb"]
    worker_peak = max(max([w["main"], *w["children"]]) for w in peak["workers"])
    busiest = result["http"]["busiest_windows"]
    machine = result["machine"]
    return [
        f"{profiles:,}",
        str(workers),
        speed,
        f"{result['wall_s']:.1f}",
        f"{result['producer_s']:.1f}",
        f"{result['uploads_s']:.1f}",
        f"{result['profiles_per_s']:,.0f}",
        f"{result['lower_bound']['seconds']:.1f}",
        f"{result['ratio_to_lower_bound']:.2f}",
        f"{result['uploads_ratio_to_lower_bound']:.2f}",
        ", ".join(f"{cpu[k]:.1f}" for k in ("producer", "workers", "sandbox", "redis")),
        f"{peak['producer']:.0f}, {worker_peak:.0f}",
        str(result["http"]["requests"]),
        str(result["http"]["throttled_429"]),
        ", ".join(
            str(busiest.get(op, {}).get("max_1s", "-"))
            for op in ("bulk_import_profiles", "get_bulk_import_profiles_job")
        ),
        f"{machine['calibration_ms_before']:.0f} / {machine['calibration_ms_after']:.0f}",
    ]


def markdown(rows: Iterable[list[str]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


WORST_OF = frozenset({"max_1s", "max_60s", "throttled_429"})
"""Figures that say whether Klaviyo's limits held: the medians table shows the worst run's."""


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """A result whose every number is the median of that number over ``runs``
    (lists, such as a worker's children, element by element), except the
    limit figures (:data:`WORST_OF`), which are the largest."""

    def merge(values: list[Any], key: str = "") -> Any:
        first = values[0]
        if isinstance(first, dict):
            return {k: merge([v[k] for v in values if k in v], k) for k in first}
        if key in WORST_OF:
            return max(values)
        if isinstance(first, list) and all(len(v) == len(first) for v in values):
            return [merge([v[i] for v in values]) for i in range(len(first))]
        if all(type(v) is int for v in values):
            return statistics.median_low(values)  # counts stay whole
        if isinstance(first, int | float) and not isinstance(first, bool):
            return statistics.median(values)
        return first

    merged: dict[str, Any] = merge(runs)
    return merged


def medians(results: list[dict[str, Any]]) -> list[list[str]]:
    """One row per setting, each figure the median of that setting's runs."""
    groups: dict[tuple[int, int, str], list[dict[str, Any]]] = {}
    for result in results:
        groups.setdefault(setting(result), []).append(result)
    out = []
    for key in sorted(groups):
        cells = row(median_of(groups[key]))
        count = len(groups[key])
        cells[0] += f" ({count} run{'' if count == 1 else 's'})"
        out.append(cells)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.table", description=__doc__)
    parser.add_argument("results", help="a file of bench.run --json lines")
    args = parser.parse_args(argv)
    with open(args.results) as lines:
        results = [json.loads(line) for line in lines if line.strip()]
    print("Every run:\n")
    print(markdown(row(r) for r in results))
    print("\nMedians by setting:\n")
    print(markdown(medians(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
