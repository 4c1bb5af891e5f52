"""The export pipeline end to end, timed: ``python -m bench.run --profiles N --workers W``.

What runs, each in its own process so its CPU time and peak memory are its
own: a private ``redis-server`` (broker, result backend and store); the
sandbox (``python -m sandbox``) with Klaviyo's published rate limits and a job
processing speed; ``W`` ``celery -A worker worker -c C`` processes; and the
producer, ``klaviyo-export run EXPORT --source SEGMENT`` as a user runs it.

The segment (``klaviyo_export.sample``: an email, a first name, a plan and a
score; about 2% invalid, 1% missing and 2% duplicate emails, 0.5% that the
sandbox fails) is written, and the connection and export added, before the
clock starts; the workers are up and answering a ping too. The clock runs
from the producer's start to the run's ``finished_at``.

Printed: the wall time, profiles/s, CPU microseconds per input row of each
component (producer, workers with their pool children, sandbox, Redis), peak
resident memory (``VmHWM``) of the producer, of each worker process and its
pool children, and of the sandbox; the sandbox's HTTP request count and 429s;
and the lower bound Klaviyo's limits allow (:func:`lower_bound`).

``--json`` prints one JSON object instead (the last line), which the CI smoke
test checks; ``--keep`` keeps the working directory (segment, worker logs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

import redis
import requests

from bench.procstat import Tree, children_of, read
from klaviyo_export.runs import Runs
from klaviyo_export.sample import FAIL_EMAIL_PATTERN, SampleMakeup, write_sample
from klaviyo_export.secrets import generate_key
from klaviyo_export.services import celery_workers, embedded_redis, free_port
from schemas.contracts import FINAL_RUN_STATUSES

LIST_ID = "BeNch1"
JOB_PROFILES = 10_000
BURST_PER_SECOND = 10
STEADY_PER_MINUTE = 150
# A "realistic" Klaviyo: Klaviyo publishes no job speed. We assume a job is
# queued a second and then imports 5,000 profiles/s (3 s for a full job).
# The sandbox's own default (0.2 s queued, 50,000/s) is the "fast" setting.
REALISTIC_SPEED = 5_000.0
REALISTIC_QUEUE_S = 1.0


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


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "mem_gb": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
    }


def calibrate() -> float:
    """CPU milliseconds of a fixed pure-Python workload: how fast this machine is
    right now (a shared host's speed drifts; compare runs with similar figures)."""
    started = time.process_time()
    table: dict[int, int] = {}
    for i in range(400_000):
        table[i & 4095] = table.get(i & 4095, 0) + len(str(i))
    return round((time.process_time() - started) * 1000, 1)


def _cli(env: dict[str, str], *args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "klaviyo_export.cli", *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"klaviyo-export {args[0]} {args[1]} failed: {proc.stderr.strip()}")
    answer: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return answer


@contextmanager
def sandbox(args: argparse.Namespace, api_key: str, workdir: Path) -> Iterator[tuple[str, int]]:
    """``python -m sandbox`` on a free port; yields (base URL, pid)."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "sandbox",
        "--port",
        str(port),
        "--api-key",
        api_key,
        "--list",
        f"{LIST_ID}:Benchmark",
        "--job-profiles-per-second",
        str(args.sandbox_speed),
        "--job-queue-seconds",
        str(args.sandbox_queue_seconds),
        "--rate-limit-scale",
        str(args.rate_limit_scale),
        "--fail-email",
        FAIL_EMAIL_PATTERN,
        "--log-level",
        args.sandbox_log_level,
    ]
    with open(workdir / "sandbox.log", "wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if requests.get(f"{url}/_sandbox/health", timeout=1).ok:
                        break
                except requests.RequestException:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the sandbox did not start; see {workdir}/sandbox.log")
                time.sleep(0.1)
            yield url, proc.pid
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def _py_spy(directory: Path, label: str, pid: int) -> Iterator[None]:
    """Sample ``pid`` (and its children) with py-spy into DIRECTORY/LABEL.txt (collapsed)."""
    directory.mkdir(parents=True, exist_ok=True)
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    proc = subprocess.Popen(
        [
            spy,
            "record",
            "--pid",
            str(pid),
            "--subprocesses",
            "--rate",
            "200",
            "--format",
            "raw",
            "--output",
            str(directory / f"{label}.txt"),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        proc.send_signal(2)  # SIGINT: py-spy writes what it has and exits
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _reap(proc: subprocess.Popen[bytes]) -> None:
    """Stop the producer if the benchmark is cut short while it runs."""
    if proc.returncode is None and proc.poll() is None:
        proc.terminate()
        proc.wait()


def _wait_for_workers(broker_url: str, count: int, timeout: float = 60) -> None:
    from celery import Celery

    app = Celery("bench", broker=broker_url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            replies = app.control.ping(timeout=0.5)
            if len(replies) >= count:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(replies)} of {count} workers answered a ping")
    finally:
        app.close()


def _redis_pid() -> int:
    """The redis-server ``embedded_redis`` started (a child of this process)."""
    for pid in children_of(os.getpid()):
        got = read(pid)
        if got is not None and "redis" in got.name:
            return pid
    raise RuntimeError("cannot find the embedded redis-server")


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="kx-bench-", dir=args.workdir))

    def say(text: str) -> None:
        if not args.json:
            print(text, file=sys.stderr, flush=True)

    info = machine()
    try:
        segment = workdir / "segment.csv"
        started = time.perf_counter()
        makeup = write_sample(segment, args.profiles, keep_emails=False)
        generation_s = time.perf_counter() - started
        say(f"segment: {makeup.rows:,} rows in {generation_s:.1f} s (not timed), {segment}")
        api_key = "pk_" + secrets.token_hex(17)
        with ExitStack() as stack:
            redis_url = stack.enter_context(embedded_redis())
            redis_tree = Tree("redis", _redis_pid())
            sandbox_url, sandbox_pid = stack.enter_context(sandbox(args, api_key, workdir))
            env = {
                **os.environ,
                "REDIS_URL": redis_url,
                "KLAVIYO_BASE_URL": sandbox_url,
                "KLAVIYO_EXPORT_SECRET_KEY": generate_key(),
                "KLAVIYO_EXPORT_USER": "bench",
                "KLAVIYO_EXPORT_ROLE": "admin",
                "KLAVIYO_EXPORT_MAX_PROFILES_PER_RUN": "0",
                "KX_BENCH_KEY": api_key,
            }
            if args.headroom is not None:
                env["KLAVIYO_EXPORT_RATE_HEADROOM"] = str(args.headroom)
            for item in args.env:
                name, _, value = item.partition("=")
                env[name] = value
            connection = _cli(
                env,
                "connection",
                "add",
                "--name",
                "Bench",
                "--api-key-env",
                "KX_BENCH_KEY",
                "--accept-privacy-terms",
            )
            export = _cli(
                env,
                "export",
                "add",
                "--connection",
                str(connection["id"]),
                "--list-id",
                LIST_ID,
                "--email-field",
                "email",
                "--property",
                "first_name",
                "--property",
                "plan",
                "--property",
                "score",
            )
            workers = stack.enter_context(
                celery_workers(
                    env,
                    count=args.workers,
                    concurrency=args.concurrency,
                    log_dir=workdir,
                    loglevel="info",
                )
            )
            _wait_for_workers(redis_url, args.workers)
            say(
                f"redis {redis_url}, sandbox {sandbox_url}, {args.workers} worker(s) x "
                f"{args.concurrency}; exporting"
            )
            trees = [Tree(f"worker{i}", proc.pid) for i, proc in enumerate(workers)]
            sandbox_tree = Tree("sandbox", sandbox_pid)
            for tree in (*trees, sandbox_tree, redis_tree):
                tree.start()

            def sample() -> None:
                for tree in (*trees, sandbox_tree, redis_tree):
                    tree.sample()

            info["calibration_ms_before"] = calibrate()
            wall_start = time.time()
            producer = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "klaviyo_export.cli",
                    "run",
                    str(export["id"]),
                    "--source",
                    str(segment),
                    "--json",
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            stack.callback(_reap, producer)
            if args.py_spy:
                pids = {"producer": producer.pid, "sandbox": sandbox_pid}
                pids |= {f"worker{i}": proc.pid for i, proc in enumerate(workers)}
                for label, pid in pids.items():
                    if args.py_spy_only in (None, label.rstrip("0123456789")):
                        stack.enter_context(_py_spy(Path(args.py_spy), label, pid))
            # Poll for the producer's exit while sampling the others; wait4
            # then gives its own CPU time and peak RSS.
            sampled = float("-inf")
            while True:
                pid, wait_status, usage = os.wait4(producer.pid, os.WNOHANG)
                if pid:
                    break
                if time.monotonic() - sampled >= 0.5:
                    sample()
                    sampled = time.monotonic()
                time.sleep(0.05)
            producer.returncode = os.waitstatus_to_exitcode(wait_status)
            producer_s = time.time() - wall_start
            out, err = producer.communicate()
            if producer.returncode != 0:
                raise RuntimeError(f"the producer failed: {err.decode().strip()}")
            run_id = json.loads(out.decode().strip().splitlines()[-1])["run_id"]
            runs = Runs(redis.Redis.from_url(redis_url))
            deadline = time.monotonic() + args.timeout
            while True:
                status = runs.status(run_id)
                if status["status"] in FINAL_RUN_STATUSES:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"run {run_id} not finished after {args.timeout} s")
                if time.monotonic() - sampled >= 0.5:
                    sample()
                    sampled = time.monotonic()
                time.sleep(0.1)
            for tree in (*trees, sandbox_tree, redis_tree):
                tree.rescan_every = 0.0  # a last full look, children included
            sample()
            stats = requests.get(f"{sandbox_url}/_sandbox/stats", timeout=60).json()
            info["calibration_ms_after"] = calibrate()
            worker_logs = [workdir / f"worker{i}.log" for i in range(args.workers)]
        wall_s = status["finished_at"] - wall_start
        say(f"run {run_id}: {status['status']} in {wall_s:.1f} s")
        return _report(
            args,
            info,
            makeup,
            generation_s,
            wall_start,
            wall_s,
            producer_s,
            usage,
            status,
            stats,
            trees,
            sandbox_tree,
            redis_tree,
            worker_logs,
        )
    finally:
        if args.keep:
            say(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _report(
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
    counts = {k: status["counts"][k] for k in ("rows_read", "rejected", "submitted")}
    counts |= {k: status["counts"][k] for k in ("imported", "failed")}
    expected = {
        "rows_read": makeup.rows,
        "rejected": makeup.rejected,
        "submitted": makeup.valid,
        "imported": makeup.imported,
        "failed": makeup.klaviyo_fails,
    }
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


def _print_human(result: dict[str, Any]) -> None:
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
    print(f"  wall time         {result['wall_s']:.1f} s (producer {result['producer_s']:.1f} s)")
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
        f"{bound['job_seconds']} s a job); wall/bound = {result['ratio_to_lower_bound']}"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--profiles", type=int, default=100_000, help="rows in the segment (%(default)s)")
    add("--workers", type=int, default=2, help="celery worker processes (%(default)s)")
    add("--concurrency", type=int, default=2, help="pool processes per worker (%(default)s)")
    add(
        "--sandbox-speed",
        type=float,
        default=REALISTIC_SPEED,
        help="job processing speed, profiles/s (%(default)s; the sandbox's own default, "
        "50000, is the 'fast' setting)",
    )
    add(
        "--sandbox-queue-seconds",
        type=float,
        default=REALISTIC_QUEUE_S,
        help="seconds a job stays queued before processing (%(default)s)",
    )
    add(
        "--rate-limit-scale",
        type=float,
        default=1.0,
        help="sandbox rate limits x this; 1 = Klaviyo's published limits (%(default)s)",
    )
    add(
        "--sandbox-log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING"],
        help="DEBUG logs every request with its duration to sandbox.log (%(default)s)",
    )
    add("--headroom", type=float, default=None, help="KLAVIYO_EXPORT_RATE_HEADROOM for workers")
    add(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for every process, repeatable",
    )
    add("--timeout", type=float, default=1800, help="give up on the run after this many seconds")
    add("--workdir", default=None, help="parent of the working directory (default: TMPDIR)")
    add("--py-spy", metavar="DIR", help="profile every component with py-spy into DIR")
    add(
        "--py-spy-only",
        choices=["producer", "sandbox", "worker"],
        help="with --py-spy, profile only this component",
    )
    add("--json", action="store_true", help="print one JSON object")
    add("--keep", action="store_true", help="keep the working directory")
    args = parser.parse_args(argv)
    if args.profiles < 1 or args.workers < 1 or args.concurrency < 1:
        parser.error("--profiles, --workers and --concurrency must be at least 1")
    if args.sandbox_speed <= 0 or args.sandbox_queue_seconds < 0:
        parser.error("--sandbox-speed must be > 0 and --sandbox-queue-seconds >= 0")
    return args


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds: every process the benchmark started is stopped


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    result = run(args)
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        _print_human(result)
    return 0 if result["counts_match"] and result["http"]["throttled_429"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
