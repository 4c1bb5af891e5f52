"""What a benchmark run measured, as one JSON-able dict and as text.

The lower bound is what Klaviyo's bulk-import limits allow: see
:func:`lower_bound` and BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.procstat import Tree
from demo.sample import SampleMakeup

JOB_PROFILES = 10_000
BURST_PER_SECOND = 10
STEADY_PER_MINUTE = 150


def lower_bound(jobs: int, job_seconds: float) -> float:
    """Fastest finish Klaviyo's bulk-import limits allow for ``jobs`` jobs.

    Job ``k`` (from 0) cannot be created before second
    ``60 * (k // 150) + (k % 150) // 10`` (150 a minute, 10 a second, both
    from the start), and the last one must then be processed.
    """
    if jobs <= 0:
        return 0.0
    k = jobs - 1
    last_created = 60 * (k // STEADY_PER_MINUTE) + (k % STEADY_PER_MINUTE) // BURST_PER_SECOND
    return float(last_created) + job_seconds


def report(
    args: argparse.Namespace,
    info: dict[str, Any],
    makeup: SampleMakeup,
    generation_s: float,
    wall_start: float,
    wall_s: float,
    producer_s: float,
    usage: Any,
    status: dict[str, Any],
    stats: dict[str, Any],
    trees: list[Tree],
    sandbox_tree: Tree,
    redis_tree: Tree,
    worker_logs: list[Path],
) -> dict[str, Any]:
    rows = makeup.rows
    uploads_s = status["finished_at"] - (status["started_at"] or wall_start)
    expected = makeup.expected_counts()
    counts = {k: status["counts"][k] for k in expected}
    jobs = status["batches"]["total"]
    job_seconds = args.sandbox_queue_seconds + JOB_PROFILES / args.sandbox_speed
    bound = lower_bound(jobs, job_seconds)
    producer_cpu = usage.ru_utime + usage.ru_stime
    worker_cpu = sum(t.cpu_since_start() for t in trees)

    def per_row(seconds: float) -> float:
        return round(seconds / max(1, rows) * 1e6, 2)

    requests_total = stats["requests"]["total"]
    by_status = stats["requests"]["by_status"]
    return {
        "profiles": rows,
        "workers": args.workers,
        "concurrency": args.concurrency,
        "sandbox": {
            "job_profiles_per_second": args.sandbox_speed,
            "job_queue_seconds": args.sandbox_queue_seconds,
            "rate_limit_scale": args.rate_limit_scale,
        },
        "headroom": args.headroom,
        "machine": info,
        "generation_s": round(generation_s, 2),
        "wall_s": round(wall_s, 2),
        "producer_s": round(producer_s, 2),
        # From the chord's launch (the segment read and stored) to the run's end:
        # the part Klaviyo's limits bound, since nothing is sent before it.
        "uploads_s": round(uploads_s, 2),
        "profiles_per_s": round(rows / wall_s, 1) if wall_s > 0 else None,
        "status": status["status"],
        "counts": counts,
        "expected": expected,
        "counts_match": counts == expected,
        "batches": status["batches"],
        "cpu_s": {
            "producer": round(producer_cpu, 2),
            "workers": round(worker_cpu, 2),
            "sandbox": round(sandbox_tree.cpu_since_start(), 2),
            "redis": round(redis_tree.cpu_since_start(), 2),
        },
        "cpu_us_per_profile": {
            "producer": per_row(producer_cpu),
            "workers": per_row(worker_cpu),
            "sandbox": per_row(sandbox_tree.cpu_since_start()),
            "redis": per_row(redis_tree.cpu_since_start()),
        },
        "peak_rss_mb": {
            "producer": round(usage.ru_maxrss / 1024, 1),
            "workers": [{"main": t.peak_mb(), "children": t.child_peaks_mb()} for t in trees],
            "sandbox": sandbox_tree.peak_mb(),
            "redis": redis_tree.peak_mb(),
        },
        "http": {
            "requests": requests_total,
            "throttled_429": by_status.get("429", 0),
            "by_operation": stats["requests"]["by_operation"],
            "by_status": by_status,
            "busiest_windows": _busiest(stats),
        },
        "worker_log": _worker_log(worker_logs, wall_start),
        "lower_bound": {
            "seconds": round(bound, 2),
            "jobs": jobs,
            "job_seconds": round(job_seconds, 2),
            "formula": "60*floor((J-1)/150) + floor(((J-1) mod 150)/10) + queue + 10000/speed",
        },
        "ratio_to_lower_bound": round(wall_s / bound, 2) if bound > 0 else None,
        "uploads_ratio_to_lower_bound": round(uploads_s / bound, 2) if bound > 0 else None,
    }


def _busiest(stats: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per rate-limited operation: the most requests the sandbox saw in one of its
    fixed 1 s and 60 s windows (what Klaviyo enforces), next to the limits."""
    out: dict[str, dict[str, Any]] = {}
    for operations in stats.get("accounts", {}).values():
        for name, seen in operations.items():
            if seen.get("limit_burst") is None or seen["limit_burst"] > BURST_PER_SECOND:
                continue  # only the 10/s, 150/min operations a run leans on
            out[name] = {
                "max_1s": seen["max_fixed_1s"],
                "max_60s": seen["max_fixed_60s"],
                "limits": [seen["limit_burst"], seen["limit_steady"]],
            }
    return out


def _worker_log(logs: list[Path], wall_start: float) -> dict[str, Any]:
    """Why upload tasks were put back, and when jobs were submitted (from -l info logs)."""
    reasons: dict[str, int] = {}
    submitted: list[float] = []
    for log in logs:
        try:
            text = log.read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            if "; again in " not in line:
                continue
            reason = line.split(": ", 2)[-1].split("; again in ")[0]
            if reason == "job submitted":
                stamp = line[1:24]  # "[2026-11-22 17:25:20,414: INFO/..."
                try:
                    when = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
                except ValueError:
                    pass
                else:
                    submitted.append(when - wall_start)
            elif reason.startswith("job "):
                reason = "job not done yet"
            reasons[reason] = reasons.get(reason, 0) + 1
    return {
        "retries": reasons,
        "first_job_submitted_s": round(min(submitted), 2) if submitted else None,
        "last_job_submitted_s": round(max(submitted), 2) if submitted else None,
    }


def print_human(result: dict[str, Any]) -> None:
    cpu = result["cpu_us_per_profile"]
    peak = result["peak_rss_mb"]
    http = result["http"]
    bound = result["lower_bound"]
    print(
        f"{result['profiles']:,} profiles, {result['workers']} worker(s) x "
        f"{result['concurrency']}, sandbox {result['sandbox']['job_profiles_per_second']:,.0f} "
        f"profiles/s after {result['sandbox']['job_queue_seconds']} s queued"
    )
    print(f"  status            {result['status']} (counts match sample: {result['counts_match']})")
    machine = result["machine"]
    print(
        f"  machine           {machine['nproc']} x {machine['cpu_model']}; calibration "
        f"{machine['calibration_ms_before']} / {machine['calibration_ms_after']} ms (lower: faster)"
    )
    print(
        f"  wall time         {result['wall_s']:.1f} s (producer {result['producer_s']:.1f} s, "
        f"uploads from the chord's launch {result['uploads_s']:.1f} s)"
    )
    print(f"  throughput        {result['profiles_per_s']:,.0f} profiles/s")
    print(
        "  CPU us/profile    "
        + ", ".join(f"{name} {value:.1f}" for name, value in cpu.items())
        + f"  (CPU s: {', '.join(f'{k} {v}' for k, v in result['cpu_s'].items())})"
    )
    workers = "; ".join(
        f"w{i} {w['main']} + children {w['children']}" for i, w in enumerate(peak["workers"])
    )
    print(f"  peak RSS MB       producer {peak['producer']}; {workers}")
    print(f"                    sandbox {peak['sandbox']}; redis {peak['redis']}")
    print(f"  HTTP              {http['requests']} requests, {http['throttled_429']} x 429")
    print(f"                    {http['by_operation']}")
    busiest = ", ".join(
        f"{op} {w['max_1s']}/s {w['max_60s']}/min (limits {w['limits'][0]}, {w['limits'][1]})"
        for op, w in http["busiest_windows"].items()
    )
    print(f"  busiest windows   {busiest}")
    log = result["worker_log"]
    print(
        f"  upload tasks      jobs submitted from {log['first_job_submitted_s']} s to "
        f"{log['last_job_submitted_s']} s; put back: {log['retries']}"
    )
    print(
        f"  lower bound       {bound['seconds']:.1f} s ({bound['jobs']} jobs, "
        f"{bound['job_seconds']} s a job); wall/bound = {result['ratio_to_lower_bound']}, "
        f"uploads/bound = {result['uploads_ratio_to_lower_bound']}"
    )
