"""The API's request and response bodies, as typed models.

FastAPI checks every request against these and writes the OpenAPI document
(``/api/v1/openapi.json``) from them, so the document cannot drift from the
code. They check shape and bounds only (types, lengths, the allowed words);
what a value means (a cron expression, a list that exists, who may) is the
domain's to check, as for the CLI. Defaults are ``ExportSpec``'s own.

An API key goes in (``api_key``, write-only: ``SecretStr``, so no repr or log
shows it) and never comes out: no response model has a field for it.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, field_validator

from core.records import ExportSpec
from schemas.contracts import SOURCE_FORMATS, RunStatus

ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
"""What an id in a path may look like: ours are ``c_``/``e_``/``r_`` and hex."""

Name = Annotated[str, Field(min_length=1, max_length=200)]
Format = Literal["csv", "jsonl"]
assert set(SOURCE_FORMATS) == {"csv", "jsonl"}  # the contract's formats, spelled for OpenAPI


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not ignored


def _spec_default(name: str) -> Any:
    return ExportSpec.default(name)


# -- errors ------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    type: str = Field(description="what went wrong, for programs: not_found, forbidden, ...")
    message: str = Field(description="what went wrong, for people")
    fields: dict[str, list[str]] = Field(
        default_factory=dict, description="the request fields at fault (JSON path -> messages)"
    )
    run_in_progress: str | None = Field(None, description="busy: the run holding the export")
    request_id: str | None = Field(None, description="internal_error: the server log's id")


class ErrorBody(BaseModel):
    error: ErrorDetail


# -- connections -------------------------------------------------------------------------


KEY_PATTERN = r"^[!-~]+$"
"""A key travels in an HTTP header: anything but visible ASCII cannot be one."""


def _visible_ascii(value: SecretStr) -> SecretStr:
    if not re.fullmatch(KEY_PATTERN, value.get_secret_value()):
        raise ValueError("an API key is visible ASCII characters only (no spaces)")
    return value


ApiKey = Annotated[
    SecretStr,
    Field(
        min_length=1,
        max_length=512,
        json_schema_extra={"pattern": KEY_PATTERN},
        description="a private Klaviyo API key (write-only: never in an answer)",
    ),
    AfterValidator(_visible_ascii),
]


class ConnectionIn(_In):
    name: Name
    allow: Literal["admins", "contributors"] = Field(
        "admins", description="who may use it: admins only, or admins and contributors"
    )
    api_key: ApiKey
    accept_privacy_terms: bool = Field(
        description="consent to the data-privacy terms: a connection is added only with true",
        json_schema_extra={"enum": [True]},
    )
    # No base_url: a caller on the network must not make the server connect where it
    # says (an admin token would become a scanner of the internal network). The
    # server's KLAVIYO_BASE_URL applies; the CLI's --base-url is for a shell on the host.
    contract_cap: int = Field(0, ge=0, le=10**12, description="most profiles per run; 0: none")

    @field_validator("accept_privacy_terms")
    @classmethod
    def _consent(cls, value: bool) -> bool:
        if value is not True:
            raise ValueError("consent to the data-privacy terms is required: send true")
        return value


class KeyIn(_In):
    api_key: ApiKey


class ConnectionOut(BaseModel):
    id: str
    name: str
    allow: str
    created_by: str
    created_at: float
    account_id: str | None = None
    verified_via: str | None = None
    verified_at: float | None = None
    privacy_terms_accepted: bool
    privacy_terms_accepted_by: str | None = None
    privacy_terms_accepted_at: float | None = None
    contract_cap: int = 0
    key_rotated_at: float | None = None
    base_url: str | None = None


class ConnectionList(BaseModel):
    connections: list[ConnectionOut]


class ConnectionRemoved(BaseModel):
    id: str
    exports_removed: list[str]


# -- exports -----------------------------------------------------------------------------


class ExportIn(_In):
    name: str = Field(_spec_default("name"), max_length=200, description="'': the list's name")
    connection_id: str = Field(pattern=ID_PATTERN)
    list_id: str = Field(pattern=ID_PATTERN, description="the Klaviyo list's id")
    email_field: Name = Field(description="the segment column holding the email")
    properties: dict[Name, Name] = Field(
        default_factory=dict, max_length=200, description="segment column -> profile property"
    )
    segment: str | None = Field(
        _spec_default("segment"),
        min_length=1,
        max_length=4096,
        description="the bound segment: a file under KLAVIYO_EXPORT_SOURCE_ROOTS",
    )
    segment_format: Format | None = _spec_default("segment_format")
    schedule: str | None = Field(
        _spec_default("schedule"), max_length=200, description="cron, five fields"
    )
    max_profiles: int = Field(_spec_default("max_profiles"), ge=0, le=10**12)
    enabled: bool = _spec_default("enabled")
    mode: Literal["add", "mirror"] = _spec_default("mode")
    brake_share: float = Field(_spec_default("brake_share"), ge=0, le=1)
    brake_count: int = Field(_spec_default("brake_count"), ge=0, le=10**12)


class ExportOut(BaseModel):
    id: str
    name: str
    connection_id: str
    list_id: str
    email_field: str
    properties: dict[str, str]
    segment: str | None
    segment_format: str | None
    schedule: str | None
    max_profiles: int
    enabled: bool
    mode: str
    brake_share: float
    brake_count: int
    created_by: str
    created_at: float


class ExportList(BaseModel):
    exports: list[ExportOut]


class ExportRemoved(BaseModel):
    id: str
    runs_cancelled: list[str]


# -- runs --------------------------------------------------------------------------------


class RunIn(_In):
    source: str | None = Field(
        None,
        min_length=1,
        max_length=4096,
        description="a segment file under KLAVIYO_EXPORT_SOURCE_ROOTS; none: the bound segment",
    )
    format: Format | None = Field(None, description="default: from the file name")
    full: bool = Field(False, description="send every row, also those unchanged")
    dry_run: bool = Field(False, description="answer the plan (200); record and send nothing")


class Counts(BaseModel):
    rows_read: int
    rejected: int
    rejected_by_reason: dict[str, int]
    submitted: int
    imported: int
    failed: int
    unchanged: int
    to_remove: int
    removed: int
    removal_failed: int


class BatchCounts(BaseModel):
    total: int
    done: int
    succeeded: int
    partially_succeeded: int
    failed: int
    cancelled: int


class RunSummary(BaseModel):
    """What ``klaviyo-export status --json`` prints."""

    run_id: str
    export_id: str
    status: RunStatus
    message: str | None
    counts: Counts
    batches: BatchCounts
    attempt: int
    duration_s: float | None
    created_at: float
    finished_at: float | None


class RunList(BaseModel):
    runs: list[RunSummary]


class Approved(BaseModel):
    run: RunSummary
    removing: int = Field(description="members the removals will take out of the list")


class Resumed(BaseModel):
    run: RunSummary
    batches: list[int] = Field(description="the batches sent again")


class Plan(BaseModel):
    """A dry run: what a run now would do (``run --dry-run --json``)."""

    export_id: str
    list_id: str
    mode: str
    full: bool
    delta: bool
    rows_read: int
    rejected: int
    rejected_by_reason: dict[str, int]
    adds: int
    updates: int
    unchanged: int
    submitted: int
    members: int
    removals: int
    brake_holds: bool
    brake_reason: str | None
    blocker: str | None
    batches: int
    calls: dict[str, int]
    expected_seconds: float


# -- audit and health --------------------------------------------------------------------


class AuditEntry(BaseModel):
    at: float
    user: str
    role: str
    action: str
    target: str
    via: str
    detail: dict[str, Any]


class AuditLog(BaseModel):
    entries: list[AuditEntry]


class Health(BaseModel):
    ok: bool


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        401: "no valid bearer token",
        403: "the actor's role does not allow it (the message names the rule)",
        404: "no such record, or one the actor may not see",
        409: "the record's state does not allow it; busy: a run is in progress",
        413: "the request body is over 64 KiB",
        422: "a field is wrong (``fields`` names each)",
        429: "too many at once (dry runs): try again after ``retry_after`` seconds",
        503: "Redis, the broker or Klaviyo cannot be reached",
    }.items()
}
"""The error answers every operation may give, in the one error shape."""


def created(what: str) -> dict[int | str, dict[str, Any]]:
    """The 201 answer of an add, with the ``Location`` of what it added."""
    location = {"description": f"the {what} added", "schema": {"type": "string"}}
    return {201: {"description": f"the {what}, added", "headers": {"Location": location}}}
