"""The status endpoint hammered while a run uploads: ``python -m bench.api_status``.

What runs, each in its own process, as ``bench.run`` starts them: a private
``redis-server``, the sandbox with Klaviyo's published rate limits and the
realistic job speed, ``W`` workers, and ``klaviyo-export serve`` (the API,
which also reads the segment of each run it starts, in a process of its own).
The load generator is a process too (``bench.status_load``): a few threads,
each with one keep-alive ``http.client`` connection, sending
``GET /api/v1/runs/{id}`` with an admin token back to back.

Each run is started by ``POST /api/v1/exports/{id}/runs`` on a fresh export
bound to the same segment (a second run of one export sends only what
changed), and is either *hammered* (the load runs from the 202 to the run's
end) or *quiet*. Runs alternate, hammered first in odd rounds and quiet first
in even ones, so that a drift of the shared machine falls on both kinds. A
quiet warm-up run comes first and is left out of the figures: the sandbox's
list starts empty, and a first import into it is cheaper than the later ones
(they update the profiles it holds), which would favour whichever run came first.

Printed: for each hammered run, requests/s and latency percentiles while the
server reads the segment and while the workers upload; for every run, the
read, uploads and wall seconds (from the run's own ``created_at``,
``started_at``, ``finished_at``) and the server's CPU seconds; then the
medians of each kind and hammered/quiet as ratios. Figures only: nothing is
asserted. ``--json`` prints one JSON object (the last line) instead.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
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
    sandbox,
    stop_on_sigterm,
    wait_for_workers,
)
from bench.procstat import Tree
from bench.status_load import BEARER_ENV, load_generator, load_results, tell
from core.run_record import RunRecords
from core.secrets import generate_key
from demo.sample import write_sample
from demo.services import celery_workers, embedded_redis, free_port, stop

# -- The pipeline and the runs ---------------------------------------------------------------


@contextmanager
def api_server(env: dict[str, str], workdir: Path, flags: list[str]) -> Iterator[tuple[str, int]]:
    """``klaviyo-export serve FLAGS`` on a free port; yields (base URL, pid)."""
    port = free_port()
    command = [sys.executable, "-m", "frontdoors.cli.main", "serve", "--port", str(port)]
    with open(workdir / "api.log", "wb") as log:
        proc = subprocess.Popen([*command, *flags], env=env, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if requests.get(f"{base}/healthz", timeout=1).ok:
                        break
                except requests.RequestException:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the API did not start; see {workdir}/api.log")
                time.sleep(0.1)
            yield base, proc.pid
        finally:
            stop(proc)


@dataclass(frozen=True)
class Bench:
    """What every run of one benchmark shares."""

    env: dict[str, str]
    base: str  # the API's URL
    server: Tree  # the API server's process
    connection: str
    segment: Path
    expected: dict[str, int]  # the counts every run must report
    connections: int
    timeout: float

    def start(self, export_id: str) -> str:
        headers = {"Authorization": f"Bearer {self.env[BEARER_ENV]}"}
        url = f"{self.base}/api/v1/exports/{export_id}/runs"
        answer = requests.post(url, headers=headers, timeout=60)
        answer.raise_for_status()
        return str(answer.json()["run_id"])

    def export(self) -> str:
        """A fresh export bound to the segment (a second run of one would send
        only what changed)."""
        properties = [w for name in ("first_name", "plan", "score") for w in ("--property", name)]
        return str(
            cli(
                self.env, "export", "add", "--connection", self.connection, "--list-id", LIST_ID,
                "--email-field", "email", *properties, "--segment", str(self.segment),
            )["id"]
        )  # fmt: skip


def one_run(bench: Bench, hammered: bool) -> dict[str, Any]:
    """Start a run of a fresh export over HTTP, hammered or not; follow it to its end."""
    export_id = bench.export()
    runs = RunRecords(redis.Redis.from_url(bench.env["REDIS_URL"]))
    with ExitStack() as stack:
        load = (
            stack.enter_context(load_generator(bench.env, bench.connections)) if hammered else None
        )
        bench.server.start()
        run_id = bench.start(export_id)
        if load:
            tell(load, f"{bench.base}/api/v1/runs/{run_id}")
        deadline, marked = time.monotonic() + bench.timeout, False
        while True:
            run = runs.get(run_id)
            if load and run.started_at is not None and not marked:
                tell(load, "uploads")  # the segment is read: the chord is out
                marked = True
            if run.final:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"run {run_id} not finished after {bench.timeout} s")
            time.sleep(0.05)
        bench.server.sample()
        figures: dict[str, Any] = {"hammered": hammered, "run_id": run_id}
        if load:
            figures["load"] = load_results(load)
    counts = {name: getattr(run.counts, name) for name in bench.expected}
    started = run.started_at or run.created_at
    finished = run.finished_at or started
    return figures | {
        "status": run.status.value,
        "counts": counts,
        "counts_match": counts == bench.expected,
        "read_s": round(started - run.created_at, 2),
        "uploads_s": round(finished - started, 2),
        "wall_s": round(finished - run.created_at, 2),
        "server_cpu_s": round(bench.server.cpu_since_start(), 2),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="kx-bench-api-"))

    def say(text: str) -> None:
        if not args.json:
            print(text, file=sys.stderr, flush=True)

    info = machine()
    sandbox_settings = argparse.Namespace(
        sandbox_speed=REALISTIC_SPEED,
        sandbox_queue_seconds=REALISTIC_QUEUE_S,
        rate_limit_scale=1.0,  # Klaviyo's published limits
        sandbox_log_level="WARNING",
    )
    try:
        segment = workdir / "segment.csv"
        makeup = write_sample(segment, args.profiles, keep_emails=False)
        api_key = "pk_" + secrets.token_hex(17)
        with ExitStack() as stack:
            redis_url = stack.enter_context(embedded_redis())
            sandbox_url, _ = stack.enter_context(sandbox(sandbox_settings, api_key, workdir))
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
            connection = cli(
                env, "connection", "add", "--name", "Bench", "--api-key-env", "KX_BENCH_KEY",
                "--accept-privacy-terms",
            )  # fmt: skip
            token = cli(env, "token", "add", "--name", "bench", "--role", "admin")
            env[BEARER_ENV] = str(token["token"])
            workers = celery_workers(
                env, count=args.workers, concurrency=args.concurrency, log_dir=workdir
            )
            stack.enter_context(workers)
            wait_for_workers(redis_url, args.workers)
            flags = ["--log-level", args.server_log_level, "--workers", str(args.server_workers)]
            base, pid = stack.enter_context(api_server(env, workdir, flags))
            bench = Bench(
                env, base, Tree("api", pid), str(connection["id"]), segment,
                makeup.expected_counts(), args.connections, args.timeout,
            )  # fmt: skip
            say(f"{args.profiles:,} profiles; API {base}, {args.workers} worker(s); {workdir}")
            warmup = one_run(bench, hammered=False)
            say(f"warm-up run (left out): {warmup['wall_s']:.1f} s")
            info["calibration_ms_before"] = calibrate()
            runs = []
            for round_number in range(args.rounds):
                for hammered in (True, False) if round_number % 2 == 0 else (False, True):
                    runs.append(one_run(bench, hammered))
                    kind = "hammered" if hammered else "quiet"
                    say(f"run {len(runs)} ({kind}): {runs[-1]['wall_s']:.1f} s")
            info["calibration_ms_after"] = calibrate()
        return summarize(args, info, runs) | {"warmup": warmup}
    finally:
        if args.keep:
            say(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


# -- Figures ---------------------------------------------------------------------------------


def describe(one: dict[str, Any]) -> str:
    kind = "hammered" if one["hammered"] else "quiet   "
    line = (
        f"{kind} run {one['run_id']}: {one['status']}, read {one['read_s']:.1f} s + uploads "
        f"{one['uploads_s']:.1f} s = {one['wall_s']:.1f} s; server CPU {one['server_cpu_s']:.1f} s"
    )
    if "load" in one:
        line += f"; load generator CPU {one['load']['cpu_s']:.1f} s"
    for phase, got in one.get("load", {}).get("phases", {}).items():
        line += (
            f"\n    {phase:8} {got['requests_per_s'] or 0:7.0f} req/s, p50 {got['p50_ms']} ms, "
            f"p90 {got['p90_ms']} ms, p99 {got['p99_ms']} ms, max {got['max_ms']} ms, "
            f"{got['errors']} errors of {got['requests']:,}"
        )
    return line


def summarize(
    args: argparse.Namespace, info: dict[str, Any], runs: list[dict[str, Any]]
) -> dict[str, Any]:
    medians: dict[str, dict[str, float]] = {}
    for kind, hammered in (("hammered", True), ("quiet", False)):
        group = [one for one in runs if one["hammered"] is hammered]
        names = ("read_s", "uploads_s", "wall_s", "server_cpu_s")
        medians[kind] = {
            name: round(statistics.median(o[name] for o in group), 2) for name in names
        }
    ratios = {
        name: round(medians["hammered"][name] / medians["quiet"][name], 3)
        if medians["quiet"][name]
        else None
        for name in ("read_s", "uploads_s", "wall_s")
    }
    uploads = [one["load"]["phases"].get("uploads", {}) for one in runs if "load" in one]
    rates = [phase.get("requests_per_s") or 0 for phase in uploads]
    settings = "profiles workers concurrency connections server_workers server_log_level"
    return {name: getattr(args, name) for name in settings.split()} | {
        "machine": info,
        "runs": runs,
        "medians": medians,
        "hammered_over_quiet": ratios,
        "uploads_requests_per_s_median": statistics.median(rates),
        "counts_match": all(one["counts_match"] for one in runs),
    }


def print_human(result: dict[str, Any]) -> None:
    info = result["machine"]
    print(
        f"{result['profiles']:,} profiles, {result['workers']} workers, "
        f"{result['server_workers']} server process(es), {result['connections']} load "
        f"connections; {info['nproc']} CPUs, load average "
        f"{info['load_avg_1m_at_start']} at the start, calibration "
        f"{info['calibration_ms_before']} / {info['calibration_ms_after']} ms"
    )
    print("warm-up, left out: " + describe(result["warmup"]).strip())
    for one in result["runs"]:
        print(describe(one))
    for kind, got in result["medians"].items():
        print(
            f"median {kind:8}: read {got['read_s']} s, uploads {got['uploads_s']} s, "
            f"wall {got['wall_s']} s, server CPU {got['server_cpu_s']} s"
        )
    ratios = result["hammered_over_quiet"]
    print(
        f"hammered / quiet: wall {ratios['wall_s']}, read {ratios['read_s']}, "
        f"uploads {ratios['uploads_s']}; status answers during uploads (median) "
        f"{result['uploads_requests_per_s_median']} req/s"
    )
    print("counts match the sample" if result["counts_match"] else "MISMATCH in some run's counts")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.api_status", description=(__doc__ or "").split("\n")[0]
    )
    add = parser.add_argument
    add("--profiles", type=int, default=1_000_000, help="rows in the segment (%(default)s)")
    add("--workers", type=int, default=2, help="celery worker processes (%(default)s)")
    add("--concurrency", type=int, default=2, help="pool processes per worker (%(default)s)")
    add("--rounds", type=int, default=2, help="pairs of runs, hammered and quiet (%(default)s)")
    add("-c", "--connections", type=int, default=8, help="load generator connections (%(default)s)")
    add(
        "--server-log-level",
        default="warning",
        choices=["warning", "info"],
        help="the API server's log level (%(default)s)",
    )
    add("--server-workers", type=int, default=1, help="`serve --workers` (%(default)s)")
    add("--timeout", type=float, default=1800, help="give up on a run after this many seconds")
    add("--json", action="store_true", help="print one JSON object")
    add("--keep", action="store_true", help="keep the working directory")
    args = parser.parse_args(argv)
    counts = (args.profiles, args.workers, args.concurrency, args.rounds, args.connections)
    if min(*counts, args.server_workers) < 1:
        parser.error("every count must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop_on_sigterm()
    result = run(args)
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        print_human(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
