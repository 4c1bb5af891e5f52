"""Every sandbox answer, errors included, validates against Klaviyo's own spec.

``openapi-core`` checks each response (status, content type, body schema)
against the bundled spec subset with its ``servers`` pointed at the sandbox.
The test drives every implemented operation to at least one success and the
API as a whole through every error status it produces, and fails if an
operation was never validated.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from openapi_core import OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

from sandbox import SandboxServer
from sandbox.clock import ManualClock
from sandbox.server import match_route
from sandbox.spec import load_spec_document, operations
from tests.support.sandbox import (
    API_KEY,
    JOBS,
    LIST_ID,
    SandboxClient,
    import_body,
    profile,
    running_sandbox,
)

LIMITED_KEY = "pk_listsonly00000000000000000000000000"


class Checker:
    """Validates answers and remembers which (operation, status) were seen."""

    def __init__(self, server: SandboxServer) -> None:
        spec = load_spec_document()
        spec["servers"] = [{"url": server.base_url}]
        self.openapi = OpenAPI.from_dict(spec)
        self.seen: set[tuple[str, int]] = set()

    def __call__(self, response: requests.Response, status: int) -> requests.Response:
        assert response.status_code == status, response.text
        self.openapi.validate_response(
            RequestsOpenAPIRequest(response.request), RequestsOpenAPIResponse(response)
        )
        request = response.request
        assert request.method is not None
        assert request.url is not None
        op, _ = match_route(request.method, urlsplit(request.url).path)
        self.seen.add((op.operation_id, status))
        return response


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(6_000.0)


@pytest.fixture
def server(clock: ManualClock) -> Iterator[SandboxServer]:
    keys = {API_KEY: None, LIMITED_KEY: frozenset({"lists:read"})}
    with running_sandbox(api_keys=keys, clock=clock) as running:
        yield running


def test_every_operation_and_error_validates(server: SandboxServer, clock: ManualClock) -> None:
    check = Checker(server)
    client = SandboxClient(server)

    account_id = check(client.get("/api/accounts"), 200).json()["data"][0]["id"]
    check(client.get("/api/accounts"), 429)
    check(client.get(f"/api/accounts/{account_id}"), 200)
    clock.advance(1.0)  # get_account allows 1 a second
    check(client.get("/api/accounts/XXXXXX"), 404)

    job_id = check(client.post(JOBS, import_body(_rows())), 202).json()["data"]["id"]
    check(client.post(JOBS, {"data": {"type": "nope"}}), 400)
    big = import_body(
        [profile(f"b{i}@example.com", properties={"x": "y" * 60_000}) for i in range(90)]
    )
    check(client.post(JOBS, big), 413)
    check(client.get(f"{JOBS}/{job_id}"), 200)  # still queued
    clock.advance(1.0)
    check(client.get(f"{JOBS}/{job_id}", params={"include": "lists"}), 200)
    check(client.get(f"{JOBS}/01NOSUCHJOB000000000000000"), 404)
    check(client.get(JOBS, params={"filter": "equals(status,'complete')"}), 200)
    check(client.get(f"{JOBS}/{job_id}/lists"), 200)
    check(client.get(f"{JOBS}/{job_id}/relationships/lists"), 200)
    check(client.get(f"{JOBS}/{job_id}/profiles", params={"page[size]": "2"}), 200)
    check(client.get(f"{JOBS}/{job_id}/relationships/profiles", params={"page[size]": "2"}), 200)
    errors = check(client.get(f"{JOBS}/{job_id}/import-errors"), 200).json()["data"]
    assert len(errors) == 2

    check(client.get("/api/lists", params={"sort": "name"}), 200)
    check(client.get("/api/lists", params={"page[size]": "50"}), 400)
    check(
        client.get(f"/api/lists/{LIST_ID}", params={"additional-fields[list]": "profile_count"}),
        200,
    )
    check(client.get(f"/api/lists/{LIST_ID}", params={"include": "tags"}), 200)
    check(client.get("/api/lists/Nope99"), 404)
    members = check(client.get(f"/api/lists/{LIST_ID}/profiles", params=_extras()), 200).json()
    assert members["links"]["next"]
    check(client.get(members["links"]["next"]), 200)
    ids = check(client.get(f"/api/lists/{LIST_ID}/relationships/profiles"), 200).json()["data"]
    body = {"data": [{"type": "profile", "id": ids[0]["id"]}]}
    check(client.delete(f"/api/lists/{LIST_ID}/relationships/profiles", body), 204)
    check(client.post(f"/api/lists/{LIST_ID}/relationships/profiles", body), 204)
    check(client.post(f"/api/lists/{LIST_ID}/relationships/profiles", {"data": "x"}), 400)

    check(client.get("/api/profiles", params=_extras()), 200)
    check(client.get("/api/profiles", params={"filter": 'any(email,["p0@example.com"])'}), 200)
    check(client.get("/api/profiles", params={"filter": "equals(shoe_size,1)"}), 400)
    check(client.get("/api/profiles", params={"fields[profile]": "email"}), 200)

    check(SandboxClient(server, key=None).get("/api/profiles"), 401)
    check(SandboxClient(server, key="pk_unknown").get("/api/profiles"), 401)
    check(SandboxClient(server, key=LIMITED_KEY).get("/api/profiles"), 403)
    check(SandboxClient(server, revision="1999-01-01").get("/api/profiles"), 400)
    check(
        client.session.post(client.url(JOBS), data=b"x", headers={"Content-Type": "text/csv"}), 415
    )
    check(client.session.post(client.url(JOBS), data=b"{", headers=_json()), 400)

    successes = {op for op, status in check.seen if status < 300}
    assert successes == set(operations())
    assert {status for _, status in check.seen} >= {
        200,
        202,
        204,
        400,
        401,
        403,
        404,
        413,
        415,
        429,
    }


def test_injected_server_errors_validate() -> None:
    with running_sandbox(fault_rate=1.0, seed=8, rate_limit_scale=0) as server:
        check = Checker(server)
        client = SandboxClient(server)
        statuses: set[int] = set()
        for _ in range(40):
            try:
                response = client.get(f"/api/lists/{LIST_ID}")
            except requests.ConnectionError:
                continue
            statuses.add(response.status_code)
            if response.status_code == 502:
                # Deliberately outside the spec: a gateway's HTML page, not Klaviyo's JSON.
                assert response.headers["Content-Type"] == "text/html"
                continue
            check(response, response.status_code)
    assert statuses == {500, 502, 503}


def _rows() -> list[dict[str, Any]]:
    rows = [profile(f"p{i}@example.com", first_name=f"P{i}", properties={"i": i}) for i in range(4)]
    rows.append(profile("broken"))
    rows.append({"type": "profile", "attributes": {"phone_number": "12"}})
    rows.append(
        {
            "type": "profile",
            "attributes": {
                "phone_number": "+15005550006",
                "location": {"city": "Oslo", "latitude": 59.9},
            },
        }
    )
    return rows  # fmt: skip


def _extras() -> dict[str, str]:
    return {"additional-fields[profile]": "subscriptions,predictive_analytics", "page[size]": "3"}


def _json() -> dict[str, str]:
    return {"Content-Type": "application/vnd.api+json"}
