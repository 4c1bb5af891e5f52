"""The console's pages over FastAPI's TestClient, on fakeredis and a scripted Klaviyo.

The app here is the console router alone, with ``app.state.ctx`` a context
whose Klaviyo answers from a script and ``app.state.readers`` a recorder: what
the console asks of the domain and the readers is what these tests check.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from core import credentials, operations
from core.actors import Actor
from core.batch_store import BatchResult
from core.secrets import SecretBox, generate_key
from core.settings import Settings
from frontdoors.http.console import router
from klaviyo_client import AuthenticationError, ClientSettings, KeyCheck, KlaviyoList
from producer.runner import RunRequest
from schemas.contracts import BatchStatus, RunStatus
from schemas.keys import RunField
from tests.support.domain import (
    RecordingDispatcher,
    ScriptedContext,
    ScriptedKlaviyo,
    add_export,
    dispatched,
    running_run,
)

ROOT = Actor("root", "admin")
KEY = "pk_" + "s3cr3t" * 6
PASSWORD = "correct horse battery"


class KeyedKlaviyo(ScriptedKlaviyo):
    """A scripted Klaviyo with the settings a new connection records (its base URL)."""

    settings = ClientSettings(base_url="http://klaviyo.test")


@dataclass(frozen=True)
class KeyCheckingContext(ScriptedContext):
    """Also answers the key check of a new connection from the script."""

    fake: ScriptedKlaviyo = field(default_factory=KeyedKlaviyo)
    keys_checked: list[str] = field(default_factory=list)

    def patient_klaviyo_for_key(  # type: ignore[override]
        self, api_key: str, base_url: str | None = None
    ) -> ScriptedKlaviyo:
        self.keys_checked.append(api_key)
        return self.fake


@dataclass
class RecordingReaders:
    submitted: list[tuple[str, RunRequest]] = field(default_factory=list)

    def submit(self, run_id: str, request: RunRequest) -> None:
        self.submitted.append((run_id, request))


@dataclass
class Console:
    ctx: KeyCheckingContext
    readers: RecordingReaders
    client: TestClient
    segment: Path

    def sign_in(self, user: str) -> None:
        answer = self.client.post("/signin", data={"user": user, "password": PASSWORD})
        assert answer.status_code == 303, answer.text

    def csrf(self, path: str = "/") -> str:
        found = re.search(r'name="csrf" value="([^"]+)"', self.client.get(path).text)
        assert found, f"no CSRF token on {path}"
        return found.group(1)

    def post(self, path: str, data: dict[str, str] | None = None) -> Any:
        return self.client.post(path, data={"csrf": self.csrf(), **(data or {})})

    def connection(self, name: str, allow: str) -> str:
        self.ctx.fake.script("verify_key", KeyCheck("A1", "accounts"))
        made = operations.add_connection(
            self.ctx, ROOT, name=name, api_key=KEY, allow=allow, accept_privacy_terms=True
        )
        return made.id

    def export(self, connection_id: str, **chosen: Any) -> str:
        self.ctx.fake.script("get_list", KlaviyoList("L1", "Newsletter"))
        answer = self.post(
            "/exports/new",
            {"connection_id": connection_id, "list_id": "L1", "email_field": "email",
             "enabled": "on", "mode": "add", **chosen},
        )  # fmt: skip
        assert answer.status_code == 303, answer.text
        return str(answer.headers["location"]).split("?")[0].rsplit("/", 1)[1]


@pytest.fixture
def console(tmp_path: Path) -> Console:
    settings = Settings.from_env({"KLAVIYO_EXPORT_SOURCE_ROOTS": str(tmp_path)})
    ctx = KeyCheckingContext.build(
        settings, fakeredis.FakeRedis(), SecretBox(generate_key()), RecordingDispatcher()
    )
    assert isinstance(ctx, KeyCheckingContext)
    for name, role in (("ann", "admin"), ("bob", "contributor")):
        credentials.set_password(ctx.redis, ROOT, name, PASSWORD, role=role)
    app = FastAPI()
    app.include_router(router)
    app.state.ctx = ctx
    app.state.readers = readers = RecordingReaders()
    segment = tmp_path / "segment.csv"
    segment.write_text("email\na@example.com\n")
    client = TestClient(app, follow_redirects=False)
    return Console(ctx, readers, client, segment)


# -- signing in -----------------------------------------------------------------------


def test_a_password_signs_in_with_a_session_cookie(console: Console) -> None:
    answer = console.client.post(
        "/signin", data={"user": "ann", "password": PASSWORD, "next": "/exports"}
    )
    assert (answer.status_code, answer.headers["location"]) == (303, "/exports")
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith("kx_session=")
    assert all(part in cookie for part in ("HttpOnly", "SameSite=lax", "Path=/"))
    assert "Secure" not in cookie  # plain http here; https requests get Secure
    page = console.client.get("/")
    assert page.status_code == 200
    assert "ann" in page.text
    assert 'id="signed-in-as"' in page.text


def test_a_wrong_password_is_refused_without_saying_which_part(console: Console) -> None:
    answer = console.client.post("/signin", data={"user": "ann", "password": "nope" * 4})
    assert answer.status_code == 401
    assert "The user name or the password is wrong." in answer.text
    assert "set-cookie" not in answer.headers
    assert 'value="ann"' in answer.text
    assert "nope" not in answer.text


def test_a_persons_token_signs_in_and_a_trigger_token_is_refused(console: Console) -> None:
    _, person = credentials.issue_token(console.ctx.redis, ROOT, name="carol", role="contributor")
    _, trigger = credentials.issue_token(console.ctx.redis, ROOT, name="airflow", role="trigger")

    refused = console.client.post("/signin", data={"token": trigger})
    assert refused.status_code == 403
    assert "trigger token" in refused.text
    assert "cannot sign in to the console" in refused.text
    assert trigger not in refused.text
    assert "set-cookie" not in refused.headers

    answer = console.client.post("/signin", data={"token": person})
    assert answer.status_code == 303
    assert "carol" in console.client.get("/").text


def test_pages_redirect_to_sign_in_and_next_stays_on_this_site(console: Console) -> None:
    for path in ("/", "/connections", "/exports/new", "/runs", "/audit", "/runs/r_x/live"):
        answer = console.client.get(path)
        assert answer.status_code == 303, path
        assert answer.headers["location"].startswith("/signin")
    assert (
        console.client.get("/exports?x=1").headers["location"] == "/signin?next=%2Fexports%3Fx%3D1"
    )
    assert console.client.post("/connections", data={}).status_code == 303

    for elsewhere in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        answer = console.client.post(
            "/signin", data={"user": "ann", "password": PASSWORD, "next": elsewhere}
        )
        assert answer.headers["location"] == "/"


def test_signing_out_ends_the_session(console: Console) -> None:
    console.sign_in("ann")
    assert console.post("/signout").headers["location"].startswith("/signin")
    assert console.client.get("/").status_code == 303


# -- CSRF -------------------------------------------------------------------------------


def test_a_form_without_the_csrf_token_or_with_a_wrong_one_or_from_elsewhere_is_refused(
    console: Console,
) -> None:
    console.sign_in("ann")
    form = {"name": "Shop", "allow": "admins", "api_key": KEY, "accept_terms": "on"}
    for extra, headers in (
        ({}, {}),
        ({"csrf": "wrong"}, {}),
        ({"csrf": console.csrf()}, {"Origin": "https://evil.example"}),
    ):
        answer = console.client.post("/connections", data={**form, **extra}, headers=headers)
        assert answer.status_code == 403
        assert "Refused" in answer.text
    assert console.ctx.keys_checked == []  # nothing reached Klaviyo


# -- connections --------------------------------------------------------------------------


def test_adding_a_connection_checks_the_key_and_never_shows_it(console: Console) -> None:
    console.sign_in("ann")
    console.ctx.fake.script("verify_key", KeyCheck("A1", "accounts"))
    answer = console.post(
        "/connections",
        {"name": "Shop <b>", "allow": "contributors", "api_key": KEY, "accept_terms": "on"},
    )
    assert answer.status_code == 303
    assert console.ctx.keys_checked == [KEY]
    shown = console.client.get(answer.headers["location"])
    assert "Connection saved" in shown.text
    assert "Shop &lt;b&gt;" in shown.text
    assert "Shop <b>" not in shown.text
    for path in ("/", "/connections", answer.headers["location"], "/audit", "/exports/new"):
        assert KEY not in console.client.get(path).text, path


def test_a_refused_key_keeps_the_form_but_not_the_key(console: Console) -> None:
    console.sign_in("ann")
    console.ctx.fake.script(
        "verify_key", AuthenticationError("Incorrect authentication credentials.", status=401)
    )
    answer = console.post(
        "/connections", {"name": "Shop", "allow": "admins", "api_key": KEY, "accept_terms": "on"}
    )
    assert answer.status_code == 422
    assert KEY not in answer.text
    assert 'value="Shop"' in answer.text
    assert re.search(r'id="connection-api-key"[^>]*aria-invalid="true"', answer.text)
    assert "Klaviyo refused the key" in answer.text
    assert console.client.get("/connections").text.count("Shop") == 0


def test_the_consent_is_required(console: Console) -> None:
    console.sign_in("ann")
    answer = console.post("/connections", {"name": "Shop", "allow": "admins", "api_key": KEY})
    assert answer.status_code == 422
    assert re.search(r'id="connection-consent"[^>]*aria-invalid="true"', answer.text)
    assert console.ctx.keys_checked == []
    assert KEY not in answer.text


def test_a_contributor_does_not_see_an_admin_only_connection(console: Console) -> None:
    hidden = console.connection("Admins' shop", "admins")
    shared = console.connection("Shared shop", "contributors")
    console.sign_in("bob")
    for path in ("/connections", "/exports/new", "/"):
        text = console.client.get(path).text
        assert "Shared shop" in text
        assert "Admins&#39; shop" not in text
        assert hidden not in text
    for path in (f"/connections/{hidden}", f"/connections/{hidden}/remove"):
        assert console.client.get(path).status_code == 404
    assert console.post(f"/connections/{hidden}/verify").status_code == 404
    answer = console.post(
        "/exports/new", {"connection_id": hidden, "list_id": "L1", "email_field": "email"}
    )
    assert answer.status_code == 422
    assert "Admins" not in answer.text
    assert console.client.get(f"/connections/{shared}").status_code == 200
    assert "Add a connection" not in console.client.get("/connections").text


def test_removing_a_connection_asks_first(console: Console) -> None:
    connection_id = console.connection("Shop", "admins")
    console.sign_in("ann")
    console.export(connection_id)
    asked = console.client.get(f"/connections/{connection_id}/remove")
    assert "Remove connection Shop and its 1 export?" in asked.text
    answer = console.post(f"/connections/{connection_id}/remove")
    assert answer.headers["location"] == "/connections?done=connection_removed"
    assert console.ctx.store.list_connections() == []


# -- exports and runs ----------------------------------------------------------------------


def test_saving_an_export_does_not_run_it(console: Console) -> None:
    connection_id = console.connection("Shop", "contributors")
    console.sign_in("bob")
    export_id = console.export(
        connection_id, properties="Tier\nFirst:first_name\n", segment=str(console.segment)
    )
    page = console.client.get(f"/exports/{export_id}?done=export_added")
    assert "Saving does not run it" in page.text
    export = console.ctx.store.get_export(export_id)
    assert export.properties == {"Tier": "Tier", "First": "first_name"}
    assert export.segment == str(console.segment.resolve())
    assert console.readers.submitted == []
    assert console.ctx.runs.recent(None, 10) == []


def test_a_refused_field_is_marked_and_the_form_keeps_what_was_typed(console: Console) -> None:
    connection_id = console.connection("Shop", "contributors")
    console.sign_in("ann")
    answer = console.post(
        "/exports/new",
        {"connection_id": connection_id, "list_id": "L1", "email_field": "email",
         "schedule": "every tuesday", "brake_share": "lots", "properties": "Tier"},
    )  # fmt: skip
    assert answer.status_code == 422
    assert re.search(r'id="export-brake-share"[^>]*aria-invalid="true"', answer.text)
    assert 'value="every tuesday"' in answer.text
    assert ">Tier</textarea>" in answer.text
    assert f'value="{connection_id}" selected' in answer.text
    assert "Brake share: must be a number" in answer.text


def test_run_now_opens_a_run_of_the_bound_segment_and_hands_it_to_the_readers(
    console: Console,
) -> None:
    connection_id = console.connection("Shop", "contributors")
    console.sign_in("bob")
    export_id = console.export(connection_id, segment=str(console.segment))
    answer = console.post(f"/exports/{export_id}/run")
    assert answer.status_code == 303
    ((run_id, request),) = console.readers.submitted
    assert answer.headers["location"] == f"/runs/{run_id}?done=run_started"
    assert (request.export_id, request.source) == (export_id, str(console.segment.resolve()))
    assert request.actor.user == "bob"

    page = console.client.get(f"/runs/{run_id}")
    assert "pending" in page.text
    assert "/static/live.js" in page.text
    live = console.client.get(f"/runs/{run_id}/live").json()
    assert (live["run_id"], live["status"], live["final"]) == (run_id, "pending", False)

    busy = console.post(f"/exports/{export_id}/run")
    assert busy.status_code == 409
    assert f'href="/runs/{run_id}"' in busy.text


def test_run_now_without_a_bound_segment_asks_for_a_path_under_the_roots(
    console: Console,
) -> None:
    connection_id = console.connection("Shop", "contributors")
    console.sign_in("ann")
    export_id = console.export(connection_id)
    assert 'id="run-source"' in console.client.get(f"/exports/{export_id}").text
    answer = console.post(f"/exports/{export_id}/run", {"source": "/etc/passwd"})
    assert answer.status_code == 422
    assert re.search(r'id="run-source"[^>]*aria-invalid="true"', answer.text)
    assert console.readers.submitted == []
    assert console.post(f"/exports/{export_id}/run", {"source": "segment.csv"}).status_code == 303


def test_the_rejected_rows_stream_as_csv(console: Console) -> None:
    connection_id = console.connection("Shop", "contributors")
    console.sign_in("ann")
    export_id = console.export(connection_id, segment=str(console.segment))
    console.post(f"/exports/{export_id}/run")
    ((run_id, _),) = console.readers.submitted
    console.ctx.reports.add_rejections(
        run_id,
        [
            {"row": 2, "field": "email", "code": "invalid_email", "reason": "not an email"},
            {"row": 5, "field": "email", "code": "duplicate", "reason": "seen, at row 2"},
        ],
    )
    answer = console.client.get(f"/runs/{run_id}/rejected.csv")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    assert answer.text.splitlines() == [
        "row,stage,field,code,reason",
        "2,checks,email,invalid_email,not an email",
        '5,checks,email,duplicate,"seen, at row 2"',
    ]
    assert console.client.get("/runs/r_nothing/rejected.csv").status_code == 404


def test_a_contributor_may_not_remove_an_export(console: Console) -> None:
    connection_id = console.connection("Shop", "contributors")
    console.sign_in("bob")
    export_id = console.export(connection_id)
    answer = console.post(f"/exports/{export_id}/remove")
    assert answer.status_code == 403
    assert "only admins may" in answer.text
    assert console.ctx.store.get_export(export_id).id == export_id


def test_the_audit_log_lists_who_did_what(console: Console) -> None:
    console.connection("Shop", "contributors")
    console.sign_in("ann")
    page = console.client.get("/audit")
    assert page.status_code == 200
    assert "connection.add" in page.text
    assert "UTC" in page.text
    assert KEY not in page.text


def test_a_run_held_at_the_brake_shows_its_reason_and_is_approved(console: Console) -> None:
    connection = console.ctx.store.get_connection(console.connection("Shop", "contributors"))
    export = add_export(console.ctx, connection, mode="mirror")
    run_id = running_run(console.ctx, export, [["a@x.co"]])
    console.ctx.batches.record(BatchResult(run_id, 0, BatchStatus.SUCCEEDED, 1, 0, "J"))
    console.ctx.removals.store(run_id, ["g1@x.co", "g2@x.co"])
    console.ctx.runs.set_fields(run_id, **{RunField.BRAKE_REASON: "2 of 3 members would go"})
    assert console.ctx.lifecycle.after_adds(run_id) is RunStatus.AWAITING_APPROVAL

    console.sign_in("bob")
    page = console.client.get(f"/runs/{run_id}")
    assert "2 of 3 members would go" in page.text
    assert 'id="run-approve"' in page.text
    assert 'id="run-reject"' in page.text
    answer = console.post(f"/runs/{run_id}/approve")
    assert answer.headers["location"] == f"/runs/{run_id}?done=run_approved"
    assert dispatched(console.ctx).removals == [(run_id, 1)]
    again = console.post(f"/runs/{run_id}/approve")
    assert again.status_code == 409
    assert "not awaiting approval" in again.text


def test_over_https_the_session_cookie_is_secure(console: Console) -> None:
    secure = TestClient(console.client.app, base_url="https://testserver", follow_redirects=False)
    answer = secure.post("/signin", data={"user": "ann", "password": PASSWORD})
    assert "Secure" in answer.headers["set-cookie"]
