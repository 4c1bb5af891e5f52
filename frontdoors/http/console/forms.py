"""What the console's forms hold, and how their text becomes the domain's values.

A ``FormState`` is what a form shows: the values the user typed (kept after an
error, except the API key, which no page ever writes back), the message of
each field at fault, and one sentence above the form. The domain names the
field at fault by its record field (``InvalidInput.field``); the form shows
the message next to that field and marks it ``aria-invalid``.

Text that cannot become a value (a share that is no number, a property line
without a column) is refused here, each field with its own message, before
the domain is asked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from core.context import Context
from core.errors import InvalidInput
from core.records import ExportSpec
from frontdoors.http.errors import describe
from klaviyo_client import AuthenticationError, PermissionDeniedError
from producer.remote import allowed_path

CONNECTION_LABELS: Final = {
    "name": "Display name",
    "allow": "Who may use it",
    "api_key": "API key",
    "accept_terms": "Consent",
}
EXPORT_LABELS: Final = {
    "name": "Name",
    "connection_id": "Connection",
    "list_id": "List ID",
    "email_field": "Email field",
    "properties": "Properties",
    "schedule": "Schedule",
    "mode": "Mode",
    "brake_share": "Brake share",
    "brake_count": "Brake count",
    "segment": "Bound segment",
    "enabled": "Enabled",
    "source": "Source path",
}
CONSENT: Final = (
    "I accept that exported profiles leave this system for Klaviyo (data-privacy terms)"
)


@dataclass
class FormState:
    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    message: str = ""

    def value(self, name: str, default: str = "") -> str:
        return self.values.get(name, default)

    def error(self, name: str) -> str:
        return self.errors.get(name, "")

    def refuse(self, name: str, problem: str, labels: dict[str, str]) -> None:
        self.errors.setdefault(name, problem)
        if not self.message:
            self.message = f"{labels.get(name, name)}: {problem}"

    def failed(self, exc: BaseException, labels: dict[str, str]) -> FormState:
        """The form again after the domain refused it: one sentence, and the
        field at fault marked when the error names one."""
        if isinstance(exc, InvalidInput) and exc.field:
            self.refuse(exc.field, exc.problem, labels)
        elif isinstance(exc, AuthenticationError | PermissionDeniedError) and "api_key" in labels:
            self.refuse("api_key", f"Klaviyo refused the key ({describe(exc).message})", labels)
        else:
            self.message = describe(exc).message
        return self


def _number(state: FormState, name: str, kind: type[float] | type[int]) -> float | int:
    text = state.value(name).strip()
    default: float | int = ExportSpec.default(name)
    if not text:
        return default
    try:
        return kind(text)
    except ValueError:
        noun = "a whole number" if kind is int else "a number such as 0.2"
        state.refuse(name, f"must be {noun}", EXPORT_LABELS)
        return default


def parse_properties(state: FormState) -> dict[str, str]:
    """Lines of ``column`` or ``column:name`` (``name``: the Klaviyo property)."""
    mapping: dict[str, str] = {}
    for number, line in enumerate(state.value("properties").splitlines(), start=1):
        if not line.strip():
            continue
        column, _, name = line.partition(":")
        column, name = column.strip(), name.strip()
        if not column:
            state.refuse("properties", f"line {number}: the column name is empty", EXPORT_LABELS)
            continue
        mapping[column] = name or column
    return mapping


def export_spec(ctx: Context, state: FormState) -> ExportSpec | None:
    """The spec the export form asks for; None when a field is refused
    (``state`` then says which)."""
    properties = parse_properties(state)
    brake_share = float(_number(state, "brake_share", float))
    brake_count = int(_number(state, "brake_count", int))
    segment: str | None = None
    if state.value("segment").strip():
        try:
            segment = allowed_path(ctx, state.value("segment").strip(), field="segment")
        except InvalidInput as exc:
            state.refuse("segment", exc.problem, EXPORT_LABELS)
    if not state.value("connection_id"):
        state.refuse("connection_id", "choose a connection", EXPORT_LABELS)
    if not state.value("list_id").strip():
        state.refuse("list_id", "must not be empty", EXPORT_LABELS)
    spec = ExportSpec(
        name=state.value("name").strip(),
        connection_id=state.value("connection_id"),
        list_id=state.value("list_id").strip(),
        email_field=state.value("email_field").strip(),
        properties=properties,
        segment=segment,
        schedule=state.value("schedule").strip() or None,
        enabled=state.value("enabled") == "on",
        mode=state.value("mode") or ExportSpec.default("mode"),
        brake_share=brake_share,
        brake_count=brake_count,
    )
    try:
        spec.check()  # its first wrong field, besides those refused above
    except InvalidInput as exc:
        state.failed(exc, EXPORT_LABELS)
    return None if state.errors or state.message else spec
