"""Every implemented endpoint answers as the spec describes, over real HTTP."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import requests

from sandbox import SandboxServer
from tests.support.sandbox import (
    API_KEY,
    JOBS,
    LIST_ID,
    REVISION,
    SandboxClient,
    emails,
    profile,
    running_sandbox,
)

EMAILS = emails(45, prefix="member")


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with running_sandbox(rate_limit_scale=0) as running:
        client = SandboxClient(running)
        job = client.import_profiles(
            [profile(email, first_name=f"N{i}") for i, email in enumerate(EMAILS)]
        )
        client.wait_for_job(job)
        for number in range(11):
            requests.post(
                running.base_url + "/_sandbox/lists",
                json={"name": f"Extra {number}", "id": f"Extra{number:02d}"},
                timeout=5,
            ).raise_for_status()
        yield running


@pytest.fixture
def client(server: SandboxServer) -> Iterator[SandboxClient]:
    session = SandboxClient(server)
    yield session
    session.close()


def ids_for(client: SandboxClient, wanted: list[str]) -> list[str]:
    quoted = ",".join(json.dumps(email) for email in wanted)
    response = client.get("/api/profiles", params={"filter": f"any(email,[{quoted}])"})
    return [item["id"] for item in response.json()["data"]]


def test_get_accounts_and_get_account(client: SandboxClient, server: SandboxServer) -> None:
    body = client.get("/api/accounts").json()
    (account,) = body["data"]
    assert account["type"] == "account"
    assert account["id"] == server.account_id(API_KEY)
    assert body["links"]["self"] == server.base_url + "/api/accounts"
    assert client.get(f"/api/accounts/{account['id']}").json()["data"]["id"] == account["id"]
    assert client.get("/api/accounts/XXXXXX").status_code == 404


def test_get_list_with_and_without_trailing_slash(client: SandboxClient) -> None:
    for path in (f"/api/lists/{LIST_ID}", f"/api/lists/{LIST_ID}/"):
        body = client.get(path).json()
        assert body["data"]["id"] == LIST_ID
        assert body["data"]["attributes"]["name"] == "Newsletter"
        assert "profile_count" not in body["data"]["attributes"]
    counted = client.get(
        f"/api/lists/{LIST_ID}", params={"additional-fields[list]": "profile_count"}
    )
    assert counted.json()["data"]["attributes"]["profile_count"] == len(EMAILS)


def test_unknown_list_is_404(client: SandboxClient) -> None:
    for path in (
        "/api/lists/Nope99",
        "/api/lists/Nope99/profiles",
        "/api/lists/Nope99/relationships/profiles",
    ):
        response = client.get(path)
        assert response.status_code == 404
        assert response.json()["errors"][0]["code"] == "not_found"


def test_get_lists_pages_by_ten_and_filters(client: SandboxClient) -> None:
    first = client.get("/api/lists").json()
    assert len(first["data"]) == 10
    assert "next" in first["links"]
    every = client.collect("/api/lists")
    assert len(every) == 12
    assert len({item["id"] for item in every}) == 12
    assert client.get("/api/lists", params={"page[size]": "11"}).status_code == 400
    named = client.get("/api/lists", params={"filter": 'equals(name,"Extra 3")'}).json()["data"]
    assert [item["id"] for item in named] == ["Extra03"]
    ordered = client.get("/api/lists", params={"sort": "-name", "page[size]": "2"}).json()["data"]
    assert [item["attributes"]["name"] for item in ordered] == ["Newsletter", "Extra 9"]


def test_profiles_filters(client: SandboxClient) -> None:
    one = client.get("/api/profiles", params={"filter": f'equals(email,"{EMAILS[3].upper()}")'})
    (item,) = one.json()["data"]
    assert item["attributes"]["email"] == EMAILS[3]
    assert item["attributes"]["first_name"] == "N3"
    several = ids_for(client, [EMAILS[0], EMAILS[7], "nobody@example.com"])
    assert len(several) == 2
    by_id = client.get("/api/profiles", params={"filter": f'equals(id,"{several[0]}")'}).json()
    assert by_id["data"][0]["attributes"]["email"] == EMAILS[0]
    bad = client.get("/api/profiles", params={"filter": "equals(email,"})
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["source"] == {"parameter": "filter"}


def test_profiles_cursor_pagination_follows_full_next_urls(
    client: SandboxClient, server: SandboxServer
) -> None:
    first = client.get("/api/profiles", params={"page[size]": "20"}).json()
    assert len(first["data"]) == 20
    next_url = first["links"]["next"]
    assert next_url.startswith(server.base_url + "/api/profiles?")
    assert "page%5Bcursor%5D=" in next_url
    assert "page%5Bsize%5D=20" in next_url
    every = client.collect("/api/profiles", **{"page[size]": "20"})
    assert [item["attributes"]["email"] for item in every] == EMAILS
    assert len(client.collect("/api/profiles")) == len(EMAILS)
    forged = client.get("/api/profiles", params={"page[cursor]": "garbage!"})
    assert forged.status_code == 400


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"page[size]": "0"}, "page[size]"),
        ({"page[size]": "101"}, "page[size]"),
        ({"page[size]": "ten"}, "page[size]"),
        ({"pagesize": "10"}, "pagesize"),
        ({"include": "lists"}, "include"),
        ({"fields[profile]": "email,shoe_size"}, "fields[profile]"),
        ({"sort": "-shoe_size"}, "sort"),
        ({"sort": "-email"}, "sort"),
    ],
)
def test_bad_query_parameters_are_400(
    client: SandboxClient, params: dict[str, str], parameter: str
) -> None:
    response = client.get("/api/profiles", params=params)
    assert response.status_code == 400
    assert response.json()["errors"][0]["source"] == {"parameter": parameter}


def test_sparse_fieldsets(client: SandboxClient) -> None:
    body = client.get("/api/profiles", params={"fields[profile]": "email,first_name"}).json()
    assert set(body["data"][0]["attributes"]) == {"email", "first_name"}


def test_list_member_endpoints(client: SandboxClient) -> None:
    members = client.collect(f"/api/lists/{LIST_ID}/profiles", **{"page[size]": "100"})
    assert [m["attributes"]["email"] for m in members] == EMAILS
    assert all("joined_group_at" in m["attributes"] for m in members)
    ids = client.collect(f"/api/lists/{LIST_ID}/relationships/profiles", **{"page[size]": "7"})
    assert [i["id"] for i in ids] == [m["id"] for m in members]
    assert {i["type"] for i in ids} == {"profile"}
    filtered = client.get(
        f"/api/lists/{LIST_ID}/profiles", params={"filter": f'any(email,["{EMAILS[5]}"])'}
    )
    assert [m["attributes"]["email"] for m in filtered.json()["data"]] == [EMAILS[5]]


def test_add_and_remove_list_members(client: SandboxClient, server: SandboxServer) -> None:
    target = "Extra10"
    chosen = ids_for(client, EMAILS[:3])
    body = {"data": [{"type": "profile", "id": pid} for pid in chosen]}
    path = f"/api/lists/{target}/relationships/profiles/"
    added = client.post(path, body)
    assert added.status_code == 204
    assert added.content == b""
    assert client.post(path, body).status_code == 204
    listed = requests.get(server.base_url + f"/_sandbox/lists/{target}", timeout=5).json()
    assert sorted(listed["emails"]) == sorted(EMAILS[:3])
    removed = client.delete(path, {"data": body["data"][:2]})
    assert removed.status_code == 204
    assert client.delete(path, {"data": body["data"][:2]}).status_code == 204
    remaining = client.collect(f"/api/lists/{target}/relationships/profiles")
    assert [item["id"] for item in remaining] == chosen[2:]


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({"data": [{"type": "profile", "id": "01UNKNOWN000000000000000000"}]}, "/data/0/id"),
        ({"data": [{"type": "list", "id": "x"}]}, "/data/0"),
        ({"data": {"type": "profile", "id": "x"}}, "/data"),
        ({"data": [{"type": "profile", "id": "x"}] * 1001}, "/data"),
    ],
)
def test_membership_changes_validate_the_body(
    client: SandboxClient, body: dict[str, object], pointer: str
) -> None:
    response = client.post(f"/api/lists/{LIST_ID}/relationships/profiles", body)
    assert response.status_code == 400
    assert response.json()["errors"][0]["source"] == {"pointer": pointer}


def test_job_endpoints(client: SandboxClient) -> None:
    job = client.import_profiles([profile("job.one@example.com"), profile("broken")])
    attributes = client.wait_for_job(job)
    assert (
        attributes["total_count"],
        attributes["completed_count"],
        attributes["failed_count"],
    ) == (2, 1, 1)
    base = f"{JOBS}/{job}"
    included = client.get(base, params={"include": "lists"}).json()
    assert [item["id"] for item in included["included"]] == [LIST_ID]
    assert included["data"]["relationships"]["lists"]["data"] == [{"type": "list", "id": LIST_ID}]
    assert [x["id"] for x in client.get(f"{base}/lists").json()["data"]] == [LIST_ID]
    assert client.get(f"{base}/relationships/lists").json()["data"] == [
        {"type": "list", "id": LIST_ID}
    ]
    profiles = client.get(f"{base}/profiles").json()["data"]
    assert [p["attributes"]["email"] for p in profiles] == ["job.one@example.com"]
    assert client.get(f"{base}/relationships/profiles").json()["data"] == [
        {"type": "profile", "id": profiles[0]["id"]}
    ]
    (error,) = client.get(f"{base}/import-errors").json()["data"]
    assert error["attributes"]["original_payload"] == profile("broken")
    assert client.get(f"{JOBS}/01NOSUCHJOB000000000000000").status_code == 404
    listed = client.get(JOBS, params={"filter": "equals(status,'complete')", "sort": "-created_at"})
    assert listed.json()["data"][0]["id"] == job
    assert client.get(JOBS, params={"filter": "equals(status,'queued')"}).json()["data"] == []


def test_unknown_paths_and_methods(client: SandboxClient) -> None:
    missing = client.get("/api/campaigns")
    assert missing.status_code == 404
    assert missing.json()["errors"][0]["code"] == "not_found"
    wrong = client.session.put(client.url(f"/api/lists/{LIST_ID}"), timeout=5)
    assert wrong.status_code == 405
    assert wrong.json()["errors"][0]["code"] == "method_not_allowed"
    assert client.delete(f"/api/lists/{LIST_ID}").status_code == 405


def test_keep_alive_with_content_length(server: SandboxServer) -> None:
    address = urlsplit(server.base_url)
    connection = http.client.HTTPConnection(str(address.hostname), address.port, timeout=5)
    headers = {"Authorization": f"Klaviyo-API-Key {API_KEY}", "revision": REVISION}
    try:
        for _ in range(3):
            connection.request("GET", f"/api/lists/{LIST_ID}", headers=headers)
            response = connection.getresponse()
            payload = response.read()
            assert response.status == 200
            assert int(response.headers["Content-Length"]) == len(payload)
            assert response.headers.get("Connection") != "close"
        sock = connection.sock
        connection.request("GET", "/_sandbox/health")
        assert connection.getresponse().read() == b'{"ok":true}'
        assert connection.sock is sock
    finally:
        connection.close()


def test_unsupported_media_type(client: SandboxClient) -> None:
    response = client.session.post(
        client.url(JOBS), data=b"email=a@b.c", headers={"Content-Type": "text/plain"}, timeout=5
    )
    assert response.status_code == 415
    assert response.json()["errors"][0]["code"] == "unsupported_media_type"
