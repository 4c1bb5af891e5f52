"""Every sandbox option in one validated dataclass.

Options (CLI flag, default: meaning):

``api_keys`` (``--api-key KEY`` or ``--api-key KEY:scope1,scope2``, required)
    Each key is its own Klaviyo account with its own profiles, lists, jobs and
    rate-limit quota. ``None`` grants every scope; a frozenset grants exactly
    those scopes (``lists:write`` does *not* imply ``lists:read``).
``lists`` (``--list ID[:NAME]``, none)
    Lists that exist at start-up in every account. The name defaults to the
    id. Ids must be alphanumeric (Klaviyo's are six characters, like
    ``Y6nRLr``; lists created at run time get such ids).
``job_queue_seconds`` (``--job-queue-seconds``, 0.2)
    How long a bulk import job stays ``queued`` before it starts processing.
``job_profiles_per_second`` (``--job-profiles-per-second``, 50000)
    Processing speed of a job, so a 10,000-profile job takes 0.2 s.
``fail_email`` (``--fail-email REGEX``, none)
    Test hook: import rows whose email matches (``re.search``) fail with an
    import error, as an invalid address would.
``rate_limit_scale`` (``--rate-limit-scale F``, 1.0)
    Multiplies every rate limit read from the spec (each at least 1 when
    F > 0); 0 turns rate limiting off.
``fault_rate`` (``--fault-rate R``, 0.0)
    Share of ``/api/`` answers replaced by a 500, 502, 503 or a dropped
    connection (see :mod:`sandbox.faults`).
``latency_ms`` (``--latency-ms MS``, 0)
    Added to every ``/api/`` answer.
``seed`` (``--seed N``, none)
    Makes fault decisions and generated ids repeatable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

_SCOPE = re.compile(r"^[a-z][a-z_-]*:(read|write)$")
_LIST_ID = re.compile(r"^[A-Za-z0-9]{1,64}$")
_KEY = re.compile(r"^[^\s:]+$")


@dataclass(frozen=True)
class SandboxConfig:
    """Validated sandbox options; see the module docstring for each one."""

    api_keys: Mapping[str, frozenset[str] | None]
    lists: Mapping[str, str] = field(default_factory=dict)
    job_queue_seconds: float = 0.2
    job_profiles_per_second: float = 50_000.0
    fail_email: str | None = None
    rate_limit_scale: float = 1.0
    fault_rate: float = 0.0
    latency_ms: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if not self.api_keys:
            raise ValueError("at least one API key is required")
        keys: dict[str, frozenset[str] | None] = {}
        for key, scopes in self.api_keys.items():
            if not isinstance(key, str) or not _KEY.match(key):
                raise ValueError("an API key must be a non-empty string without spaces or ':'")
            if scopes is not None:
                scopes = frozenset(scopes)
                for scope in scopes:
                    if not _SCOPE.match(scope):
                        raise ValueError(f"invalid scope {scope!r} (want e.g. 'lists:read')")
            keys[key] = scopes
        lists: dict[str, str] = {}
        for list_id, name in self.lists.items():
            if not _LIST_ID.match(list_id):
                raise ValueError(f"invalid list id {list_id!r} (letters and digits only)")
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f"list {list_id!r} needs a non-empty name")
            lists[list_id] = name
        object.__setattr__(self, "api_keys", MappingProxyType(keys))
        object.__setattr__(self, "lists", MappingProxyType(lists))
        if self.job_queue_seconds < 0:
            raise ValueError("job_queue_seconds must be >= 0")
        if not self.job_profiles_per_second > 0:
            raise ValueError("job_profiles_per_second must be > 0")
        if self.fail_email is not None:
            try:
                re.compile(self.fail_email)
            except re.error as exc:
                raise ValueError(f"fail_email is not a valid regex: {exc}") from None
        if self.rate_limit_scale < 0:
            raise ValueError("rate_limit_scale must be >= 0 (0 turns limiting off)")
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ValueError("fault_rate must be between 0 and 1")
        if self.latency_ms < 0:
            raise ValueError("latency_ms must be >= 0")


def parse_api_key(text: str) -> tuple[str, frozenset[str] | None]:
    """``KEY`` -> (KEY, None); ``KEY:a:read,b:write`` -> (KEY, {a:read, b:write})."""
    key, sep, scopes = text.partition(":")
    if not key:
        raise ValueError("empty API key")
    if not sep:
        return key, None
    found = frozenset(part.strip() for part in scopes.split(",") if part.strip())
    for scope in found:
        if not _SCOPE.match(scope):
            raise ValueError(f"invalid scope {scope!r} (want e.g. 'lists:read')")
    return key, found


def parse_list(text: str) -> tuple[str, str]:
    """``ID`` -> (ID, ID); ``ID:Some name`` -> (ID, "Some name")."""
    list_id, _, name = text.partition(":")
    if not _LIST_ID.match(list_id):
        raise ValueError(f"invalid list id {list_id!r} (letters and digits only)")
    return list_id, name.strip() or list_id
