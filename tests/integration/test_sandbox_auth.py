"""Authentication, scopes and the revision header, over real HTTP."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import requests

from sandbox import SandboxServer
from tests.support.sandbox import (
    API_KEY,
    LIST_ID,
    OTHER_KEY,
    SandboxClient,
    profile,
    running_sandbox,
)

LIMITED_KEY = "pk_limited000000000000000000000000000"


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with running_sandbox(
        api_keys={
            API_KEY: None,
            OTHER_KEY: None,
            LIMITED_KEY: frozenset({"lists:read", "profiles:write"}),
        },
        rate_limit_scale=0,
    ) as running:
        yield running


def error_of(response: requests.Response) -> dict[str, object]:
    assert response.headers["Content-Type"] == "application/vnd.api+json"
    (error,) = response.json()["errors"]
    assert isinstance(error, dict)
    assert error["status"] == response.status_code
    assert isinstance(error["id"], str)
    assert error["meta"] == {}
    return error


@pytest.mark.parametrize(
    "authorization",
    [None, f"Bearer {API_KEY}", API_KEY, "Klaviyo-API-Key ", f"klaviyo-api-key {API_KEY}"],
)
def test_missing_or_wrong_scheme_is_not_authenticated(
    server: SandboxServer, authorization: str | None
) -> None:
    client = SandboxClient(server, key=None)
    headers = {"Authorization": authorization} if authorization else {}
    response = client.get("/api/lists", headers=headers)
    assert response.status_code == 401
    error = error_of(response)
    assert error["code"] == "not_authenticated"
    assert error["title"] == "Authentication credentials were not provided."


def test_unknown_key_is_authentication_failed_and_not_echoed(server: SandboxServer) -> None:
    secret = "pk_wrongwrongwrongwrongwrongwrong0000"
    response = SandboxClient(server, key=secret).get("/api/lists")
    assert response.status_code == 401
    assert error_of(response)["code"] == "authentication_failed"
    assert secret not in response.text
    assert all(secret not in value for value in response.headers.values())


def test_missing_scope_is_permission_denied(server: SandboxServer) -> None:
    limited = SandboxClient(server, key=LIMITED_KEY)
    assert limited.get(f"/api/lists/{LIST_ID}").status_code == 200
    for path in ("/api/profiles", "/api/accounts", f"/api/lists/{LIST_ID}/profiles"):
        response = limited.get(path)
        assert response.status_code == 403, path
        assert error_of(response)["code"] == "permission_denied"
    assert limited.post("/api/profile-bulk-import-jobs", {}).status_code == 403


def test_each_key_is_a_separate_account(server: SandboxServer) -> None:
    mine, theirs = SandboxClient(server), SandboxClient(server, key=OTHER_KEY)
    job = mine.import_profiles([profile("isolated@example.com")])
    mine.wait_for_job(job)
    found = mine.get("/api/profiles", params={"filter": 'equals(email,"isolated@example.com")'})
    assert len(found.json()["data"]) == 1
    hidden = theirs.get("/api/profiles", params={"filter": 'equals(email,"isolated@example.com")'})
    assert hidden.json()["data"] == []
    assert theirs.get(f"/api/profile-bulk-import-jobs/{job}").status_code == 404
    ids = {c.get("/api/accounts").json()["data"][0]["id"] for c in (mine, theirs)}
    assert ids == {server.account_id(API_KEY), server.account_id(OTHER_KEY)}


@pytest.mark.parametrize(
    ("revision", "fragment"),
    [
        (None, "required"),
        ("", "required"),
        ("15-07-2026", "format"),
        ("2026-07-15;x", "format"),
        ("2023-02-22", "not a supported"),
        ("2026-07-15.beta", "not a supported"),
    ],
)
def test_bad_revision_headers_are_400(
    server: SandboxServer, revision: str | None, fragment: str
) -> None:
    client = SandboxClient(server, revision=None)
    headers = {"revision": revision} if revision is not None else {}
    response = client.get("/api/lists", headers=headers)
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid"
    assert error["source"] == {"parameter": "revision"}
    assert fragment in str(error["detail"])


@pytest.mark.parametrize(
    "revision", ["2025-01-15", "2025-10-15", "2026-07-15", "2026-07-15.pre", "2026-10-15"]
)
def test_supported_revisions_are_accepted(server: SandboxServer, revision: str) -> None:
    assert SandboxClient(server, revision=revision).get("/api/lists").status_code == 200


def test_logs_never_contain_keys_or_emails(
    server: SandboxServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = SandboxClient(server)
    with caplog.at_level(logging.DEBUG, logger="sandbox"):
        client.get("/api/profiles", params={"filter": 'equals(email,"secret.person@example.com")'})
        client.import_profiles([profile("another.person@example.com")])
        SandboxClient(server, key="pk_guess").get("/api/lists")
    lines = [record.getMessage() for record in caplog.records if record.name == "sandbox"]
    assert any("/api/profiles" in line for line in lines)
    text = "\n".join(lines)
    for secret in (API_KEY, "pk_guess", "secret.person", "another.person"):
        assert secret not in text


def test_a_handler_bug_is_a_500_that_logs_no_email(
    server: SandboxServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sandbox import pipeline

    def broken(ctx: object) -> object:
        raise KeyError("hidden.person@example.com")

    monkeypatch.setitem(pipeline.HANDLERS, "get_lists", broken)
    with caplog.at_level(logging.DEBUG, logger="sandbox"):
        response = SandboxClient(server).get("/api/lists")
    assert response.status_code == 500
    assert error_of(response)["code"] == "error"
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "KeyError" in text
    assert "hidden.person" not in text
