"""The processes a benchmark run starts and watches: the sandbox, py-spy, the
workers' readiness, the embedded Redis's pid; and what the machine is.

Each runs as its own process so that ``bench.procstat`` can charge CPU time
and memory to it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import requests

from bench.procstat import children_of, read
from demo.sample import FAIL_EMAIL_PATTERN
from demo.services import free_port

LIST_ID = "BeNch1"
# A "realistic" Klaviyo: Klaviyo publishes no job speed. We assume a job is
# queued a second and then imports 5,000 profiles/s (3 s for a full job).
# The sandbox's own default (0.2 s queued, 50,000/s) is the "fast" setting.
REALISTIC_SPEED = 5_000.0
REALISTIC_QUEUE_S = 1.0


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


def cli(env: dict[str, str], *args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "frontdoors.cli.main", *args, "--json"],
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
def py_spy(directory: Path, label: str, pid: int) -> Iterator[None]:
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


def reap(proc: subprocess.Popen[bytes]) -> None:
    """Stop the producer if the benchmark is cut short while it runs."""
    if proc.returncode is None and proc.poll() is None:
        proc.terminate()
        proc.wait()


def wait_for_workers(broker_url: str, count: int, timeout: float = 60) -> None:
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


def redis_pid() -> int:
    """The redis-server ``embedded_redis`` started (a child of this process)."""
    for pid in children_of(os.getpid()):
        got = read(pid)
        if got is not None and "redis" in got.name:
            return pid
    raise RuntimeError("cannot find the embedded redis-server")


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds: every process the benchmark started is stopped


def stop_on_sigterm() -> None:
    """SIGTERM ends a benchmark as Ctrl-C does: through its ``finally`` blocks."""
    signal.signal(signal.SIGTERM, _stop)
