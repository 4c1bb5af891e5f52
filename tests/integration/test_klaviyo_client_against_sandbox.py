"""Every client call, over real HTTP, against the sandbox Klaviyo."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from klaviyo_client import (
    AuthenticationError,
    ClientSettings,
    KlaviyoClient,
    NotFoundError,
    PermissionDeniedError,
)
from sandbox import SandboxConfig, SandboxServer

KEY = "pk_" + "a" * 34
LISTS_ONLY_KEY = "pk_" + "b" * 34
LIST_ID = "CLi001"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxServer]:
    config = SandboxConfig(
        api_keys={KEY: None, LISTS_ONLY_KEY: frozenset({"lists:read"})},
        lists={LIST_ID: "Client list"},
        job_queue_seconds=0.0,
        fail_email=r"@fail\.example$",
    )
    with SandboxServer(config, port=0) as server:
        yield server


def _client(sandbox: SandboxServer, key: str = KEY) -> KlaviyoClient:
    return KlaviyoClient(key, ClientSettings(base_url=sandbox.base_url))


def _profiles(emails: list[str]) -> list[dict[str, object]]:
    return [{"type": "profile", "attributes": {"email": e}} for e in emails]


def _complete(client: KlaviyoClient, job_id: str) -> None:
    deadline = time.monotonic() + 30
    while not client.get_bulk_import_job(job_id).done:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_key_checks(sandbox: SandboxServer) -> None:
    assert _client(sandbox).verify_key().via == "accounts"
    assert _client(sandbox, LISTS_ONLY_KEY).verify_key().via == "lists"
    with pytest.raises(AuthenticationError):
        _client(sandbox, "pk_" + "z" * 34).verify_key()
    with pytest.raises(PermissionDeniedError):
        _client(sandbox, LISTS_ONLY_KEY).create_bulk_import_job(_profiles(["x@y.io"]), LIST_ID)


def test_lists_jobs_errors_profiles_and_membership(sandbox: SandboxServer) -> None:
    client = _client(sandbox)
    assert client.get_list(LIST_ID).name == "Client list"
    with pytest.raises(NotFoundError):
        client.get_list("NoList")

    emails = [f"c{i}@example.com" for i in range(250)] + ["a@fail.example"]
    job = client.create_bulk_import_job(_profiles(emails), LIST_ID)
    _complete(client, job.id)
    done = client.get_bulk_import_job(job.id)
    assert (done.total_count, done.failed_count) == (251, 1)
    assert [e.email for e in client.iter_import_errors(job.id)] == ["a@fail.example"]

    imported = {p.email: p.id for p in client.iter_job_profiles(job.id, page_size=100)}
    assert set(imported) == set(emails[:250])  # 3 pages followed
    members = {p.email for p in client.iter_list_members(LIST_ID)}
    assert members == set(emails[:250])
    found = {p.email: p.id for p in client.iter_profiles_by_email(emails[:150])}
    assert found == {e: imported[e] for e in emails[:150]}  # two lookups of ≤100 emails

    removed = [imported[e] for e in emails[:10]]
    client.remove_profiles_from_list(LIST_ID, removed)
    assert len({p.email for p in client.iter_list_members(LIST_ID)}) == 240
    client.add_profiles_to_list(LIST_ID, removed)
    assert {p.email for p in client.iter_list_members(LIST_ID)} == set(emails[:250])
