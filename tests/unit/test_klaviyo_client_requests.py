"""What the client puts on the wire: headers, bodies, paging, key checks."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from klaviyo_client import REVISION, ClientSettings, KlaviyoClient, PermissionDeniedError
from tests.support.scripted_http import Answer, ScriptedServer

KEY = "pk_abcdefghijklmnopqrstuvwxyz01234567"


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as srv:
        yield srv


@pytest.fixture
def client(server: ScriptedServer) -> KlaviyoClient:
    return KlaviyoClient(KEY, ClientSettings(base_url=server.url))


def _job(status: str = "queued") -> dict[str, object]:
    return {
        "data": {
            "type": "profile-bulk-import-job",
            "id": "01JOB",
            "attributes": {
                "status": status,
                "total_count": 2,
                "completed_count": 1,
                "failed_count": 1,
                "created_at": "2026-11-22T00:00:00+00:00",
            },
        }
    }


def test_every_request_carries_auth_revision_and_media_type(
    server: ScriptedServer, client: KlaviyoClient
) -> None:
    server.script(Answer(status=202, body=_job()))
    client.create_bulk_import_job(
        [{"type": "profile", "attributes": {"email": "a@x.io"}}], "L1st01"
    )
    (seen,) = server.seen
    assert seen.headers["Authorization"] == f"Klaviyo-API-Key {KEY}"
    assert seen.headers["revision"] == REVISION
    assert seen.headers["Accept"] == "application/vnd.api+json"
    assert seen.headers["Content-Type"] == "application/vnd.api+json"


def test_bulk_import_body_has_profiles_and_list_relationship(
    server: ScriptedServer, client: KlaviyoClient
) -> None:
    server.script(Answer(status=202, body=_job()), Answer(status=202, body=_job()))
    profiles = [{"type": "profile", "attributes": {"email": "a@x.io", "properties": {"k": 1}}}]
    job = client.create_bulk_import_job(profiles, "L1st01")
    client.create_bulk_import_job(json.dumps(profiles).encode(), "L1st01")
    first, second = (json.loads(s.body) for s in server.seen)
    assert first == second
    assert server.seen[0].method == "POST"
    assert server.seen[0].path == "/api/profile-bulk-import-jobs"
    assert first["data"]["type"] == "profile-bulk-import-job"
    assert first["data"]["attributes"]["profiles"]["data"] == profiles
    assert first["data"]["relationships"]["lists"]["data"] == [{"type": "list", "id": "L1st01"}]
    assert (job.id, job.status, job.failed_count, job.done) == ("01JOB", "queued", 1, False)


def test_paging_follows_links_next_to_the_end(
    server: ScriptedServer, client: KlaviyoClient
) -> None:
    def page(n: int, nxt: str | None) -> Answer:
        item = {
            "type": "import-error",
            "id": f"e{n}",
            "attributes": {
                "code": "invalid",
                "title": "Invalid",
                "detail": "bad email",
                "source": {"pointer": "/data/attributes/email"},
                "original_payload": {"type": "profile", "attributes": {"email": f"bad{n}@"}},
            },
        }
        return Answer(body={"data": [item], "links": {"self": "x", "next": nxt}})

    server.script(
        page(1, f"{server.url}/api/profile-bulk-import-jobs/J1/import-errors?page%5Bcursor%5D=c2"),
        page(2, None),
    )
    errors = list(client.iter_import_errors("J1"))
    assert [e.email for e in errors] == ["bad1@", "bad2@"]
    assert errors[0].pointer == "/data/attributes/email"
    first_query = parse_qs(urlsplit(server.seen[0].path).query)
    assert first_query["page[size]"] == ["100"]
    assert parse_qs(urlsplit(server.seen[1].path).query) == {"page[cursor]": ["c2"]}


def test_lookup_by_email_asks_at_most_100_emails_a_query(
    server: ScriptedServer, client: KlaviyoClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    emails = [f"user{i}@example.com" for i in range(150)]
    server.script(Answer(body={"data": [], "links": {}}), Answer(body={"data": [], "links": {}}))
    assert list(client.iter_profiles_by_email(emails)) == []
    filters = [parse_qs(urlsplit(s.path).query)["filter"][0] for s in server.seen]
    assert filters[0].startswith('any(email,["user0@example.com"')
    assert filters[0].count("@") == 100
    assert filters[1].count("@") == 50
    assert "example.com" not in caplog.text  # urllib3's request lines are redacted


def test_list_calls_refuse_more_than_1000_ids(client: KlaviyoClient) -> None:
    with pytest.raises(ValueError, match="1000"):
        client.add_profiles_to_list("L1st01", [f"id{i}" for i in range(1001)])


def test_ids_that_are_not_path_segments_are_refused(client: KlaviyoClient) -> None:
    with pytest.raises(ValueError, match="not a Klaviyo id"):
        client.get_list("../accounts")


def test_verify_key_uses_accounts(server: ScriptedServer, client: KlaviyoClient) -> None:
    server.script(Answer(body={"data": [{"type": "account", "id": "ACC1", "attributes": {}}]}))
    check = client.verify_key()
    assert (check.account_id, check.via) == ("ACC1", "accounts")


def test_verify_key_without_accounts_scope_passes_through_lists(
    server: ScriptedServer, client: KlaviyoClient
) -> None:
    denied = {
        "errors": [
            {
                "id": "1",
                "status": 403,
                "code": "permission_denied",
                "title": "Denied",
                "detail": "missing scope",
            }
        ]
    }
    server.script(Answer(status=403, body=denied), Answer(body={"data": [], "links": {}}))
    check = client.verify_key()
    assert (check.account_id, check.via) == (None, "lists")
    assert urlsplit(server.seen[1].path).path == "/api/lists"


def test_verify_key_with_neither_scope_fails(server: ScriptedServer, client: KlaviyoClient) -> None:
    denied = {
        "errors": [
            {
                "id": "1",
                "status": 403,
                "code": "permission_denied",
                "title": "Denied",
                "detail": "missing scope",
            }
        ]
    }
    server.script(Answer(status=403, body=denied), Answer(status=403, body=denied))
    with pytest.raises(PermissionDeniedError):
        client.verify_key()


def test_before_request_hook_sees_each_operation(server: ScriptedServer) -> None:
    calls: list[str] = []
    client = KlaviyoClient(KEY, ClientSettings(base_url=server.url), before_request=calls.append)
    server.script(
        Answer(body={"data": {"id": "L1st01", "attributes": {"name": "VIP"}}}), Answer(status=204)
    )
    assert client.get_list("L1st01").name == "VIP"
    client.remove_profiles_from_list("L1st01", ["P1"])
    assert calls == ["get_list", "remove_profiles_from_list"]
    assert server.seen[1].method == "DELETE"
    assert json.loads(server.seen[1].body) == {"data": [{"type": "profile", "id": "P1"}]}


def test_settings_from_env() -> None:
    settings = ClientSettings.from_env({"KLAVIYO_BASE_URL": "http://127.0.0.1:8025/"})
    assert settings.base_url == "http://127.0.0.1:8025"
    assert ClientSettings.from_env({}).base_url == "https://a.klaviyo.com"
