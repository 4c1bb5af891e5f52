"""Injected faults: repeatable with a seed, the right share, real dropped connections."""

from __future__ import annotations

import requests

from sandbox import SandboxServer
from tests.support.sandbox import (
    JOBS,
    LIST_ID,
    SandboxClient,
    import_body,
    profile,
    running_sandbox,
)


def outcomes(server: SandboxServer, count: int) -> list[str]:
    """What ``count`` sequential reads got: a status code or "dropped"."""
    client = SandboxClient(server)
    seen: list[str] = []
    for _ in range(count):
        try:
            response = client.get(f"/api/lists/{LIST_ID}")
        except requests.ConnectionError:
            seen.append("dropped")
            continue
        seen.append(str(response.status_code))
        if response.status_code == 502:
            assert response.headers["Content-Type"] == "text/html"
            assert b"502 Bad Gateway" in response.content
        elif response.status_code in (500, 503):
            assert response.headers["Content-Type"] == "application/vnd.api+json"
            assert response.json()["errors"][0]["status"] == response.status_code
    client.close()
    return seen


def test_same_seed_same_faults_and_the_right_share() -> None:
    runs = []
    for _ in range(2):
        with running_sandbox(fault_rate=0.4, seed=1234, rate_limit_scale=0) as server:
            runs.append(outcomes(server, 150))
            stats = server.stats()
    first, second = runs
    assert first == second
    faults = [outcome for outcome in first if outcome != "200"]
    assert 0.25 < len(faults) / len(first) < 0.55
    assert set(faults) == {"500", "502", "503", "dropped"}
    assert stats["faults"]["total"] == len(faults)
    assert stats["faults"]["by_kind"]["drop"] == faults.count("dropped")
    assert stats["requests"]["by_status"]["dropped"] == faults.count("dropped")


def test_another_seed_gives_other_faults() -> None:
    with running_sandbox(fault_rate=0.4, seed=1, rate_limit_scale=0) as server:
        first = outcomes(server, 60)
    with running_sandbox(fault_rate=0.4, seed=2, rate_limit_scale=0) as server:
        second = outcomes(server, 60)
    assert first != second


def test_no_faults_by_default_and_none_outside_the_api() -> None:
    with running_sandbox(rate_limit_scale=0) as server:
        assert set(outcomes(server, 30)) == {"200"}
    with running_sandbox(fault_rate=1.0, seed=5) as server:
        for _ in range(10):
            assert requests.get(server.base_url + "/_sandbox/health", timeout=5).ok


def test_some_write_faults_happen_after_the_write_was_applied() -> None:
    with running_sandbox(fault_rate=1.0, seed=99, rate_limit_scale=0) as server:
        client = SandboxClient(server)
        for number in range(40):
            try:
                response = client.post(JOBS, import_body([profile(f"w{number}@example.com")]))
            except requests.ConnectionError:
                continue
            assert response.status_code in (500, 502, 503)
        stats = server.stats()
    applied = sum(
        count for kind, count in stats["faults"]["by_kind"].items() if kind.endswith("after_apply")
    )
    assert stats["faults"]["total"] == 40
    assert 8 < applied < 32
    (account,) = stats["state"].values()
    assert sum(account["jobs"].values()) == applied


def test_latency_is_added_to_answers() -> None:
    with running_sandbox(latency_ms=120, rate_limit_scale=0) as server:
        client = SandboxClient(server)
        client.get(f"/api/lists/{LIST_ID}")
        response = client.get(f"/api/lists/{LIST_ID}")
    assert response.status_code == 200
    assert response.elapsed.total_seconds() >= 0.12
