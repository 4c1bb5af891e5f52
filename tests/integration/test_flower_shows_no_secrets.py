"""Flower watches a real export behind basic auth, and shows no secret.

Real Redis, the sandbox over HTTP, two real ``celery worker`` processes, a
real Flower (``celery -A worker flower``) and the ``klaviyo-export`` command.
Task arguments are ids only, so neither Flower's task list nor the logs may
hold the connection's API key or any email of the segment.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests

from demo.sample import FAIL_EMAIL_PATTERN, write_sample
from demo.services import stop
from schemas import tasks
from tests.support.pipeline import LIST_ID, Pipeline, pipeline
from tests.support.services import free_port, redis_server

AUTH = ("test", "secretpw")
WORKERS = 2
T = TypeVar("T")


def poll(check: Callable[[], T], what: str, proc: subprocess.Popen[bytes], limit: float = 60) -> T:
    """Call ``check`` until it returns something true; fail after ``limit`` s."""
    deadline = time.monotonic() + limit
    while True:
        value = check()
        if value:
            return value
        if proc.poll() is not None:
            pytest.fail(f"flower exited ({proc.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.2)


def _get(url: str, **kwargs: Any) -> requests.Response | None:
    try:
        return requests.get(url, timeout=10, **kwargs)
    except requests.ConnectionError:
        return None


@dataclass
class Flower:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def api(self, path: str) -> requests.Response:
        answer = requests.get(f"{self.url}{path}", auth=AUTH, timeout=30)
        answer.raise_for_status()
        return answer


@contextmanager
def flower(env: dict[str, str], broker_url: str, workdir: Path) -> Iterator[Flower]:
    """Flower as an operator starts it, on a free loopback port."""
    port = free_port()
    # FLOWER_* variables set Flower options: none from the developer's shell.
    env = {name: value for name, value in env.items() if not name.startswith("FLOWER_")}
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker",
        f"--broker={broker_url}",
        "flower",
        "--address=127.0.0.1",
        f"--port={port}",
        f"--basic-auth={AUTH[0]}:{AUTH[1]}",
    ]
    log = workdir / "flower.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        running = Flower(f"http://127.0.0.1:{port}", proc, log)
        try:
            poll(lambda: _get(f"{running.url}/healthcheck"), "flower's /healthcheck", proc)
            yield running
        finally:
            stop(proc)


@dataclass
class Watched:
    kx: Pipeline
    flower: Flower
    summary: dict[str, Any]
    emails: list[str]


def _segment_emails(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as handle:
        return [row["email"].strip() for row in csv.DictReader(handle) if row["email"].strip()]


def _alive_workers(running: Flower) -> list[str]:
    """Workers whose events Flower receives (so it will see their tasks)."""
    state = running.api("/api/workers?status=true").json()
    return [name for name, alive in state.items() if alive]


def _succeeded(running: Flower, name: str) -> list[dict[str, Any]]:
    listed = running.api(f"/api/tasks?taskname={name}&state=SUCCESS").json()
    return list(listed.values())


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Watched]:
    tmp = tmp_path_factory.mktemp("flower")
    with (
        redis_server() as url,
        pipeline(url, tmp, workers=WORKERS, fail_email=FAIL_EMAIL_PATTERN, loglevel="debug") as kx,
        flower(kx.env, url, tmp) as running,
    ):
        poll(lambda: len(_alive_workers(running)) == WORKERS, "both workers", running.proc)
        segment = tmp / "segment.csv"
        makeup = write_sample(segment, 600, seed=5)
        assert makeup.klaviyo_fails, "the sample should hold rows Klaviyo fails"
        kx.env["KLAVIYO_EXPORT_BATCH_PROFILES"] = "100"  # several upload tasks
        export_id = kx.add_export(kx.add_connection(), LIST_ID, "--property", "first_name")

        code, summary = kx.cli_json("run", export_id, "--source", str(segment), "--wait")

        assert (code, summary["status"]) == (1, "partially_succeeded")
        assert summary["batches"]["done"] == summary["batches"]["total"] > 1
        batches = summary["batches"]["total"]
        poll(
            lambda: (
                len(_succeeded(running, tasks.UPLOAD_BATCH)) == batches
                and _succeeded(running, tasks.FINALIZE_RUN)
            ),
            "flower to see every task succeed",
            running.proc,
        )
        yield Watched(kx, running, summary, _segment_emails(segment))


def test_healthcheck_answers_without_credentials(watched: Watched) -> None:
    answer = requests.get(f"{watched.flower.url}/healthcheck", timeout=10)
    assert (answer.status_code, answer.text) == (200, "OK")


@pytest.mark.parametrize("auth", [None, ("test", "wrong"), ("nobody", "secretpw")])
def test_api_refuses_requests_without_the_password(
    watched: Watched, auth: tuple[str, str] | None
) -> None:
    for path in ("/api/workers", "/api/tasks"):
        answer = requests.get(f"{watched.flower.url}{path}", auth=auth, timeout=10)
        assert answer.status_code == 401, path


def test_api_lists_the_workers(watched: Watched) -> None:
    workers = watched.flower.api("/api/workers?refresh=true").json()
    for i in range(WORKERS):
        (name,) = [n for n in workers if n.startswith(f"w{i}-{os.getpid()}@")]
        assert workers[name]["stats"]["pool"]["max-concurrency"] == 2
        queues = {queue["name"] for queue in workers[name]["active_queues"]}
        assert queues == set(tasks.WORKER_QUEUES)


def test_the_export_s_tasks_succeeded(watched: Watched) -> None:
    run_id = watched.summary["run_id"]
    uploads = _succeeded(watched.flower, tasks.UPLOAD_BATCH)
    finals = _succeeded(watched.flower, tasks.FINALIZE_RUN)
    assert len(uploads) == watched.summary["batches"]["total"]
    assert all(run_id in task["args"] for task in uploads)
    (final,) = finals
    assert run_id in final["result"]
    assert "partially_succeeded" in final["result"]


def _leaks(text: str, watched: Watched) -> list[str]:
    lowered = text.lower()
    found = [e for e in watched.emails if e.lower() in lowered]
    if watched.kx.api_key in text:
        found.append("the API key")
    return found


def test_flower_shows_no_key_and_no_email(watched: Watched) -> None:
    listed = watched.flower.api("/api/tasks").text
    assert tasks.UPLOAD_BATCH in listed
    assert _leaks(listed, watched) == []
    assert _leaks(watched.flower.api("/api/workers").text, watched) == []


def test_logs_show_no_key_and_no_email(watched: Watched) -> None:
    logs = [*sorted(watched.kx.workdir.glob("worker*.log")), watched.flower.log]
    assert len(logs) == WORKERS + 1
    for log in logs:
        assert _leaks(log.read_text(encoding="utf-8", errors="replace"), watched) == [], log.name
