"""The records people set up: connections, and exports with the spec they chose.

A *connection* is a Klaviyo account reached with one private API key (the key
is never in the record); an *export* sends a segment to one list of one
connection. ``ExportSpec`` is what a user chooses, with every default in one
place; an ``Export`` is a spec once saved (id, who, when). Both check their
own values and name the field at fault (``InvalidInput.field``), never a flag
of one front door: the CLI, the listener and the HTTP API all come through
here. ``core.store`` keeps them in Redis.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from core.cron import parse_cron
from core.errors import InvalidInput

ALLOW_VALUES = ("admins", "contributors")
MODES = ("add", "mirror")


@dataclass(frozen=True, slots=True)
class Connection:
    id: str
    name: str
    allow: str  # "admins": admins only; "contributors": admins and contributors
    created_by: str  # the user who set it up: the connection's export user
    created_at: float
    account_id: str | None = None
    verified_via: str | None = None
    verified_at: float | None = None
    privacy_terms_accepted_by: str | None = None
    privacy_terms_accepted_at: float | None = None
    contract_cap: int = 0  # most profiles one run may send to this account (0: none)
    key_rotated_at: float | None = None
    base_url: str | None = None  # the Klaviyo the key was verified against; every call goes there

    @property
    def terms_accepted(self) -> bool:
        return self.privacy_terms_accepted_at is not None

    def check(self) -> None:
        """``InvalidInput`` naming the first field a user chose wrong."""
        if self.allow not in ALLOW_VALUES:
            raise InvalidInput(
                f"must be one of {', '.join(ALLOW_VALUES)}, not {self.allow!r}", field="allow"
            )
        if not self.name.strip():
            raise InvalidInput("a connection needs a display name", field="name")
        if self.contract_cap < 0:
            raise InvalidInput("must be 0 (none) or more", field="contract_cap")

    def public(self) -> dict[str, Any]:
        """What ``connection list`` shows: everything but the key."""
        return asdict(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportSpec:
    """What a user chooses for an export; the defaults here are the only ones."""

    name: str = ""  # display name ("": the list's name, once saved)
    connection_id: str
    list_id: str
    email_field: str  # the segment column holding the email
    properties: dict[str, str] = field(default_factory=dict)  # column -> Klaviyo name
    segment: str | None = None  # where a scheduled refresh reads the segment
    segment_format: str | None = None
    schedule: str | None = None  # cron expression, besides the system refresh
    max_profiles: int = 0  # per-export cap on profiles a run sends (0: none)
    enabled: bool = True
    mode: str = "add"  # "mirror" also removes members that left the segment
    brake_share: float = 0.2  # a mirror run removing more than this share of members waits
    brake_count: int = 0  # ... or more than this many (0: no count limit)

    @classmethod
    def default(cls, name: str) -> Any:
        """The default of field ``name``, for a front door's help and its own defaults."""
        for spec_field in fields(cls):
            if spec_field.name == name:
                if spec_field.default is not MISSING:
                    return spec_field.default
                if spec_field.default_factory is not MISSING:
                    return spec_field.default_factory()
                raise KeyError(f"{cls.__name__}.{name} has no default")
        raise KeyError(f"{cls.__name__} has no field {name!r}")

    def check(self) -> None:
        """``InvalidInput`` naming the first field a user chose wrong."""
        if not self.email_field.strip():
            raise InvalidInput("must not be empty", field="email_field")
        if self.max_profiles < 0:
            raise InvalidInput("must be 0 (no cap) or more", field="max_profiles")
        if self.mode not in MODES:
            raise InvalidInput(f"must be one of {', '.join(MODES)}", field="mode")
        if not 0 <= self.brake_share <= 1:
            raise InvalidInput("must be 0..1", field="brake_share")
        if self.brake_count < 0:
            raise InvalidInput("must be 0 or more", field="brake_count")
        if self.schedule is not None:
            try:
                parse_cron(self.schedule)  # five fields, as Celery beat reads them
            except ValueError as exc:
                raise InvalidInput(str(exc), field="schedule") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class Export(ExportSpec):
    """An export as saved: its spec, and who saved it when."""

    id: str
    created_by: str = "cli"
    created_at: float = 0.0

    @classmethod
    def from_spec(cls, spec: ExportSpec, *, id: str, created_by: str, created_at: float) -> Export:
        """The record saved for ``spec``; an empty name becomes the list id."""
        chosen = {f.name: getattr(spec, f.name) for f in fields(ExportSpec)}
        chosen.update(name=spec.name.strip() or spec.list_id, properties=dict(spec.properties))
        return cls(**chosen, id=id, created_by=created_by, created_at=created_at)

    def public(self) -> dict[str, Any]:
        return asdict(self)
