"""What becomes of one request on ``kx.requests``: a run started, skipped, or refused.

Upstream systems (any language) and the schedule tick (``worker.schedules``)
publish ``ExportRequest`` JSON documents; for each, ``handle``:

1. decodes the body as UTF-8 JSON, whatever its ``content_type`` says (a
   publisher in another language may set none);
2. validates it against ``schemas.contracts.ExportRequestSchema``;
3. starts the run as the listener's actor (``--as USER:ROLE``): the rules
   of ``core.actors`` apply as for the CLI; ``requested_by`` is
   recorded in the audit log, never trusted for permissions.

A request that cannot be honoured (bad JSON, schema errors, unknown export,
forbidden, disabled export, no source) raises ``core.errors.Refused``; the
listener (``producer.listen``) publishes ``dead_letter(...)`` to
``kx.requests.dead`` (``schemas.contracts.DeadLetterSchema``). A request for
an export whose previous run is still in progress is *skipped* (runs of one
export never overlap; it is not queued).

A run that starts but cannot complete (unreadable source, bad key, over a
cap) is a recorded ``failed`` run, as with ``klaviyo-export run``: see
``klaviyo-export runs``. Nothing here logs a profile, email or key.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from core import audit
from core.actors import Actor, require_use
from core.context import Context
from core.errors import (
    ConfigurationError,
    ExportBusy,
    ExportError,
    Forbidden,
    InvalidRequest,
    NotFound,
    Refused,
)
from producer.publish import validate
from producer.runner import RunRequest, start_run
from schemas import tasks
from schemas.contracts import DEAD_LETTER, VERSION, load


@dataclass
class Outcome:
    """What became of one message (what ``listen --json`` prints, a line each)."""

    outcome: str  # "started", "skipped", "dead_lettered", "requeued"
    export_id: str | None = None
    run_id: str | None = None
    requested_by: str | None = None
    trigger: str | None = None
    error: dict[str, Any] | None = None
    detail: str = ""
    dead_letters: int | None = None  # letters waiting on the dead-letter queue, this one included

    def public(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, "")}

    def __str__(self) -> str:
        who = f" (requested by {self.requested_by}, {self.trigger})" if self.requested_by else ""
        if self.outcome == "started":
            return f"started run {self.run_id} of export {self.export_id}{who}"
        if self.outcome == "skipped":
            return f"skipped a request for export {self.export_id}{who}: {self.detail}"
        if self.outcome == "dead_lettered" and self.error:
            waiting = "" if self.dead_letters is None else f" ({self.dead_letters} waiting)"
            return (
                f"sent to {tasks.DEAD_LETTER_QUEUE}{waiting}: "
                f"{self.error['type']}: {self.error['message']}"
            )
        return f"{self.outcome}: {self.detail}"


def decode_body(body: Any) -> Any:
    """The JSON document in a message body (bytes, text, or already parsed)."""
    if isinstance(body, dict | list):
        return body  # a raw Redis envelope whose "body" is a JSON object
    if body is None:
        raise Refused("invalid_json", "the message body is empty")
    if isinstance(body, bytes | bytearray | memoryview):
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            raise Refused("invalid_json", "the message body is not UTF-8 text") from None
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        raise Refused("invalid_json", f"the message body is not JSON: {exc}") from None


def original(body: Any) -> Any:
    """The original message for a dead letter: JSON if it parses, else text."""
    try:
        return decode_body(body)
    except Refused:
        if isinstance(body, bytes | bytearray | memoryview):
            return bytes(body).decode("utf-8", errors="replace")
        return None if body is None else str(body)


def dead_letter(exc: Refused, body: Any, received_at: datetime) -> bytes:
    document = {
        "v": VERSION,
        "error": {"type": exc.kind, "message": exc.message, "fields": exc.fields},
        "message": original(body),
        "received_at": received_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    load(DEAD_LETTER, document)  # the contract, checked as the letter leaves
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def handle(ctx: Context, actor: Actor, body: Any) -> Outcome:
    """Start the run a message asks for; ``Refused`` when it cannot be honoured."""
    try:
        request = validate(decode_body(body))
    except InvalidRequest as exc:
        raise Refused("invalid_request", str(exc), exc.fields) from None
    export_id = request["export_id"]
    outcome = Outcome(
        "started",
        export_id=export_id,
        requested_by=request["requested_by"],
        trigger=request["trigger"],
    )
    try:
        export = ctx.store.get_export(export_id)
        require_use(actor, ctx.store.get_connection(export.connection_id))
    except NotFound as exc:
        raise Refused("unknown_export", str(exc), {"export_id": [str(exc)]}) from None
    except Forbidden as exc:
        raise Refused("forbidden", str(exc)) from None
    if not export.enabled:
        raise Refused("export_disabled", f"export {export_id} is disabled: enable it to run it")
    source, source_format = request["source"], request["format"]
    if source is None:
        source, source_format = export.segment, source_format or export.segment_format
    if not source:
        message = f"export {export_id} has no segment bound (export add --segment): name a source"
        raise Refused("no_source", message, {"source": [message]})
    try:
        outcome.run_id = start_run(
            ctx, RunRequest(export_id, source, actor, source_format, request["trigger"])
        )
    except ExportBusy as exc:
        outcome.outcome, outcome.detail = "skipped", str(exc)
        audit.record(
            ctx.redis,
            actor,
            "run.skipped",
            export_id,
            requested_by=request["requested_by"],
            trigger=request["trigger"],
        )
        return outcome
    except NotFound as exc:  # removed in the meantime
        raise Refused("unknown_export", str(exc), {"export_id": [str(exc)]}) from None
    except Forbidden as exc:
        raise Refused("forbidden", str(exc)) from None
    except ConfigurationError:
        raise
    except ExportError as exc:
        raise Refused("refused", str(exc)) from None
    audit.record(
        ctx.redis,
        actor,
        "run.request",
        outcome.run_id,
        export=export_id,
        requested_by=request["requested_by"],
        trigger=request["trigger"],
        queue=tasks.REQUESTS_QUEUE,
    )
    return outcome


def export_id_of(body: Any) -> str | None:
    """The export id of a request, if it has a usable one (for logs and audit)."""
    try:
        document = decode_body(body)
    except Refused:
        return None
    value = document.get("export_id") if isinstance(document, dict) else None
    return value if isinstance(value, str) and 0 < len(value) <= 64 else None
