"""Versioned JSON contracts: what the producer, workers and upstream send.

Each message carries ``v`` (the contract version). A reader accepts the
versions it knows and refuses others with a clear error, so that a rolling
deploy never misreads a message. Unknown fields are refused too: a typo in an
upstream system's message is an error, not a silent default.

- ``ExportRequest``: ask for one run of an export (CLI, Python API, broker).
- ``DeadLetter``: a request the listener refused, with the error, as it lands
  on the dead-letter queue (``schemas.tasks.DEAD_LETTER_QUEUE``).
- ``BatchResult``: what a worker returns for one batch (small: it travels in
  the chord's single callback message, and Flower shows it).
- ``RunStatus``: what ``status --json`` prints and the run record holds.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Final

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

VERSION: Final = 1


class RunStatus(StrEnum):
    """Where a run is. Only ``core.lifecycle`` moves a run from one to another."""

    PENDING = "pending"  # recorded, segment being read
    RUNNING = "running"  # batches queued or uploading
    AWAITING_APPROVAL = "awaiting_approval"  # a mirror run's removals wait for approve/reject
    REMOVING = "removing"  # a mirror run's removals are being sent
    SUCCEEDED = "succeeded"  # every row exported or rejected before upload; Klaviyo failed none
    PARTIALLY_SUCCEEDED = "partially_succeeded"  # some rows exported, some failed at Klaviyo
    FAILED = "failed"  # nothing exported, or the run could not complete
    CANCELLED = "cancelled"  # the export (or its connection) was removed mid-run
    REJECTED = "rejected"  # a mirror run whose removals were rejected at the brake (adds done)

    @property
    def final(self) -> bool:
        return self in FINAL_RUN_STATUSES


class BatchStatus(StrEnum):
    """A batch's (or removal chunk's) final outcome."""

    SUCCEEDED = "succeeded"
    PARTIALLY_SUCCEEDED = "partially_succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


RUN_STATUSES: Final = tuple(RunStatus)
FINAL_RUN_STATUSES: Final = frozenset(
    {
        RunStatus.SUCCEEDED,
        RunStatus.PARTIALLY_SUCCEEDED,
        RunStatus.FAILED,
        RunStatus.CANCELLED,
        RunStatus.REJECTED,
    }
)
BATCH_STATUSES: Final = tuple(BatchStatus)
SOURCE_FORMATS: Final = ("csv", "jsonl")
REQUEST_TRIGGERS: Final = ("upstream", "schedule")


class _Versioned(Schema):
    v = fields.Integer(required=True, validate=validate.Equal(VERSION))


class ExportRequestSchema(_Versioned):
    """Start a run of ``export_id``: the message upstream systems publish.

    ``source`` is a path the listener can read (CSV or JSON Lines, optionally
    gzip-compressed); left out (or null), the run reads the export's bound
    segment (``export add --segment``), and a request for an export with
    neither is refused. ``format`` overrides the guess from the file name.
    ``requested_by`` names the upstream system or person (audit only: the
    run is authorised as the listener's actor). ``trigger`` says why:
    ``upstream`` (the default) or ``schedule`` (sent by ``kx.schedule_tick``).
    Unknown fields are refused.
    """

    export_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    source = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(min=1, max=4096)
    )
    format = fields.String(
        load_default=None, allow_none=True, validate=validate.OneOf(SOURCE_FORMATS)
    )
    requested_by = fields.String(load_default="upstream", validate=validate.Length(min=1, max=128))
    trigger = fields.String(load_default="upstream", validate=validate.OneOf(REQUEST_TRIGGERS))


DEAD_LETTER_ERRORS: Final = (
    "invalid_json",  # the body is not UTF-8 JSON
    "invalid_request",  # not an ExportRequest (fields names each bad field)
    "unknown_export",  # no such export (or its connection is gone)
    "forbidden",  # the listener's actor may not use the export's connection
    "export_disabled",  # the export is disabled
    "no_source",  # no source in the request and no segment bound to the export
    "refused",  # any other reason the run could not start (message says which)
    "internal_error",  # a bug in the listener (its type only; see the listener's log)
)


class DeadLetterErrorSchema(Schema):
    type = fields.String(required=True, validate=validate.OneOf(DEAD_LETTER_ERRORS))
    message = fields.String(required=True)
    field_errors = fields.Dict(
        keys=fields.String(),
        values=fields.List(fields.String()),
        required=True,
        data_key="fields",  # field name -> its errors
    )


class DeadLetterSchema(_Versioned):
    """A refused request: ``message`` is the original body, as JSON when it
    parsed, else as text; ``received_at`` is ISO 8601 UTC."""

    error = fields.Nested(DeadLetterErrorSchema, required=True)
    message = fields.Raw(required=True, allow_none=True)
    received_at = fields.String(required=True)


class BatchResultSchema(_Versioned):
    run_id = fields.String(required=True)
    batch = fields.Integer(required=True, validate=validate.Range(min=0))
    status = fields.String(required=True, validate=validate.OneOf([s.value for s in BatchStatus]))
    submitted = fields.Integer(required=True, validate=validate.Range(min=0))
    imported = fields.Integer(required=True, validate=validate.Range(min=0))
    failed = fields.Integer(required=True, validate=validate.Range(min=0))
    job_id = fields.String(load_default=None, allow_none=True)
    error = fields.String(load_default=None, allow_none=True)

    @validates_schema
    def _adds_up(self, data: dict[str, Any], **_: Any) -> None:
        if data["imported"] + data["failed"] != data["submitted"]:
            raise ValidationError("imported + failed must equal submitted")


class CountsSchema(Schema):
    rows_read = fields.Integer(required=True)
    rejected = fields.Integer(required=True)
    rejected_by_reason = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    submitted = fields.Integer(required=True)
    imported = fields.Integer(required=True)
    failed = fields.Integer(required=True)
    unchanged = fields.Integer(load_default=0)  # delta runs: rows not sent, as imported before
    to_remove = fields.Integer(load_default=0)  # mirror runs: members no longer in the segment
    removed = fields.Integer(load_default=0)
    removal_failed = fields.Integer(load_default=0)


class BatchCountsSchema(Schema):
    total = fields.Integer(required=True)
    done = fields.Integer(required=True)
    succeeded = fields.Integer(required=True)
    partially_succeeded = fields.Integer(required=True)
    failed = fields.Integer(required=True)
    cancelled = fields.Integer(required=True)


class RunStatusSchema(_Versioned):
    run_id = fields.String(required=True)
    export_id = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf([s.value for s in RunStatus]))
    message = fields.String(load_default="", allow_none=True)
    created_at = fields.Float(required=True)
    started_at = fields.Float(load_default=None, allow_none=True)
    finished_at = fields.Float(load_default=None, allow_none=True)
    attempt_started_at = fields.Float(load_default=None, allow_none=True)  # this attempt's start
    attempt = fields.Integer(load_default=1, validate=validate.Range(min=1))
    counts = fields.Nested(CountsSchema, required=True)
    batches = fields.Nested(BatchCountsSchema, required=True)


def load(schema: Schema, data: Any) -> dict[str, Any]:
    """Validate ``data`` against ``schema``; raise ``ValidationError`` naming each field."""
    result: dict[str, Any] = schema.load(data)
    return result


EXPORT_REQUEST = ExportRequestSchema()
DEAD_LETTER = DeadLetterSchema()
BATCH_RESULT = BatchResultSchema()
RUN_STATUS = RunStatusSchema()
