"""What the sandbox knows about each operation, read from Klaviyo's own spec.

The package ships ``klaviyo-openapi-subset.json``, a verbatim subset of
Klaviyo's published OpenAPI file (revision 2026-07-15). Rate limits
(``x-klaviyo-ratelimit``), scopes (``x-klaviyo-scopes``), path templates,
query parameters with their enums and bounds, and the filter fields each
operation allows are all read from it at start-up, so that nobody retypes a
number that Klaviyo already publishes. If Klaviyo changes a limit, replacing
the JSON file is the whole update.

Two facts are only in prose in the spec and are parsed from the operation
description:

* the stricter extra rate limit that applies when a request uses an
  ``additional-fields`` value ("Rate limits when using the
  `additional-fields[list]=profile_count` parameter ...: Burst `1/s`,
  Steady `15/m`"), and
* the filter fields and operators ("Allowed field(s)/operator(s): `email`:
  `any`, `equals` ...").

The revision header is not in the spec as a list; ``SUPPORTED_REVISIONS`` is
the one constant that says which revisions the sandbox accepts (Klaviyo
supports a revision for two years after its release; the sandbox's "today"
is 2026-11-22, so 2025-01-15 is the oldest one still supported).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

SPEC_RESOURCE = "klaviyo-openapi-subset.json"

#: Revisions accepted in the ``revision`` header, each also with a ``.pre``
#: suffix. 2026-07-15 is what our client pins; 2026-10-15 is what the official
#: SDK ``klaviyo-api`` 25.0.0 sends.
SUPPORTED_REVISIONS: frozenset[str] = frozenset(
    {
        "2025-01-15",
        "2025-04-15",
        "2025-07-15",
        "2025-10-15",
        "2026-01-15",
        "2026-04-15",
        "2026-07-15",
        "2026-10-15",
    }
)

_REVISION_FORMAT = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:\.([A-Za-z0-9]+))?$")
_RATE = re.compile(r"^(\d+)/([sm])$")
_EXTRA_LIMIT = re.compile(
    r"Rate limits when using the `([^`=]+)=([^`]+)` parameter[^<]*<br>"
    r"Burst: `(\d+)/s`<br>Steady: `(\d+)/m`"
)
_FILTER_LINE = re.compile(r"`([^`]+)`: ((?:`[a-z-]+`(?:, )?)+)")
_METHODS = ("get", "post", "delete", "patch", "put")


def revision_problem(value: str | None) -> str | None:
    """Why a ``revision`` header value is refused, or None if it is accepted."""
    if value is None or not value.strip():
        return "missing"
    match = _REVISION_FORMAT.match(value.strip())
    if match is None:
        return "malformed"
    date, suffix = match.groups()
    if date not in SUPPORTED_REVISIONS or suffix not in (None, "pre"):
        return "unsupported"
    return None


@dataclass(frozen=True)
class ExtraLimit:
    """A stricter limit that also applies when ``param`` contains ``value``."""

    param: str
    value: str
    burst: int
    steady: int


@dataclass(frozen=True)
class QueryParam:
    """One query parameter as the spec declares it."""

    name: str
    kind: str  # "array", "integer" or "string"
    enum: frozenset[str] | None = None
    minimum: int | None = None
    maximum: int | None = None
    default: int | None = None


@dataclass(frozen=True)
class Operation:
    """One operation of the spec: how to route it and what it costs."""

    operation_id: str
    method: str
    path: str
    pattern: re.Pattern[str]
    scopes: frozenset[str]
    burst: int
    steady: int
    extra_limits: tuple[ExtraLimit, ...]
    query: Mapping[str, QueryParam]
    filter_fields: Mapping[str, frozenset[str]]
    has_body: bool

    def page_size_bounds(self) -> tuple[int, int]:
        """(default, maximum) of ``page[size]``; Klaviyo's usual 20/100 if absent."""
        param = self.query.get("page[size]")
        if param is None or param.default is None or param.maximum is None:
            return 20, 100
        return param.default, param.maximum


def _rate(text: str, unit: str, op_id: str) -> int:
    match = _RATE.match(text)
    if match is None or match.group(2) != unit:
        raise ValueError(f"{op_id}: unexpected rate limit {text!r} (want N/{unit})")
    return int(match.group(1))


def _path_pattern(template: str) -> re.Pattern[str]:
    """``/api/lists/{id}`` becomes a regex accepting an optional trailing slash."""
    parts = re.split(r"\{([a-z_]+)\}", template)
    regex = ""
    for index, part in enumerate(parts):
        regex += re.escape(part) if index % 2 == 0 else f"(?P<{part}>[^/]+)"
    return re.compile(f"^{regex}/?$")


def _query_params(op: Mapping[str, Any]) -> dict[str, QueryParam]:
    params: dict[str, QueryParam] = {}
    for raw in op.get("parameters", []):
        if raw.get("in") != "query":
            continue
        schema = raw.get("schema", {})
        kind = schema.get("type", "string")
        enum_source = schema.get("items", {}) if kind == "array" else schema
        enum = enum_source.get("enum")
        params[raw["name"]] = QueryParam(
            name=raw["name"],
            kind=kind,
            enum=frozenset(enum) if enum else None,
            minimum=schema.get("minimum"),
            maximum=schema.get("maximum"),
            default=schema.get("default") if kind == "integer" else None,
        )
    return params


def _filter_fields(op: Mapping[str, Any]) -> dict[str, frozenset[str]]:
    for raw in op.get("parameters", []):
        if raw.get("name") == "filter":
            text = raw.get("description", "").split("Allowed field(s)/operator(s):", 1)[-1]
            return {
                field: frozenset(re.findall(r"`([a-z-]+)`", ops))
                for field, ops in _FILTER_LINE.findall(text)
            }
    return {}


def parse_spec(spec: Mapping[str, Any]) -> dict[str, Operation]:
    """Every operation of ``spec`` by operationId."""
    operations: dict[str, Operation] = {}
    for path, item in spec["paths"].items():
        for method in _METHODS:
            op = item.get(method)
            if op is None:
                continue
            op_id = op["operationId"]
            limits = op["x-klaviyo-ratelimit"]
            extras = tuple(
                ExtraLimit(param, value, int(burst), int(steady))
                for param, value, burst, steady in _EXTRA_LIMIT.findall(op.get("description", ""))
            )
            operations[op_id] = Operation(
                operation_id=op_id,
                method=method.upper(),
                path=path,
                pattern=_path_pattern(path),
                scopes=frozenset(op.get("x-klaviyo-scopes", [])),
                burst=_rate(limits["burst"], "s", op_id),
                steady=_rate(limits["steady"], "m", op_id),
                extra_limits=extras,
                query=_query_params(op),
                filter_fields=_filter_fields(op),
                has_body="requestBody" in op,
            )
    return operations


def load_spec_document() -> dict[str, Any]:
    """The bundled spec subset as a fresh dict (callers may modify it)."""
    text = resources.files("sandbox").joinpath(SPEC_RESOURCE).read_text(encoding="utf-8")
    document: dict[str, Any] = json.loads(text)
    return document


@cache
def operations() -> Mapping[str, Operation]:
    """The bundled spec's operations, parsed once per process."""
    return parse_spec(load_spec_document())


def known_scopes() -> frozenset[str]:
    """Every scope any bundled operation asks for."""
    return frozenset(scope for op in operations().values() for scope in op.scopes)
