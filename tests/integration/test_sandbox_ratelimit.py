"""Rate limits over HTTP; the sandbox runs on a manual clock, so nothing sleeps."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox import SandboxServer
from sandbox.clock import ManualClock
from tests.support.sandbox import (
    API_KEY,
    JOBS,
    LIST_ID,
    OTHER_KEY,
    SandboxClient,
    import_body,
    profile,
    running_sandbox,
)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(6_000.0)  # the start of a 1 s and of a 60 s window


@pytest.fixture
def server(clock: ManualClock) -> Iterator[SandboxServer]:
    with running_sandbox(api_keys={API_KEY: None, OTHER_KEY: None}, clock=clock) as running:
        yield running


def test_burst_limit_gives_429_with_retry_after(server: SandboxServer, clock: ManualClock) -> None:
    client = SandboxClient(server)
    allowed = client.get("/api/accounts")
    assert allowed.status_code == 200
    assert allowed.headers["RateLimit-Limit"] == "15"
    assert allowed.headers["RateLimit-Remaining"] == "14"
    assert allowed.headers["RateLimit-Reset"] == "60"
    clock.advance(0.25)
    refused = client.get("/api/accounts")
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    assert not any(name.startswith("RateLimit") for name in refused.headers)
    (error,) = refused.json()["errors"]
    assert error["code"] == "throttled"
    assert error["title"] == "Request was throttled."
    assert error["detail"] == "Request was throttled. Expected available in 1 second."
    clock.advance(0.75)
    assert client.get("/api/accounts").status_code == 200


def test_steady_limit_and_its_retry_after(server: SandboxServer, clock: ManualClock) -> None:
    client = SandboxClient(server)
    for _ in range(15):
        assert client.get("/api/accounts").status_code == 200
        clock.advance(1.5)
    refused = client.get("/api/accounts")  # 22.5 s into the minute
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "38"
    assert refused.json()["errors"][0]["detail"].endswith("in 38 seconds.")
    clock.advance(37.5)
    assert client.get("/api/accounts").status_code == 200


def test_limits_are_per_account_and_per_operation(
    server: SandboxServer, clock: ManualClock
) -> None:
    mine, theirs = SandboxClient(server), SandboxClient(server, key=OTHER_KEY)
    assert mine.get("/api/accounts").status_code == 200
    assert mine.get("/api/accounts").status_code == 429
    assert theirs.get("/api/accounts").status_code == 200
    assert mine.get(f"/api/lists/{LIST_ID}").status_code == 200


def test_additional_fields_have_their_own_stricter_limit(server: SandboxServer) -> None:
    client = SandboxClient(server)
    counted = {"additional-fields[list]": "profile_count"}
    assert client.get(f"/api/lists/{LIST_ID}", params=counted).status_code == 200
    assert client.get(f"/api/lists/{LIST_ID}", params=counted).status_code == 429
    assert client.get(f"/api/lists/{LIST_ID}").status_code == 200


def test_unauthenticated_answers_carry_no_rate_limit_headers(server: SandboxServer) -> None:
    response = SandboxClient(server, key="pk_unknown").get("/api/lists")
    assert response.status_code == 401
    assert not any(name.startswith("RateLimit") for name in response.headers)


def test_scale_shrinks_limits() -> None:
    with running_sandbox(rate_limit_scale=0.1, clock=ManualClock(6_000.0)) as server:
        client = SandboxClient(server)
        body = import_body([profile("a@example.com")])
        assert client.post(JOBS, body).status_code == 202
        refused = client.post(JOBS, body)
        assert refused.status_code == 429
        assert client.get(f"{JOBS}").headers["RateLimit-Limit"] == "15"


def test_scale_zero_turns_limiting_off() -> None:
    with running_sandbox(rate_limit_scale=0) as server:
        client = SandboxClient(server)
        answers = [client.get("/api/accounts") for _ in range(40)]
    assert {answer.status_code for answer in answers} == {200}
    assert not any("RateLimit-Limit" in answer.headers for answer in answers)


def test_stats_prove_what_the_client_did(server: SandboxServer, clock: ManualClock) -> None:
    client = SandboxClient(server)
    clock.advance(0.9)
    for _ in range(12):  # 12 in one fixed second: 10 allowed, 2 throttled
        client.post(JOBS, import_body([profile("s@example.com")]))
    clock.advance(0.3)  # the next fixed second, but within 1 s of the first batch
    for _ in range(5):
        client.post(JOBS, import_body([profile("s@example.com")]))
    stats = server.stats()
    seen = stats["accounts"][server.account_id(API_KEY)]["bulk_import_profiles"]
    assert seen["requests"] == 17
    assert seen["throttled"] == 2
    assert (seen["limit_burst"], seen["limit_steady"]) == (10, 150)
    assert seen["max_fixed_1s"] == 12
    assert seen["max_sliding_1s"] == 17
    assert seen["max_fixed_60s"] == seen["max_sliding_60s"] == 17
    assert stats["throttled"] == 2
    assert stats["requests"]["by_operation_status"]["bulk_import_profiles"] == {"202": 15, "429": 2}
