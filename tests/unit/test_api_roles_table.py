"""Who may call what: one table, every API operation against every kind of caller.

Columns: no token, a token that is not one, an admin's, a contributor's, an
upstream system's (``trigger``), and a contributor's on an admin-only
connection (the same calls, on the records of a connection allowed to admins
only). The API decides none of them: the domain does, and a record hidden
from the caller is ``NotFound`` (404), as if it did not exist, while one the
caller sees but may not change is ``Forbidden`` (403).

Each case runs on a fresh world (fakeredis, Klaviyo answered by a fake that
knows every key and list, segment readers that only record), so a DELETE in
one case cannot change another. The last test fails when the app's OpenAPI
document has an operation the table does not: a new endpoint needs its row.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from fastapi.testclient import TestClient

from core import credentials
from core.actors import Actor
from core.batch_store import BatchResult
from core.context import Context
from core.records import Connection
from core.secrets import SecretBox, generate_key
from core.settings import Settings
from frontdoors.http.app import create_app
from klaviyo_client import ClientSettings, KeyCheck, KlaviyoList
from producer.runner import RunRequest
from schemas.contracts import BatchStatus, RunStatus
from schemas.keys import RunField
from tests.support.domain import RecordingDispatcher, add_connection, add_export, running_run

ROOT = Actor("root", "admin")
NEW_KEY = "pk_" + "b" * 34
COLUMNS = ("no token", "bad token", "admin", "contributor", "trigger", "contributor, admins-only")


@dataclass
class FakeKlaviyo:
    """Every key is account A1's, every list exists."""

    settings: ClientSettings = field(default_factory=lambda: ClientSettings("http://k.test"))

    def verify_key(self) -> KeyCheck:
        return KeyCheck("A1", "accounts")

    def get_list(self, list_id: str) -> KlaviyoList:
        return KlaviyoList(list_id, "Newsletter")


@dataclass(frozen=True)
class FakeKlaviyoContext(Context):
    fake: FakeKlaviyo = field(default_factory=FakeKlaviyo)

    def patient_klaviyo(self, connection_id: str) -> Any:
        self.store.get_connection(connection_id)
        return self.fake

    def patient_klaviyo_for_key(self, api_key: str, base_url: str | None = None) -> Any:
        return self.fake


class RecordingReaders:
    """Stands in for the server's readers: the runs handed over, none read."""

    def __init__(self) -> None:
        self.submitted: list[tuple[str, RunRequest]] = []

    def submit(self, run_id: str, request: RunRequest) -> None:
        self.submitted.append((run_id, request))

    def stop(self) -> None:
        pass


@dataclass(frozen=True)
class Row:
    method: str
    path: str  # as the OpenAPI document spells it
    expected: tuple[int, int, int, int, int, int]  # one per COLUMNS
    body: dict[str, Any] | None = None
    query: str = ""
    run: str = "finished"  # which run fills {run_id}: "finished" (resumable) or "held"


V1 = "/api/v1"
NEW_CONNECTION = {"name": "New", "api_key": NEW_KEY, "accept_privacy_terms": True}
NEW_EXPORT = {"connection_id": "{connection_id}", "list_id": "L2", "email_field": "Email"}

TABLE: tuple[Row, ...] = (
    Row("GET", "/healthz", (200, 200, 200, 200, 200, 200)),
    Row("GET", f"{V1}/connections", (401, 401, 200, 200, 403, 200)),
    Row("POST", f"{V1}/connections", (401, 401, 201, 403, 403, 403), NEW_CONNECTION),
    Row("GET", f"{V1}/connections/{{connection_id}}", (401, 401, 200, 200, 403, 404)),
    Row("POST", f"{V1}/connections/{{connection_id}}/verify", (401, 401, 200, 200, 403, 404)),
    Row("POST", f"{V1}/connections/{{connection_id}}/accept-terms", (401, 401, 200, 403, 403, 403)),
    Row(
        "POST",
        f"{V1}/connections/{{connection_id}}/rotate-key",
        (401, 401, 200, 403, 403, 403),
        {"api_key": NEW_KEY},
    ),
    Row("DELETE", f"{V1}/connections/{{connection_id}}", (401, 401, 200, 403, 403, 403)),
    Row("GET", f"{V1}/exports", (401, 401, 200, 200, 200, 200)),
    Row("POST", f"{V1}/exports", (401, 401, 201, 201, 403, 404), NEW_EXPORT),
    Row("GET", f"{V1}/exports/{{export_id}}", (401, 401, 200, 200, 200, 404)),
    Row("POST", f"{V1}/exports/{{export_id}}/enable", (401, 401, 200, 200, 403, 404)),
    Row("POST", f"{V1}/exports/{{export_id}}/disable", (401, 401, 200, 200, 403, 404)),
    Row("DELETE", f"{V1}/exports/{{export_id}}", (401, 401, 200, 403, 403, 403)),
    Row("POST", f"{V1}/exports/{{export_id}}/runs", (401, 401, 202, 202, 202, 404), {}),
    Row("GET", f"{V1}/runs", (401, 401, 200, 200, 200, 404), query="export_id={export_id}"),
    Row("GET", f"{V1}/runs/{{run_id}}", (401, 401, 200, 200, 200, 404)),
    Row("GET", f"{V1}/runs/{{run_id}}/rejected", (401, 401, 200, 200, 403, 404)),
    Row("POST", f"{V1}/runs/{{run_id}}/approve", (401, 401, 202, 202, 403, 404), run="held"),
    Row("POST", f"{V1}/runs/{{run_id}}/reject", (401, 401, 200, 200, 403, 404), run="held"),
    Row("POST", f"{V1}/runs/{{run_id}}/resume", (401, 401, 202, 202, 403, 404)),
    Row("GET", f"{V1}/audit", (401, 401, 200, 200, 403, 200)),
)


@dataclass
class Place:
    """The records of one connection that a row's path and body name."""

    connection_id: str
    export_id: str
    runs: dict[str, str]

    def fill(self, text: str, run: str) -> str:
        return (
            text.replace("{connection_id}", self.connection_id)
            .replace("{export_id}", self.export_id)
            .replace("{run_id}", self.runs[run])
        )


def _finished_run(ctx: Context, export_id: str) -> str:
    """A partly failed run with rejected rows: resumable, with a report."""
    export = ctx.store.get_export(export_id)
    run_id = running_run(ctx, export, [["a@x.co"], ["b@x.co"]])
    ctx.reports.add_rejections(run_id, [{"row": 9, "field": "Email", "code": "x", "reason": "y"}])
    ctx.batches.record(BatchResult(run_id, 0, BatchStatus.SUCCEEDED, 1, 0, "J0"))
    failed = {"row": 2, "field": "", "code": "invalid", "detail": "refused"}
    ctx.batches.record(BatchResult(run_id, 1, BatchStatus.FAILED, 0, 1), [failed])
    assert ctx.lifecycle.finish(run_id).status is RunStatus.PARTIALLY_SUCCEEDED
    return run_id


def _held_run(ctx: Context, connection: Connection) -> str:
    """A mirror run waiting at the safety brake."""
    export = add_export(ctx, connection, mode="mirror")
    run_id = running_run(ctx, export, [["a@x.co"]])
    ctx.batches.record(BatchResult(run_id, 0, BatchStatus.SUCCEEDED, 1, 0, "J"))
    ctx.removals.store(run_id, ["g1@x.co", "g2@x.co"])
    ctx.runs.set_fields(run_id, **{RunField.BRAKE_REASON: "2 of 3 members would be removed"})
    assert ctx.lifecycle.after_adds(run_id) is RunStatus.AWAITING_APPROVAL
    return run_id


def _place(ctx: Context, allow: str, segment: Path) -> Place:
    connection = add_connection(ctx, allow=allow)
    export = add_export(ctx, connection, segment=str(segment))
    runs = {"finished": _finished_run(ctx, export.id), "held": _held_run(ctx, connection)}
    return Place(connection.id, export.id, runs)


@dataclass
class World:
    client: TestClient
    shared: Place  # a connection allowed to contributors
    admins_only: Place
    tokens: dict[str, str]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    segment = tmp_path / "segments" / "s.csv"
    segment.parent.mkdir()
    segment.write_text("Email,Tier\na@x.co,gold\n")
    ctx = FakeKlaviyoContext.build(
        Settings.from_env({"KLAVIYO_EXPORT_SOURCE_ROOTS": str(segment.parent)}),
        fakeredis.FakeRedis(),
        SecretBox(generate_key()),
        RecordingDispatcher(),
    )
    tokens = {
        role: credentials.issue_token(ctx.redis, ROOT, name=role, role=role)[1]
        for role in ("admin", "contributor", "trigger")
    }
    app = create_app(ctx)
    app.state.readers = RecordingReaders()
    shared = _place(ctx, "contributors", segment)
    admins_only = _place(ctx, "admins", segment)
    with TestClient(app) as client:
        yield World(client, shared, admins_only, tokens)


def _headers(world: World, column: str) -> dict[str, str]:
    token = {
        "no token": None,
        "bad token": "kxt_" + "x" * 43,
        "admin": world.tokens["admin"],
        "contributor": world.tokens["contributor"],
        "trigger": world.tokens["trigger"],
        "contributor, admins-only": world.tokens["contributor"],
    }[column]
    return {} if token is None else {"Authorization": f"Bearer {token}"}


def _which(row: Row) -> str:
    return f" ({row.run} run)" if "{run_id}" in row.path else ""


CASES = [
    pytest.param(row, column, expected, id=f"{row.method} {row.path}{_which(row)} as {column}")
    for row in TABLE
    for column, expected in zip(COLUMNS, row.expected, strict=True)
]


@pytest.mark.parametrize(("row", "column", "expected"), CASES)
def test_each_caller_gets_what_its_role_allows(
    world: World, row: Row, column: str, expected: int
) -> None:
    place = world.admins_only if column == "contributor, admins-only" else world.shared
    url = place.fill(row.path, row.run) + (
        f"?{place.fill(row.query, row.run)}" if row.query else ""
    )
    body = None if row.body is None else json.loads(place.fill(json.dumps(row.body), row.run))

    answer = world.client.request(row.method, url, json=body, headers=_headers(world, column))

    assert answer.status_code == expected, answer.text
    if expected >= 400:
        error = answer.json()["error"]
        assert error["message"]
        assert set(error) >= {"type", "message", "fields"}
    if expected == 401:
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    if expected == 403:
        assert answer.json()["error"]["type"] == "forbidden"


def test_the_table_has_a_row_for_every_operation_of_the_api(world: World) -> None:
    document = world.client.get("/api/v1/openapi.json").json()
    operations = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    }
    in_table = {(row.method, row.path) for row in TABLE}

    assert operations - in_table == set(), "an operation without a row in TABLE"
    assert in_table - operations == set(), "a row for an operation the API does not have"
    assert all(re.fullmatch(r"[a-z_]+", op["operationId"]) for p in document["paths"].values()
               for op in p.values())  # fmt: skip
