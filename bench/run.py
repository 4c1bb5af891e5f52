"""The export pipeline end to end, timed: ``python -m bench.run --profiles N --workers W``.

What runs, each in its own process so its CPU time and peak memory are its
own: a private ``redis-server`` (broker, result backend and store); the
sandbox (``python -m sandbox``) with Klaviyo's published rate limits and a job
processing speed; ``W`` ``celery -A worker worker -c C`` processes; and the
producer, ``klaviyo-export run EXPORT --source SEGMENT`` as a user runs it.

The segment (``demo.sample``: an email, a first name, a plan and a
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
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import redis
import requests

from bench.components import (
    LIST_ID,
    REALISTIC_QUEUE_S,
    REALISTIC_SPEED,
    calibrate,
    cli,
    machine,
    py_spy,
    reap,
    redis_pid,
    sandbox,
    stop_on_sigterm,
    wait_for_workers,
)
from bench.procstat import Tree
from bench.report import print_human, report
from core.run_record import RunRecords
from core.secrets import generate_key
from demo.sample import write_sample
from demo.services import celery_workers, embedded_redis


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
            redis_tree = Tree("redis", redis_pid())
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
            connection = cli(
                env,
                "connection",
                "add",
                "--name",
                "Bench",
                "--api-key-env",
                "KX_BENCH_KEY",
                "--accept-privacy-terms",
            )
            export = cli(
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
            wait_for_workers(redis_url, args.workers)
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
                    "frontdoors.cli.main",
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
            stack.callback(reap, producer)
            if args.py_spy:
                pids = {"producer": producer.pid, "sandbox": sandbox_pid}
                pids |= {f"worker{i}": proc.pid for i, proc in enumerate(workers)}
                for label, pid in pids.items():
                    if args.py_spy_only in (None, label.rstrip("0123456789")):
                        stack.enter_context(py_spy(Path(args.py_spy), label, pid))
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
            runs = RunRecords(redis.Redis.from_url(redis_url))
            deadline = time.monotonic() + args.timeout
            while True:
                run = runs.get(run_id)
                if run.final:
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
            status = run.to_json()
            stats = requests.get(f"{sandbox_url}/_sandbox/stats", timeout=60).json()
            info["calibration_ms_after"] = calibrate()
            worker_logs = [workdir / f"worker{i}.log" for i in range(args.workers)]
        wall_s = status["finished_at"] - wall_start
        say(f"run {run_id}: {status['status']} in {wall_s:.1f} s")
        return report(
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop_on_sigterm()
    result = run(args)
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        print_human(result)
    return 0 if result["counts_match"] and result["http"]["throttled_429"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
