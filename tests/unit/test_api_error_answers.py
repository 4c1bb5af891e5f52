"""Every error the API can give, in its one shape, with its status, and nothing it must not say.

- the table: each error class an endpoint can raise -> status and ``type``;
  every class of ``core.errors`` has its own entry;
- an unexpected error: 500 ``internal_error`` with a request id, no text of
  the exception in the answer or the log;
- FastAPI's validation errors and the domain's ``InvalidInput`` alike name
  their fields (JSON path -> messages), never the value sent;
- 413 for a body over the limit: before reading it, or as it streams;
- 401 with ``WWW-Authenticate: Bearer``; an unknown route is a JSON 404;
- a run asked for while the export is busy: 409 naming the run in progress;
- the server stopping: runs waiting for a reader are ended and free their
  locks; a run asked for after that is refused (503).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis
from fastapi.testclient import TestClient
from kombu.exceptions import OperationalError

from core import credentials, errors, queries
from core.actors import Actor
from core.secrets import SecretBox, generate_key
from core.settings import Settings
from frontdoors.http.app import create_app
from frontdoors.http.errors import TABLE, describe
from frontdoors.http.limits import API_BODY_LIMIT, BodyLimit
from klaviyo_client import AuthenticationError, RetriableError
from producer.runner import RunRequest, interrupted
from schemas.contracts import RunStatus
from tests.support.domain import (
    RecordingDispatcher,
    ScriptedContext,
    add_connection,
    add_export,
    klaviyo_error,
)

ROOT = Actor("root", "admin")
SECRET_TEXT = "pk_" + "s" * 34 + " ann@example.com kxt_secret"


@dataclass(frozen=True)
class KeyScriptedContext(ScriptedContext):
    """The scripted Klaviyo also answers the first check of a new key."""

    def patient_klaviyo_for_key(self, api_key: str, base_url: str | None = None) -> Any:
        return self.fake


@pytest.fixture
def segments(tmp_path: Path) -> Path:
    folder = tmp_path / "segments"
    folder.mkdir()
    (folder / "s.csv").write_text("Email,Tier\na@x.co,gold\n")
    return folder


@pytest.fixture
def ctx(segments: Path) -> KeyScriptedContext:
    settings = Settings.from_env({"KLAVIYO_EXPORT_SOURCE_ROOTS": str(segments)})
    built = KeyScriptedContext.build(
        settings, fakeredis.FakeRedis(), SecretBox(generate_key()), RecordingDispatcher()
    )
    assert isinstance(built, KeyScriptedContext)
    return built


@pytest.fixture
def client(ctx: KeyScriptedContext) -> Iterator[TestClient]:
    with TestClient(create_app(ctx, readers=1)) as served:
        yield served


def _bearer(ctx: KeyScriptedContext, role: str = "admin") -> dict[str, str]:
    _, secret = credentials.issue_token(ctx.redis, ROOT, name=role, role=role)
    return {"Authorization": f"Bearer {secret}"}


def _error(answer: Any) -> dict[str, Any]:
    body = answer.json()
    assert set(body) == {"error"}
    assert {"type", "message", "fields"} <= set(body["error"])
    error: dict[str, Any] = body["error"]
    return error


# -- the table -------------------------------------------------------------------------

RAISED = [
    (errors.NotFound("no connection 'c_1'"), 404, "not_found"),
    (errors.Forbidden("carl (contributor) may not add connections: only admins may"), 403,
     "forbidden"),
    (errors.InvalidInput("must not be empty", field="email_field"), 422, "invalid_input"),
    (errors.InvalidRequest({"list_id": ["is required"]}), 422, "invalid_input"),
    (errors.ExportError("export e_1 is disabled: enable it to run it"), 409, "refused"),
    (errors.ExportBusy("export e_1 has run r_1 in progress", "r_1"), 409, "busy"),
    (errors.SourceError("s.csv is empty"), 422, "source_error"),
    (errors.ConfigurationError("KLAVIYO_EXPORT_SECRET_KEY is not set"), 503, "configuration"),
    (errors.SecretError("cannot decrypt the API key of c_1"), 503, "configuration"),
    (errors.Unavailable("Redis lost the run's records"), 503, "unavailable"),
    (errors.Refused("unknown_export", "no export e_1", {"export_id": ["unknown"]}), 422,
     "refused"),
    (klaviyo_error(AuthenticationError, 401, "not_authenticated"), 422, "klaviyo_refused"),
    (klaviyo_error(RetriableError, 503, None), 503, "klaviyo_unavailable"),
    (redis.ConnectionError(f"redis://:{SECRET_TEXT}@db:6379"), 503, "redis_unavailable"),
    (redis.TimeoutError(SECRET_TEXT), 503, "redis_unavailable"),
    (redis.ResponseError(f"OOM {SECRET_TEXT}"), 503, "redis_refused"),
    (OperationalError(f"amqp://guest:{SECRET_TEXT}@mq"), 503, "broker_unavailable"),
    (RuntimeError(SECRET_TEXT), 500, "internal_error"),
    (KeyError(SECRET_TEXT), 500, "internal_error"),
]  # fmt: skip


@pytest.mark.parametrize(("raised", "status", "kind"), RAISED, ids=lambda v: type(v).__name__)
def test_each_error_an_endpoint_raises_has_its_status_and_type(
    ctx: KeyScriptedContext,
    client: TestClient,
    monkeypatch: pytest.MonkeyPatch,
    raised: BaseException,
    status: int,
    kind: str,
) -> None:
    def fail(*_args: object) -> None:
        raise raised

    monkeypatch.setattr(queries, "list_connections", fail)

    answer = client.get("/api/v1/connections", headers=_bearer(ctx))

    assert (answer.status_code, _error(answer)["type"]) == (status, kind)
    assert SECRET_TEXT not in answer.text  # neither a URL's password nor an unexpected text
    assert "ann@example.com" not in answer.text


def test_every_class_of_the_domain_error_tree_has_its_own_entry() -> None:
    def tree(cls: type[BaseException]) -> Iterator[type[BaseException]]:
        yield cls
        for sub in cls.__subclasses__():
            yield from tree(sub)

    assert [c for c in tree(errors.ExportError) if c not in TABLE] == []


def test_the_fields_of_domain_errors_are_named_as_the_request_names_them() -> None:
    assert describe(errors.InvalidInput("must be 0..1", field="brake_share")).fields == {
        "brake_share": ["must be 0..1"]
    }
    assert describe(errors.InvalidInput("reused", field="idempotency_key")).fields == {
        "header.Idempotency-Key": ["reused"]
    }
    busy = describe(errors.ExportBusy("busy", "r_1"))
    assert busy.body()["error"]["run_in_progress"] == "r_1"


# -- internal errors ---------------------------------------------------------------------


def test_an_unexpected_error_says_only_internal_error_and_a_request_id(
    ctx: KeyScriptedContext,
    client: TestClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def fail(*_args: object) -> None:
        raise ValueError(SECRET_TEXT)

    monkeypatch.setattr(queries, "list_connections", fail)
    caplog.set_level(logging.INFO)

    answer = client.get("/api/v1/connections", headers=_bearer(ctx))

    error = _error(answer)
    assert answer.status_code == 500
    assert error["type"] == "internal_error"
    request_id = error["request_id"]
    assert answer.headers["X-Request-Id"] == request_id
    assert request_id in error["message"]
    assert "Traceback" not in answer.text
    assert "ValueError" not in answer.text
    assert SECRET_TEXT not in answer.text
    logged = [r.getMessage() for r in caplog.records if request_id in r.getMessage()]
    assert len(logged) == 1
    assert "ValueError" in logged[0]
    assert SECRET_TEXT not in caplog.text


# -- invalid input -----------------------------------------------------------------------


def test_a_body_that_fails_validation_names_each_field_and_never_its_value(
    ctx: KeyScriptedContext, client: TestClient
) -> None:
    body = {
        "name": "",
        "allow": "everyone",
        "api_key": ["pk_" + "v" * 34],
        "accept_privacy_terms": False,
        "colour": "red",
    }
    answer = client.post("/api/v1/connections", json=body, headers=_bearer(ctx))

    error = _error(answer)
    assert (answer.status_code, error["type"]) == (422, "invalid_input")
    assert set(error["fields"]) == {"name", "allow", "api_key", "accept_privacy_terms", "colour"}
    assert all(isinstance(m, str) for ms in error["fields"].values() for m in ms)
    assert "consent" in error["fields"]["accept_privacy_terms"][0]
    assert "v" * 34 not in answer.text
    assert ctx.fake.calls == []  # refused before Klaviyo was asked


@pytest.mark.parametrize(
    ("method", "path", "options", "field"),
    [
        ("POST", "/api/v1/exports", {"json": {"properties": {"Tier": 5}}}, "properties.Tier"),
        ("GET", "/api/v1/runs?limit=0", {}, "query.limit"),
        ("GET", "/api/v1/runs?limit=501", {}, "query.limit"),
        ("GET", "/api/v1/runs/not%20an%20id", {}, "path.run_id"),
        ("POST", "/api/v1/connections", {"content": b'{"name": '}, "body"),
        ("POST", "/api/v1/connections", {"json": [1, 2]}, "body"),
    ],
)
def test_fields_are_named_by_their_path_in_the_request(
    ctx: KeyScriptedContext,
    client: TestClient,
    method: str,
    path: str,
    options: dict[str, Any],
    field: str,
) -> None:
    headers = {**_bearer(ctx), "Content-Type": "application/json"}
    answer = client.request(method, path, headers=headers, **options)

    assert answer.status_code == 422
    assert field in _error(answer)["fields"]


def test_the_domains_invalid_input_names_the_body_field(
    ctx: KeyScriptedContext, client: TestClient
) -> None:
    connection = add_connection(ctx)
    spec = {"connection_id": connection.id, "list_id": "L1", "email_field": "Email"}
    headers = _bearer(ctx)

    bad_cron = client.post("/api/v1/exports", json={**spec, "schedule": "often"}, headers=headers)
    outside = client.post(
        "/api/v1/exports", json={**spec, "segment": "/etc/passwd"}, headers=headers
    )

    assert bad_cron.status_code == outside.status_code == 422
    assert list(_error(bad_cron)["fields"]) == ["schedule"]
    assert list(_error(outside)["fields"]) == ["segment"]
    assert ctx.store.list_exports() == []


def test_a_key_klaviyo_refuses_is_the_api_key_fields_fault_and_is_not_repeated(
    ctx: KeyScriptedContext, client: TestClient
) -> None:
    key = "pk_" + "w" * 34
    ctx.fake.script("verify_key", klaviyo_error(AuthenticationError, 401, "not_authenticated"))
    body = {"name": "Shop", "api_key": key, "accept_privacy_terms": True}

    answer = client.post("/api/v1/connections", json=body, headers=_bearer(ctx))

    assert answer.status_code == 422
    assert list(_error(answer)["fields"]) == ["api_key"]
    assert key not in answer.text
    assert ctx.store.list_connections() == []


# -- size, auth, routes ------------------------------------------------------------------


def test_a_declared_length_over_the_limit_is_refused_before_reading(
    ctx: KeyScriptedContext,
) -> None:
    import asyncio

    sent: list[MutableMapping[str, Any]] = []

    async def never_read() -> dict[str, Any]:
        raise AssertionError("the body was read")

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("the app was called")

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/v1/connections",
        "headers": [(b"content-length", str(API_BODY_LIMIT + 1).encode())],
    }
    asyncio.run(BodyLimit(inner)(scope, never_read, send))

    assert sent[0]["status"] == 413


def test_a_streamed_body_over_the_limit_is_refused(
    ctx: KeyScriptedContext, client: TestClient
) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"name": "'
        for _ in range(API_BODY_LIMIT // 1024 + 1):
            yield b"x" * 1024
        yield b'"}'

    headers = {**_bearer(ctx), "Content-Type": "application/json"}
    streamed = client.post("/api/v1/connections", content=chunks(), headers=headers)
    declared = client.post(
        "/api/v1/connections", content=b"x" * (API_BODY_LIMIT + 1), headers=headers
    )
    console = client.post("/sign-in-nowhere", content=b"x" * (API_BODY_LIMIT + 1))

    assert streamed.status_code == declared.status_code == 413
    assert _error(streamed)["type"] == _error(declared)["type"] == "too_large"
    assert console.status_code != 413  # console forms may be larger (1 MiB)


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", "Bearer kxt_" + "x" * 43, "Basic cm9vdDpyb290", "Bearer not-a-token"],
)
def test_without_a_live_token_the_answer_is_401_with_a_bearer_challenge(
    client: TestClient, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    answer = client.get("/api/v1/exports", headers=headers)

    assert answer.status_code == 401
    assert _error(answer)["type"] == "unauthorized"
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_revoked_token_is_refused_at_once(ctx: KeyScriptedContext, client: TestClient) -> None:
    token, secret = credentials.issue_token(ctx.redis, ROOT, name="gone", role="admin")
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/exports", headers=headers).status_code == 200

    credentials.revoke_token(ctx.redis, ROOT, token.id)

    assert client.get("/api/v1/exports", headers=headers).status_code == 401


def test_unknown_routes_and_methods_answer_json(client: TestClient) -> None:
    missing = client.get("/api/v1/nothing-here")
    wrong = client.put("/api/v1/exports")

    assert (missing.status_code, _error(missing)["type"]) == (404, "not_found")
    assert (wrong.status_code, _error(wrong)["type"]) == (405, "method_not_allowed")


def test_health_is_503_when_redis_does_not_answer(
    ctx: KeyScriptedContext, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert client.get("/healthz").json() == {"ok": True}

    def down() -> None:
        raise redis.ConnectionError("Connection refused")

    monkeypatch.setattr(ctx.redis, "ping", down)
    answer = client.get("/healthz")

    assert (answer.status_code, _error(answer)["type"]) == (503, "redis_unavailable")


# -- runs: busy, and the server stopping -------------------------------------------------


def test_a_run_of_a_busy_export_is_409_naming_the_run_in_progress(
    ctx: KeyScriptedContext, client: TestClient, segments: Path
) -> None:
    export = add_export(ctx, add_connection(ctx), segment=str(segments / "s.csv"))
    ctx.locks.take(export.id, "r_inprogress")

    answer = client.post(f"/api/v1/exports/{export.id}/runs", headers=_bearer(ctx))

    error = _error(answer)
    assert (answer.status_code, error["type"]) == (409, "busy")
    assert error["run_in_progress"] == "r_inprogress"


def test_stopping_ends_the_runs_waiting_for_a_reader_and_frees_their_locks(
    ctx: KeyScriptedContext, segments: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reading, release = threading.Event(), threading.Event()

    def slow_read(_ctx: object, run_id: str, _request: RunRequest) -> None:
        reading.set()
        assert release.wait(timeout=60)

    ended_unread = threading.Event()

    def noted(*args: Any) -> None:
        interrupted(*args)
        ended_unread.set()

    monkeypatch.setattr("frontdoors.http.readers.read_opened", slow_read)
    monkeypatch.setattr("frontdoors.http.readers.interrupted", noted)
    first, second, third = (
        add_export(ctx, add_connection(ctx), segment=str(segments / "s.csv")) for _ in range(3)
    )
    app = create_app(ctx, readers=1)
    headers = _bearer(ctx)
    with TestClient(app) as client:
        read_now = client.post(f"/api/v1/exports/{first.id}/runs", headers=headers).json()
        assert reading.wait(timeout=60)
        waiting = client.post(f"/api/v1/exports/{second.id}/runs", headers=headers).json()
        assert app.state.readers.waiting() == [waiting["run_id"]]

        stopper = threading.Thread(target=app.state.readers.stop)
        stopper.start()
        assert ended_unread.wait(timeout=60)  # the waiting run is ended; the first still reads
        too_late = client.post(f"/api/v1/exports/{third.id}/runs", headers=headers)
        release.set()
        stopper.join()

    ended = ctx.runs.get(waiting["run_id"])
    assert ended.status is RunStatus.FAILED
    assert "ServerStopped" in ended.message
    assert ctx.locks.holder(second.id) is None
    assert ctx.runs.get(read_now["run_id"]).status is RunStatus.PENDING  # its reader finished
    assert (too_late.status_code, _error(too_late)["type"]) == (503, "unavailable")
    assert ctx.locks.holder(third.id) is None
