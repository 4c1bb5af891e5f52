"""Klaviyo's own Python SDK drives the sandbox and parses every answer.

The SDK (``klaviyo-api``) deserialises answers into its pydantic models, so
this proves the sandbox's shapes, types and enums match what Klaviyo sends.
The sandbox runs on a manual clock: job progress and rate-limit windows move
only when the test says, so nothing here depends on timing.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from klaviyo_api import KlaviyoAPI
from openapi_client import rest
from openapi_client.exceptions import ApiException, NotFoundException, UnauthorizedException

from sandbox import SandboxServer
from sandbox.clock import ManualClock
from tests.support.sandbox import API_KEY, LIST_ID, import_body, profile, running_sandbox


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(6_000.0)


@pytest.fixture
def server(clock: ManualClock) -> Iterator[SandboxServer]:
    with running_sandbox(clock=clock, fail_email=r"@blocked\.example$") as running:
        yield running


def sdk(server: SandboxServer, key: str = API_KEY) -> Any:
    """The SDK with every retry off.

    ``max_retries=0`` stops the SDK's own retries, but its urllib3 pool still
    retries a 429 or 503 three times, sleeping for ``Retry-After`` in real
    time; ``configuration.retries = False`` stops that too.
    """
    client = KlaviyoAPI(key, max_retries=0, test_host=server.base_url)
    client.configuration.retries = False
    client.api_client.rest_client = rest.RESTClientObject(client.configuration)
    return client


@pytest.fixture
def klaviyo(server: SandboxServer) -> Any:
    return sdk(server)


def cursor_of(next_link: str) -> str:
    """The SDK only unpacks https links; take the cursor out of ours."""
    return parse_qs(urlsplit(next_link).query)["page[cursor]"][0]


def test_official_sdk_round_trip(klaviyo: Any, server: SandboxServer, clock: ManualClock) -> None:
    accounts = klaviyo.Accounts.get_accounts()
    assert accounts.data[0].id == server.account_id(API_KEY)
    assert accounts.data[0].attributes.contact_information.organization_name

    the_list = klaviyo.Lists.get_list(LIST_ID, additional_fields_list=["profile_count"])
    assert the_list.data.attributes.name == "Newsletter"
    assert the_list.data.attributes.profile_count == 0

    rows = [
        profile("ada@example.com", first_name="Ada", properties={"plan": "pro"}),
        profile("grace@example.com", location={"city": "Arlington"}),
        profile("mallory@blocked.example"),
        profile("not-an-address"),
    ]
    created = klaviyo.Profiles.bulk_import_profiles(import_body(rows))
    job_id = created.data.id
    assert created.data.attributes.status == "queued"
    assert created.data.attributes.total_count == 4
    assert isinstance(created.data.attributes.created_at, datetime.datetime)

    clock.advance(1.0)
    job = klaviyo.Profiles.get_bulk_import_profiles_job(job_id, include=["lists"])
    assert job.data.attributes.status == "complete"
    assert (job.data.attributes.completed_count, job.data.attributes.failed_count) == (2, 2)
    assert job.data.attributes.completed_at is not None
    assert [item.id for item in job.included] == [LIST_ID]

    errors = klaviyo.Profiles.get_errors_for_bulk_import_profiles_job(job_id)
    assert [e.attributes.original_payload for e in errors.data] == rows[2:]
    assert errors.data[0].attributes.source.pointer.endswith("/2/attributes/email")

    members = klaviyo.Lists.get_profiles_for_list(LIST_ID)
    by_email = {m.attributes.email: m for m in members.data}
    assert set(by_email) == {"ada@example.com", "grace@example.com"}
    assert by_email["ada@example.com"].attributes.properties == {"plan": "pro"}
    assert by_email["ada@example.com"].attributes.first_name == "Ada"
    assert by_email["grace@example.com"].attributes.location.city == "Arlington"
    assert isinstance(by_email["ada@example.com"].attributes.joined_group_at, datetime.datetime)

    job_profiles = klaviyo.Profiles.get_profiles_for_bulk_import_profiles_job(job_id)
    assert {p.id for p in job_profiles.data} == {m.id for m in members.data}
    ids = klaviyo.Profiles.get_profile_ids_for_bulk_import_profiles_job(job_id)
    assert {i.id for i in ids.data} == {m.id for m in members.data}
    assert [x.id for x in klaviyo.Profiles.get_list_for_bulk_import_profiles_job(job_id).data] == [
        LIST_ID
    ]
    assert [
        x.id for x in klaviyo.Profiles.get_list_ids_for_bulk_import_profiles_job(job_id).data
    ] == [LIST_ID]
    assert klaviyo.Profiles.get_bulk_import_profiles_jobs().data[0].id == job_id

    found = klaviyo.Profiles.get_profiles(filter='equals(email,"ada@example.com")')
    ada = found.data[0].id
    assert ada == by_email["ada@example.com"].id
    klaviyo.Lists.remove_profiles_from_list(LIST_ID, {"data": [{"type": "profile", "id": ada}]})
    remaining = klaviyo.Lists.get_profile_ids_for_list(LIST_ID)
    assert [item.id for item in remaining.data] == [by_email["grace@example.com"].id]
    klaviyo.Lists.add_profiles_to_list(LIST_ID, {"data": [{"type": "profile", "id": ada}]})

    first = klaviyo.Profiles.get_profiles(page_size=1)
    second = klaviyo.Profiles.get_profiles(page_size=1, page_cursor=cursor_of(first.links.next))
    assert first.data[0].id != second.data[0].id
    assert second.links.next is None


def test_sdk_sees_klaviyo_errors(klaviyo: Any, server: SandboxServer) -> None:
    klaviyo.Accounts.get_accounts()
    with pytest.raises(ApiException) as throttled:
        klaviyo.Accounts.get_accounts()
    assert throttled.value.status == 429
    assert throttled.value.headers is not None
    assert throttled.value.headers["Retry-After"] == "1"

    with pytest.raises(NotFoundException):
        klaviyo.Lists.get_list("Nope99")

    stranger = sdk(server, "pk_stranger")
    with pytest.raises(UnauthorizedException) as refused:
        stranger.Lists.get_lists()
    assert refused.value.body is not None
    assert '"authentication_failed"' in refused.value.body
