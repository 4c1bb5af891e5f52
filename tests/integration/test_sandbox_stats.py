"""``/_sandbox/``: statistics, whole-list dumps and run-time lists."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests

from sandbox import SandboxServer
from sandbox.clock import ManualClock
from tests.support.sandbox import (
    API_KEY,
    LIST_ID,
    OTHER_KEY,
    SandboxClient,
    emails,
    profile,
    running_sandbox,
)


@pytest.fixture
def server() -> Iterator[SandboxServer]:
    keys = {API_KEY: None, OTHER_KEY: frozenset({"lists:read"})}
    # On a manual clock rate-limit windows never roll over in the middle of a
    # test (jobs then move only when a test advances the clock).
    with running_sandbox(api_keys=keys, clock=ManualClock(6_000.0)) as running:
        yield running


def admin(server: SandboxServer, path: str) -> requests.Response:
    return requests.get(server.base_url + path, timeout=10)


def test_stats_count_requests_by_operation_and_status(server: SandboxServer) -> None:
    client = SandboxClient(server)
    client.get(f"/api/lists/{LIST_ID}")
    client.get(f"/api/lists/{LIST_ID}/")
    client.get("/api/lists/Nope99")
    client.get("/api/accounts")
    client.get("/api/accounts")  # throttled: 1/s
    SandboxClient(server, key=OTHER_KEY).get("/api/profiles")
    client.get("/api/nothing-here")
    response = admin(server, "/_sandbox/stats")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    stats = response.json()
    assert stats["requests"]["by_operation"] == {
        "get_list": 3,
        "get_accounts": 2,
        "get_profiles": 1,
        "unknown": 1,
    }
    assert stats["requests"]["by_status"] == {"200": 3, "404": 2, "429": 1, "403": 1}
    assert stats["requests"]["by_operation_status"]["get_accounts"] == {"200": 1, "429": 1}
    assert stats["throttled"] == 1
    assert stats["faults"] == {"total": 0, "by_kind": {}}


def test_stats_identify_accounts_by_id_never_by_key(server: SandboxServer) -> None:
    SandboxClient(server).get(f"/api/lists/{LIST_ID}")
    text = admin(server, "/_sandbox/stats").text
    assert API_KEY not in text
    assert OTHER_KEY not in text
    stats = json.loads(text)
    mine, theirs = server.account_id(API_KEY), server.account_id(OTHER_KEY)
    assert set(stats["state"]) == {mine, theirs}
    assert stats["state"][theirs]["scopes"] == ["lists:read"]
    assert stats["state"][mine]["scopes"] == "all"
    window = stats["accounts"][mine]["get_list"]
    assert window["requests"] == 1
    assert window["max_sliding_1s"] == window["max_fixed_1s"] == 1
    assert (window["limit_burst"], window["limit_steady"]) == (75, 750)
    assert stats["settings"]["rate_limit_scale"] == 1.0


def test_whole_list_dump(server: SandboxServer) -> None:
    client = SandboxClient(server)
    wanted = emails(5_000, prefix="dump")
    job = client.import_profiles([profile(e) for e in wanted])
    clock = server.app.clock
    assert isinstance(clock, ManualClock)
    clock.advance(1.0)
    assert client.wait_for_job(job)["completed_count"] == 5_000
    ambiguous = admin(server, f"/_sandbox/lists/{LIST_ID}")
    assert ambiguous.status_code == 400
    dump = admin(server, f"/_sandbox/lists/{LIST_ID}?account={server.account_id(API_KEY)}").json()
    assert dump["profile_count"] == 5_000
    assert dump["emails"] == wanted
    other = admin(server, f"/_sandbox/lists/{LIST_ID}?account={server.account_id(OTHER_KEY)}")
    assert other.json()["emails"] == []
    assert server.list_emails(LIST_ID, server.account_id(API_KEY)) == wanted
    with pytest.raises(KeyError):
        server.list_emails(LIST_ID)  # two accounts: which one?
    with pytest.raises(KeyError):
        server.list_emails("Nope99", server.account_id(API_KEY))
    assert admin(server, "/_sandbox/lists/Nope99?account=x").status_code == 404


def test_create_lists_at_run_time() -> None:
    with running_sandbox(lists={}) as server:
        client = SandboxClient(server)
        created = requests.post(
            server.base_url + "/_sandbox/lists", json={"name": "Made later"}, timeout=5
        )
        assert created.status_code == 201
        list_id = created.json()["id"]
        assert len(list_id) == 6
        assert list_id.isalnum()
        assert (
            client.get(f"/api/lists/{list_id}").json()["data"]["attributes"]["name"] == "Made later"
        )
        assert admin(server, f"/_sandbox/lists/{list_id}").json()["emails"] == []
        again = requests.post(
            server.base_url + "/_sandbox/lists", json={"name": "x", "id": list_id}, timeout=5
        )
        assert again.status_code == 409
        for bad in ({}, {"name": ""}, {"name": "x", "id": "no-dash"}, [1]):
            response = requests.post(server.base_url + "/_sandbox/lists", json=bad, timeout=5)
            assert response.status_code == 400


def test_health_and_unknown_admin_paths(server: SandboxServer) -> None:
    assert admin(server, "/_sandbox/health").json() == {"ok": True}
    assert admin(server, "/_sandbox/nothing").status_code == 404
    assert requests.delete(server.base_url + "/_sandbox/stats", timeout=5).status_code == 405
