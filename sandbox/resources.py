"""JSON:API resource objects built from store records.

The shapes follow the spec's response schemas (``ProfileResponseObjectResource``,
``ListRetrieveResponseObjectResource``, ``ProfileImportJobResponseObjectResource``,
``ImportErrorResponseObjectResource`` ...) closely enough for Klaviyo's own SDK
to parse them into its pydantic models and for ``openapi-core`` to validate
them. Like Klaviyo, every attribute a resource has is present (null when
unknown) rather than left out, except where sparse fieldsets
(``fields[<type>]=a,b``) ask for fewer.

The spec marks some ``$ref`` properties ``nullable``, which OpenAPI 3.0 ignores
next to a ``$ref``, so a strict validator refuses ``null`` there; the sandbox
sends objects instead (``subscriptions`` channels, ``predictive_analytics``
with null fields) and leaves out ``location.latitude``/``longitude`` while they
are unknown (see ``_LOCATION_KEYS``).

Choices where Klaviyo's exact answer is unknown: accounts describe a fictional
"Klaviyo Sandbox" test account; lists use ``single_opt_in``; the
``subscriptions`` additional field reports every channel as never subscribed
(bulk import does not collect consent).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sandbox.clock import Clock
from sandbox.jobs import ImportErrorRecord, Job
from sandbox.store import Account, ListRecord, Profile

# Location keys that are always present (null when unknown). ``latitude`` and
# ``longitude`` appear only when set: the spec declares them ``nullable`` next
# to a ``oneOf`` without ``type``, which under OpenAPI 3.0.3 rules does not
# admit null, so a strict validator would refuse ``"latitude": null``.
_LOCATION_KEYS = ("address1", "address2", "city", "country", "region", "zip", "timezone", "ip")
_PREDICTIVE_KEYS = (
    "historic_clv",
    "predicted_clv",
    "total_clv",
    "historic_number_of_orders",
    "predicted_number_of_orders",
    "average_days_between_orders",
    "average_order_value",
    "churn_probability",
    "expected_date_of_next_order",
    "ranked_channel_affinity",
)
_TEXT_ATTRIBUTES = ("first_name", "last_name", "organization", "locale", "title", "image")


def _links(base: str, *parts: str) -> str:
    return base + "/api/" + "/".join(parts)


def _relationship(base: str, owner: str, owner_id: str, name: str) -> dict[str, str]:
    return {
        "self": _links(base, owner, owner_id, "relationships", name),
        "related": _links(base, owner, owner_id, name),
    }


def account_resource(account: Account, base: str) -> dict[str, Any]:
    return {
        "type": "account",
        "id": account.id,
        "attributes": {
            "test_account": True,
            "contact_information": {
                "default_sender_name": "Klaviyo Sandbox",
                "default_sender_email": "sandbox@example.com",
                "website_url": "https://example.com",
                "organization_name": "Klaviyo Sandbox",
                "street_address": {
                    "address1": "125 Summer Street",
                    "address2": None,
                    "city": "Boston",
                    "region": "MA",
                    "country": "US",
                    "zip": "02110",
                },
            },
            "industry": None,
            "timezone": "UTC",
            "preferred_currency": "USD",
            "public_api_key": account.id,
            "locale": "en-US",
        },
        "links": {"self": _links(base, "accounts", account.id)},
    }


def list_resource(
    record: ListRecord, base: str, clock: Clock, *, profile_count: bool = False
) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "name": record.name,
        "created": clock.iso(record.created),
        "updated": clock.iso(record.updated),
        "opt_in_process": "single_opt_in",
    }
    if profile_count:
        attributes["profile_count"] = len(record.members)
    return {
        "type": "list",
        "id": record.id,
        "attributes": attributes,
        "relationships": {
            name: {"links": _relationship(base, "lists", record.id, name)}
            for name in ("profiles", "tags", "flow-triggers")
        },
        "links": {"self": _links(base, "lists", record.id)},
    }


def profile_resource(
    profile: Profile,
    base: str,
    clock: Clock,
    *,
    joined: float | None = None,
    additional: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    extra = profile.extra_attributes()
    location: dict[str, Any] = dict.fromkeys(_LOCATION_KEYS)
    location.update(extra.get("location") or {})
    attributes: dict[str, Any] = {
        "email": profile.email,
        "phone_number": profile.phone_number,
        "external_id": profile.external_id,
    }
    for name in _TEXT_ATTRIBUTES:
        attributes[name] = extra.get(name)
    attributes.update(
        created=clock.iso(profile.created),
        updated=clock.iso(profile.updated),
        last_event_date=None,
        location=location,
        properties=dict(extra.get("properties") or {}),
    )
    if joined is not None:
        attributes["joined_group_at"] = clock.iso(joined)
    if "subscriptions" in additional:
        attributes["subscriptions"] = _subscriptions()
    if "predictive_analytics" in additional:
        attributes["predictive_analytics"] = dict.fromkeys(_PREDICTIVE_KEYS)
    return {
        "type": "profile",
        "id": profile.id,
        "attributes": attributes,
        "relationships": {
            name: {"links": _relationship(base, "profiles", profile.id, name)}
            for name in ("lists", "segments")
        },
        "links": {"self": _links(base, "profiles", profile.id)},
    }


def _subscriptions() -> dict[str, Any]:
    """Never subscribed anywhere: bulk import does not collect consent."""
    never = {"consent": "NEVER_SUBSCRIBED", "consent_timestamp": None}
    sms_detail = {"method": None, "method_detail": None, "last_updated": None}
    return {
        "email": {
            "marketing": {
                "can_receive_email_marketing": False,
                **never,
                "last_updated": None,
                "method": None,
                "method_detail": None,
                "custom_method_detail": None,
                "double_optin": None,
                "suppression": [],
                "list_suppressions": [],
            }
        },
        "sms": {
            "marketing": {"can_receive_sms_marketing": False, **never, **sms_detail},
            "transactional": {"can_receive_sms_transactional": False, **never, **sms_detail},
        },
        "mobile_push": {"marketing": {"can_receive_push_marketing": False, **never}},
    }


def job_resource(job: Job, base: str, clock: Clock, now: float) -> dict[str, Any]:
    started = now > job.start or job.completed_at is not None
    return {
        "type": "profile-bulk-import-job",
        "id": job.id,
        "attributes": {
            "status": job.status(now),
            "created_at": clock.iso(job.created),
            "total_count": job.total,
            "completed_count": job.completed,
            "failed_count": job.failed,
            "completed_at": clock.iso(job.completed_at) if job.completed_at is not None else None,
            "expires_at": None,
            "started_at": clock.iso(job.start) if started else None,
        },
        "relationships": {
            "lists": {
                "data": [{"type": "list", "id": record.id} for record in job.lists],
                "links": _relationship(base, "profile-bulk-import-jobs", job.id, "lists"),
            },
            "profiles": {
                "links": _relationship(base, "profile-bulk-import-jobs", job.id, "profiles")
            },
            "import-errors": {
                "links": {
                    "related": _links(base, "profile-bulk-import-jobs", job.id, "import-errors")
                }
            },
        },
        "links": {"self": _links(base, "profile-bulk-import-jobs", job.id)},
    }


def import_error_resource(error: ImportErrorRecord) -> dict[str, Any]:
    return {
        "type": "import-error",
        "id": error.id,
        "attributes": {
            "code": "invalid",
            "title": "Invalid input.",
            "detail": error.detail,
            "source": {"pointer": error.pointer},
            "original_payload": error.payload,
        },
    }


def identifier(kind: str, resource_id: str) -> dict[str, str]:
    """A resource identifier object (relationship endpoints)."""
    return {"type": kind, "id": resource_id}


def apply_sparse_fields(document: dict[str, Any], fields: Mapping[str, frozenset[str]]) -> None:
    """Keep only the requested attributes of each resource type, in place.

    ``location.city`` keeps the whole ``location`` object: the sandbox trims
    at the top level only.
    """
    if not fields:
        return
    data = document.get("data")
    resources = data if isinstance(data, list) else [data]
    resources += document.get("included", [])
    for resource in resources:
        if not isinstance(resource, dict):
            continue
        wanted = fields.get(resource.get("type", ""))
        attributes = resource.get("attributes")
        if wanted is None or not isinstance(attributes, dict):
            continue
        top = {name.split(".", 1)[0] for name in wanted}
        resource["attributes"] = {k: v for k, v in attributes.items() if k in top}
