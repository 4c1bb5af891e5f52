"""Small typed views of the Klaviyo resources the exporter reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

JOB_DONE_STATUSES = frozenset({"complete", "cancelled"})
"""Klaviyo's job statuses are queued, processing, complete and cancelled: no 'failed'."""


@dataclass(frozen=True, slots=True)
class KlaviyoList:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class KeyCheck:
    """What verifying a key proved: the account (if readable) and the route used."""

    account_id: str | None
    via: str  # "accounts" or "lists": keys without accounts:read pass through lists


@dataclass(frozen=True, slots=True)
class ImportJob:
    id: str
    status: str
    total_count: int
    completed_count: int
    failed_count: int

    @property
    def done(self) -> bool:
        return self.status in JOB_DONE_STATUSES

    @classmethod
    def from_resource(cls, resource: dict[str, Any]) -> ImportJob:
        attributes = resource.get("attributes") or {}
        return cls(
            id=str(resource["id"]),
            status=str(attributes.get("status")),
            total_count=int(attributes.get("total_count") or 0),
            completed_count=int(attributes.get("completed_count") or 0),
            failed_count=int(attributes.get("failed_count") or 0),
        )


@dataclass(frozen=True, slots=True)
class ImportErrorItem:
    """One row Klaviyo failed in a bulk import job, with the profile it got."""

    id: str
    code: str
    title: str
    detail: str
    pointer: str | None
    original_payload: dict[str, Any] | None

    @property
    def email(self) -> str | None:
        """The email of the failed profile, which maps it back to its source row."""
        payload = self.original_payload or {}
        attributes = payload.get("attributes", payload)
        email = attributes.get("email") if isinstance(attributes, dict) else None
        return email if isinstance(email, str) else None

    @classmethod
    def from_resource(cls, resource: dict[str, Any]) -> ImportErrorItem:
        attributes = resource.get("attributes") or {}
        source = attributes.get("source") or {}
        payload = attributes.get("original_payload")
        return cls(
            id=str(resource.get("id")),
            code=str(attributes.get("code") or ""),
            title=str(attributes.get("title") or ""),
            detail=str(attributes.get("detail") or ""),
            pointer=source.get("pointer") if isinstance(source, dict) else None,
            original_payload=payload if isinstance(payload, dict) else None,
        )


@dataclass(frozen=True, slots=True)
class Profile:
    id: str
    email: str | None

    @classmethod
    def from_resource(cls, resource: dict[str, Any]) -> Profile:
        attributes = resource.get("attributes") or {}
        email = attributes.get("email")
        return cls(id=str(resource["id"]), email=email if isinstance(email, str) else None)
