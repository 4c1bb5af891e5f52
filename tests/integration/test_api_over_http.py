"""The REST API as an orchestrator uses it: over real HTTP, to a real run.

``klaviyo-export serve`` runs as a subprocess on a free port, against a real
redis-server, two real Celery workers and the sandbox (``tests.support.pipeline``);
tokens are made with the CLI, as an admin would. Over HTTP: a connection (its
key checked with the sandbox), an export bound to a 20,000-row segment under
``KLAVIYO_EXPORT_SOURCE_ROOTS``, a run started twice with one
``Idempotency-Key`` (one run), followed to its end; the list read back from
the sandbox, the counts, the rejected rows streamed as CSV. A trigger token
starts and polls, and is refused the connections. No answer holds an API
key, a token or an email.
"""

from __future__ import annotations

import csv
import io
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from openapi_spec_validator import validate

from core.reports import REPORT_COLUMNS
from demo.sample import FAIL_EMAIL_PATTERN, SampleMakeup, write_sample
from tests.support.pipeline import LIST_ID, Pipeline, pipeline
from tests.support.services import free_port, redis_server

FINAL = {"succeeded", "partially_succeeded", "failed", "cancelled", "rejected"}
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")


@dataclass
class Served:
    """A running ``klaviyo-export serve`` and every answer body it gave."""

    base_url: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    bodies: list[str] = field(default_factory=list)

    def call(self, method: str, path: str, token: str | None, **options: Any) -> requests.Response:
        headers = dict(options.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        answer = requests.request(
            method, self.base_url + path, headers=headers, timeout=60, **options
        )
        self.bodies.append(answer.text)
        return answer


def _wait_until_serving(base_url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            raise AssertionError(f"serve exited {proc.returncode}:\n{log.read_text()}")
        try:
            if requests.get(f"{base_url}/healthz", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"serve did not answer /healthz:\n{log.read_text()}")


@contextmanager
def serving(env: dict[str, str], workdir: Path, *extra: str) -> Iterator[Served]:
    """``klaviyo-export serve`` on a free port with ``env``; stopped with SIGTERM."""
    port = free_port()
    log = workdir / f"serve-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "frontdoors.cli.main", "serve", "--port", str(port), *extra],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    served = Served(f"http://127.0.0.1:{port}", port, proc, log)
    try:
        _wait_until_serving(served.base_url, proc, log)
        yield served
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=60)


def cli_token(kx: Pipeline, role: str) -> str:
    """A token as an admin makes one: ``token add`` prints the secret alone on stdout."""
    return kx.cli(
        "token", "add", "--name", f"{role}-bot", "--role", role, check=True
    ).stdout.strip()


@dataclass
class World:
    kx: Pipeline
    api: Served
    segments: Path
    admin: str
    trigger: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("api")
    segments = tmp / "segments"
    segments.mkdir()
    env = {"KLAVIYO_EXPORT_SOURCE_ROOTS": str(segments)}
    with (
        redis_server() as url,
        pipeline(url, tmp, env=env, fail_email=FAIL_EMAIL_PATTERN) as kx,
        serving(kx.env, tmp) as api,
    ):
        yield World(kx, api, segments, cli_token(kx, "admin"), cli_token(kx, "trigger"))


def _follow(world: World, run_id: str, token: str) -> dict[str, Any]:
    """Poll the run as an orchestrator does, until its status is final."""
    for _ in range(3000):
        answer = world.api.call("GET", f"/api/v1/runs/{run_id}", token)
        assert answer.status_code == 200, answer.text
        summary: dict[str, Any] = answer.json()
        if summary["status"] in FINAL:
            return summary
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not end: {summary}")


def _connection_and_export(world: World, makeup_rows: int) -> tuple[str, SampleMakeup]:
    answer = world.api.call(
        "POST",
        "/api/v1/connections",
        world.admin,
        json={"name": "Shop", "api_key": world.kx.api_key, "accept_privacy_terms": True},
    )
    assert answer.status_code == 201, answer.text
    connection = answer.json()
    assert answer.headers["Location"] == f"/api/v1/connections/{connection['id']}"
    assert connection["verified_via"]
    assert connection["privacy_terms_accepted"]

    segment = world.segments / "segment.csv.gz"
    makeup = write_sample(segment, makeup_rows, seed=13)
    spec = {
        "connection_id": connection["id"],
        "list_id": LIST_ID,
        "email_field": "email",
        "properties": {"first_name": "first_name"},
        "segment": str(segment),
    }
    answer = world.api.call("POST", "/api/v1/exports", world.admin, json=spec)
    assert answer.status_code == 201, answer.text
    export_id = str(answer.json()["id"])
    assert answer.headers["Location"] == f"/api/v1/exports/{export_id}"
    runs = world.api.call("GET", f"/api/v1/runs?export_id={export_id}", world.admin).json()
    assert runs == {"runs": []}  # saving does not run it
    return export_id, makeup


def test_a_run_started_over_http_exports_the_segment_and_reports_every_row(world: World) -> None:
    export_id, makeup = _connection_and_export(world, 20_000)
    start = f"/api/v1/exports/{export_id}/runs"
    key = {"Idempotency-Key": "nightly-2026-11-30"}

    first = world.api.call("POST", start, world.admin, json={}, headers=key)
    again = world.api.call("POST", start, world.admin, json={}, headers=key)

    assert first.status_code == again.status_code == 202, first.text
    run_id = first.json()["run_id"]
    assert again.json()["run_id"] == run_id  # the retry started nothing
    assert again.headers["Idempotent-Replayed"] == "true"
    assert first.headers["Location"] == again.headers["Location"] == f"/api/v1/runs/{run_id}"
    listed = world.api.call("GET", f"/api/v1/runs?export_id={export_id}", world.admin).json()
    assert [r["run_id"] for r in listed["runs"]] == [run_id]

    summary = _follow(world, run_id, world.admin)

    counts = summary["counts"]
    assert summary["status"] == "partially_succeeded"
    assert {k: counts[k] for k in makeup.expected_counts()} == makeup.expected_counts()
    assert counts["rows_read"] == counts["rejected"] + counts["imported"] + counts["failed"]
    assert sorted(world.kx.list_emails(LIST_ID)) == sorted(makeup.imported_emails)
    _, status = world.kx.cli_json("status", run_id)
    assert summary == status  # exactly what `klaviyo-export status --json` prints

    with requests.get(
        f"{world.api.base_url}/api/v1/runs/{run_id}/rejected",
        headers={"Authorization": f"Bearer {world.admin}"},
        stream=True,
        timeout=60,
    ) as streamed:
        assert streamed.status_code == 200
        assert streamed.headers["Content-Type"].startswith("text/csv")
        assert streamed.headers["Content-Disposition"] == (
            f'attachment; filename="run-{run_id}-rejected.csv"'
        )
        assert "Content-Length" not in streamed.headers  # streamed, not built whole
        text = b"".join(streamed.iter_content(chunk_size=4096)).decode()
    world.api.bodies.append(text)
    reader = csv.DictReader(io.StringIO(text))
    rows = list(reader)
    assert reader.fieldnames == list(REPORT_COLUMNS)
    assert len(rows) == makeup.rejected + makeup.klaviyo_fails
    assert sum(r["stage"] == "klaviyo" for r in rows) == makeup.klaviyo_fails


def test_a_trigger_token_starts_and_polls_runs_and_nothing_else(world: World) -> None:
    export_id, _ = _connection_and_export(world, 500)

    started = world.api.call("POST", f"/api/v1/exports/{export_id}/runs", world.trigger)
    assert started.status_code == 202, started.text
    summary = _follow(world, started.json()["run_id"], world.trigger)
    assert summary["status"] in {"succeeded", "partially_succeeded"}

    for method, path in [
        ("GET", "/api/v1/connections"),
        ("GET", f"/api/v1/runs/{summary['run_id']}/rejected"),
        ("GET", "/api/v1/audit"),
        ("DELETE", f"/api/v1/exports/{export_id}"),
    ]:
        refused = world.api.call(method, path, world.trigger)
        assert refused.status_code == 403, (path, refused.text)
        assert refused.json()["error"]["type"] == "forbidden"
    entries = world.api.call("GET", "/api/v1/audit?limit=5", world.admin).json()["entries"]
    start = next(e for e in entries if e["action"] == "run.start")
    assert start["via"].startswith("token t_")
    assert start["user"] == "trigger-bot"


def test_the_openapi_document_validates_and_describes_every_operation(world: World) -> None:
    document = world.api.call("GET", "/api/v1/openapi.json", None).json()

    validate(document)
    assert {tag["name"] for tag in document.get("tags", [])} <= {
        "connections", "exports", "runs", "audit", "health"
    }  # fmt: skip
    tags = {t for item in document["paths"].values() for op in item.values() for t in op["tags"]}
    assert tags == {"connections", "exports", "runs", "audit", "health"}
    assert "token" in document["components"]["securitySchemes"]


def test_no_answer_holds_a_key_a_token_or_an_email(world: World) -> None:
    """Runs last in this module: it reads every answer the tests above received."""
    assert len(world.api.bodies) > 5
    for body in world.api.bodies:
        assert world.kx.api_key not in body
        assert world.admin not in body
        assert world.trigger not in body
        assert EMAIL.search(body) is None, EMAIL.search(body)


def test_a_port_already_taken_is_one_line_and_exit_2(world: World) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "frontdoors.cli.main", "serve", "--port", str(world.api.port)],
        env=world.kx.env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert f"port {world.api.port}" in proc.stderr


def test_the_server_stops_gracefully_on_sigterm(world: World, tmp_path: Path) -> None:
    """uvicorn finishes the app's shutdown (the readers stop), then ends by the signal
    it caught, as a process stopped by SIGTERM does."""
    with serving(world.kx.env, tmp_path) as api:
        api.proc.terminate()
        assert api.proc.wait(timeout=60) == -signal.SIGTERM
    assert "Application shutdown complete" in api.log.read_text()
