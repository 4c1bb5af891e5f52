"""Bulk profile import over HTTP: limits, rejects, progress, errors, upsert, lists."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from sandbox import SandboxServer
from sandbox.clock import ManualClock
from tests.support.sandbox import (
    API_KEY,
    JOBS,
    LIST_ID,
    SandboxClient,
    emails,
    import_body,
    profile,
    running_sandbox,
)


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with running_sandbox(rate_limit_scale=0, fail_email=r"^reject\.") as running:
        yield running


@pytest.fixture
def client(server: SandboxServer) -> Iterator[SandboxClient]:
    session = SandboxClient(server)
    yield session
    session.close()


def error_of(response: requests.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    (error,) = response.json()["errors"]
    assert isinstance(error, dict)
    return error


def members(server: SandboxServer, list_id: str = LIST_ID) -> list[str]:
    response = requests.get(f"{server.base_url}/_sandbox/lists/{list_id}", timeout=10)
    result: list[str] = response.json()["emails"]
    return result


def test_accepted_job_is_202_and_queued(server: SandboxServer) -> None:
    with running_sandbox(job_queue_seconds=30) as slow:
        response = SandboxClient(slow).post(JOBS, import_body([profile("q@example.com")]))
    assert response.status_code == 202
    assert response.headers["Content-Type"] == "application/vnd.api+json"
    data = response.json()["data"]
    assert data["type"] == "profile-bulk-import-job"
    assert len(data["id"]) == 26
    assert data["id"].isupper()
    assert data["attributes"]["status"] == "queued"
    assert data["attributes"]["total_count"] == 1
    assert data["attributes"]["started_at"] is None
    assert response.json()["links"]["self"] == data["links"]["self"]


def test_more_than_ten_thousand_profiles_is_400(client: SandboxClient) -> None:
    body = import_body([profile(e) for e in emails(10_001, prefix="x")])
    error = error_of(client.post(JOBS, body), 400)
    assert error["code"] == "invalid"
    assert error["source"] == {"pointer": "/data/attributes/profiles/data"}


def test_payload_over_five_megabytes_is_413(client: SandboxClient) -> None:
    filler = "x" * 60_000
    body = import_body(
        [profile(f"big{i}@example.com", properties={"f": filler}) for i in range(90)]
    )
    assert len(json.dumps(body)) > 5 * 1024 * 1024
    error = error_of(client.post(JOBS, body), 413)
    assert error["code"] == "payload_too_large"
    assert client.get(f"/api/lists/{LIST_ID}").status_code == 200  # the connection survives


def test_profile_over_100_kb_is_400_with_its_index(client: SandboxClient) -> None:
    rows = [profile(e) for e in emails(5, prefix="fine")]
    rows.insert(3, profile("huge@example.com", properties={"blob": "y" * 110_000}))
    error = error_of(client.post(JOBS, import_body(rows)), 400)
    assert error["source"] == {"pointer": "/data/attributes/profiles/data/3"}


ROWS = "/data/attributes/profiles/data"
WRONG_TYPE = {"data": {"type": "profile-bulk-import", "attributes": {"profiles": {"data": []}}}}
NO_ROWS = {"data": {"type": "profile-bulk-import-job", "attributes": {"profiles": {}}}}


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        (WRONG_TYPE, "/data/type"),
        (NO_ROWS, ROWS),
        (import_body([{"attributes": {"email": "a@b.co"}}]), f"{ROWS}/0/type"),
        (import_body([profile("a@b.co"), {"type": "profile"}]), f"{ROWS}/1/attributes"),
        (import_body(["a@b.co"]), f"{ROWS}/0"),  # type: ignore[list-item]
        (
            import_body([profile("a@b.co")], list_ids=["Nope99"]),
            "/data/relationships/lists/data/0/id",
        ),
        ([], "/"),
    ],
)
def test_schema_violations_reject_the_whole_body(
    client: SandboxClient, server: SandboxServer, body: Any, pointer: str
) -> None:
    before = server.stats()["state"]
    error = error_of(client.post(JOBS, body), 400)
    assert error["code"] == "invalid"
    assert error["source"] == {"pointer": pointer}
    assert server.stats()["state"] == before


def test_bad_json_is_a_parse_error(client: SandboxClient) -> None:
    response = client.session.post(
        client.url(JOBS), data=b'{"data": ', headers={"Content-Type": "application/vnd.api+json"}
    )
    error = error_of(response, 400)
    assert error["code"] == "parse_error"
    assert error["detail"].startswith("JSON parse error")


def test_gzip_bodies_are_accepted(client: SandboxClient) -> None:
    raw = json.dumps(import_body([profile("zipped@example.com")])).encode()
    response = client.session.post(
        client.url(JOBS),
        data=gzip.compress(raw),
        headers={"Content-Type": "application/vnd.api+json", "Content-Encoding": "gzip"},
    )
    assert response.status_code == 202
    client.wait_for_job(response.json()["data"]["id"])


def test_jobs_move_from_queued_to_processing_to_complete() -> None:
    clock = ManualClock(6_000.0)
    with running_sandbox(
        job_queue_seconds=0.3, job_profiles_per_second=2_000, rate_limit_scale=0, clock=clock
    ) as server:
        client = SandboxClient(server)
        job = client.import_profiles([profile(e) for e in emails(1_000, prefix="clock")])

        def state() -> tuple[str, int, int]:
            attributes = client.get(f"{JOBS}/{job}").json()["data"]["attributes"]
            dump = requests.get(f"{server.base_url}/_sandbox/lists/{LIST_ID}", timeout=5).json()
            return attributes["status"], attributes["completed_count"], dump["profile_count"]

        assert state() == ("queued", 0, 0)
        clock.advance(0.2)
        assert state() == ("queued", 0, 0)
        clock.advance(0.2)  # 0.1 s of processing at 2,000 profiles/s
        assert state() == ("processing", 200, 200)
        clock.advance(0.25)
        assert state() == ("processing", 700, 700)
        clock.advance(0.15)
        assert state() == ("complete", 1_000, 1_000)
        attributes = client.get(f"{JOBS}/{job}").json()["data"]["attributes"]
        assert attributes["started_at"] is not None
        assert attributes["completed_at"] is not None


def test_jobs_progress_in_real_time_without_being_asked() -> None:
    with running_sandbox(
        job_queue_seconds=0.05, job_profiles_per_second=20_000, rate_limit_scale=0
    ) as server:
        client = SandboxClient(server)
        job = client.import_profiles([profile(e) for e in emails(2_000, prefix="real")])
        counts = []
        deadline = time.monotonic() + 10
        while not counts or counts[-1] < 2_000:
            # Read state that does not touch the job: the background thread moves it.
            counts.append(server.stats()["state"][server.account_id(API_KEY)]["profiles"])
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert counts == sorted(counts)
        assert client.get(f"{JOBS}/{job}").json()["data"]["attributes"]["status"] == "complete"


def test_a_complete_job_has_visible_effects_at_once(
    client: SandboxClient, server: SandboxServer
) -> None:
    wanted = emails(3_000, prefix="visible")
    job = (
        client.import_profiles([profile(e) for e in wanted], list_ids=["Fresh1"]) if False else None
    )
    requests.post(
        f"{server.base_url}/_sandbox/lists", json={"name": "Fresh", "id": "Fresh1"}, timeout=5
    ).raise_for_status()
    job = client.import_profiles([profile(e) for e in wanted], list_ids=["Fresh1"])
    client.wait_for_job(job)
    assert members(server, "Fresh1") == wanted
    page = client.get("/api/lists/Fresh1", params={"additional-fields[list]": "profile_count"})
    assert page.json()["data"]["attributes"]["profile_count"] == 3_000


def test_failed_rows_are_import_errors_with_their_payload(client: SandboxClient) -> None:
    rows = [profile(e) for e in emails(10, prefix="ok")]
    bad = [profile(f"broken{i}") for i in range(22)]
    bad.append({"type": "profile", "attributes": {"phone_number": "0123", "first_name": "P"}})
    bad.append(profile("reject.me@example.com"))
    job = client.import_profiles(rows + bad)
    attributes = client.wait_for_job(job)
    assert (attributes["completed_count"], attributes["failed_count"]) == (10, 24)
    first = client.get(f"{JOBS}/{job}/import-errors").json()
    assert len(first["data"]) == 20
    errors = client.collect(f"{JOBS}/{job}/import-errors", **{"page[size]": "100"})
    assert [e["attributes"]["original_payload"] for e in errors] == bad
    assert {e["type"] for e in errors} == {"import-error"}
    for index, error in enumerate(errors):
        pointer = error["attributes"]["source"]["pointer"]
        assert pointer.startswith(f"/data/attributes/profiles/data/{10 + index}")
        assert error["attributes"]["code"] == "invalid"
    assert errors[22]["attributes"]["source"]["pointer"].endswith("/attributes/phone_number")
    assert (
        client.get(f"{JOBS}/{job}/import-errors", params={"page[size]": "101"}).status_code == 400
    )


def test_upsert_by_email_keeps_id_and_merges(client: SandboxClient) -> None:
    first = client.import_profiles(
        [profile("Up.Sert@example.com", first_name="Up", properties={"a": 1, "b": 2})]
    )
    client.wait_for_job(first)
    (created,) = client.get(f"{JOBS}/{first}/profiles").json()["data"]
    second = client.import_profiles(
        [
            profile(
                "up.sert@example.com",
                first_name=None,
                last_name="Sert",
                properties={"b": 3, "a": None},
            )
        ]
    )
    client.wait_for_job(second)
    (updated,) = client.get(f"{JOBS}/{second}/profiles").json()["data"]
    assert updated["id"] == created["id"]
    assert updated["attributes"]["first_name"] == "Up"
    assert updated["attributes"]["last_name"] == "Sert"
    assert updated["attributes"]["properties"] == {"a": 1, "b": 3}
    found = client.get("/api/profiles", params={"filter": 'equals(email,"UP.SERT@example.com")'})
    assert [p["id"] for p in found.json()["data"]] == [created["id"]]


def test_jobs_without_lists_add_no_members(client: SandboxClient, server: SandboxServer) -> None:
    before = members(server)
    job = client.import_profiles([profile("nolist@example.com")], list_ids=())
    client.wait_for_job(job)
    assert members(server) == before
    assert client.get(f"{JOBS}/{job}/relationships/lists").json()["data"] == []


def test_a_job_can_feed_several_lists(client: SandboxClient, server: SandboxServer) -> None:
    requests.post(
        f"{server.base_url}/_sandbox/lists", json={"name": "Second", "id": "Second1"}, timeout=5
    ).raise_for_status()
    job = client.import_profiles([profile("both@example.com")], list_ids=[LIST_ID, "Second1"])
    client.wait_for_job(job)
    assert "both@example.com" in members(server)
    assert members(server, "Second1") == ["both@example.com"]
