"""What a route handler gets: the request, the account, and the shared state.

Query parameters are checked against the spec before any handler runs
(:func:`check_query`): a parameter the operation does not declare, a value
outside a declared enum (``include``, ``fields[...]``, ``additional-fields``,
``sort``) or a ``page[size]`` outside its bounds is a 400 with
``source.parameter`` naming it. Klaviyo is strict in the same way for
``include`` ("'profiless' is not an allowed include parameter for this
resource."); for unknown parameters the sandbox's strictness is a choice, made
so a misspelt parameter fails in tests instead of being silently ignored.

Handlers read and write state only inside :meth:`Context.locked`, which
first runs the bulk import rows due by now. That is what makes a job shown as
``complete`` have its profiles and memberships visible to the next request.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sandbox.clock import Clock
from sandbox.config import SandboxConfig
from sandbox.errors import ApiError, invalid_parameter, parse_error
from sandbox.faults import FaultInjector
from sandbox.filters import Condition, FilterError, check_conditions, parse_filter
from sandbox.jobs import JobProcessor
from sandbox.pagination import build_url, collection_links, decode_cursor
from sandbox.ratelimit import RateLimiter, TrafficStats
from sandbox.resources import apply_sparse_fields
from sandbox.spec import Operation
from sandbox.store import Account, Store


@dataclass
class App:
    """Everything one running sandbox shares between requests."""

    config: SandboxConfig
    clock: Clock
    store: Store
    processor: JobProcessor
    limiter: RateLimiter
    stats: TrafficStats
    faults: FaultInjector


@dataclass
class Answer:
    """A handler's result: a status and a JSON document (None for 204)."""

    status: int
    document: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Context:
    """One authenticated, authorised, admitted request."""

    app: App
    op: Operation
    account: Account
    path_params: dict[str, str]
    query: dict[str, list[str]]
    query_items: list[tuple[str, str]]
    body: bytes
    base_url: str
    path: str

    @contextmanager
    def locked(self) -> Iterator[float]:
        """Hold the store lock with due job work done; yields the current time."""
        with self.app.store.lock:
            now = self.app.clock.now()
            self.app.processor.advance(now)
            yield now

    def value(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None

    def values(self, name: str) -> frozenset[str]:
        """Items of a comma-separated (``explode: false``) array parameter."""
        raw = self.value(name)
        if not raw:
            return frozenset()
        return frozenset(item.strip() for item in raw.split(",") if item.strip())

    def page(self) -> tuple[int, int]:
        """(start sequence from ``page[cursor]``, page size)."""
        default, _ = self.op.page_size_bounds()
        size = self.value("page[size]")
        return decode_cursor(self.value("page[cursor]")), int(size) if size else default

    def sparse_fields(self) -> dict[str, frozenset[str]]:
        """``fields[<type>]`` parameters by resource type."""
        return {
            name[len("fields[") : -1]: self.values(name)
            for name in self.query
            if name.startswith("fields[") and name.endswith("]")
        }

    def conditions(self, implemented: frozenset[str]) -> list[Condition]:
        text = self.value("filter")
        if text is None:
            return []
        try:
            found = parse_filter(text)
            check_conditions(found, self.op.filter_fields, implemented)
        except FilterError as exc:
            raise invalid_parameter(str(exc), "filter") from None
        return found

    def json_body(self) -> Any:
        # A 10,000-profile import is 30,000 new dicts: with the cyclic
        # collector running, parsing it cost twice as much (its collections
        # also walk every row of the jobs still queued). Nothing parsed from
        # JSON can form a cycle, so the collector waits until the parse is done.
        paused = gc.isenabled()
        if paused:
            gc.disable()
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise parse_error(f"JSON parse error - {exc}") from None
        finally:
            if paused:
                gc.enable()

    def self_link(self) -> str:
        return build_url(self.base_url, self.path, self.query_items)

    def links(self, next_seq: int | None) -> dict[str, Any]:
        return collection_links(self.base_url, self.path, self.query_items, next_seq)

    def not_implemented(self, what: str, parameter: str) -> ApiError:
        return invalid_parameter(f"The sandbox does not implement {what}.", parameter)


def check_query(op: Operation, query: dict[str, list[str]]) -> None:
    """Refuse query parameters the spec does not allow for ``op``."""
    for name, values in query.items():
        declared = op.query.get(name)
        if declared is None:
            raise invalid_parameter(
                f"'{name}' is not a valid query parameter for this endpoint.", name
            )
        value = values[-1]
        if declared.kind == "integer":
            low = declared.minimum if declared.minimum is not None else 1
            high = declared.maximum if declared.maximum is not None else 100
            if not value.strip().isdigit() or not low <= int(value) <= high:
                raise invalid_parameter(
                    f"{name} must be an integer between {low} and {high}.", name
                )
        elif declared.enum is not None:
            items = value.split(",") if declared.kind == "array" else [value]
            for item in items:
                if item.strip() not in declared.enum:
                    if name == "include":
                        detail = f"'{item}' is not an allowed include parameter for this resource."
                    else:
                        detail = f"'{item}' is not an allowed value for {name}."
                    raise invalid_parameter(detail, name)


Handler = Callable[[Context], Answer]


def registrar(table: dict[str, Handler]) -> Callable[[str], Callable[[Handler], Handler]]:
    """A decorator factory that files handlers into ``table`` by operationId."""

    def handles(operation_id: str) -> Callable[[Handler], Handler]:
        def register(function: Handler) -> Handler:
            table[operation_id] = function
            return function

        return register

    return handles


def document(ctx: Context, data: Any, links: dict[str, Any], **extra: Any) -> Answer:
    """A 200 answer with sparse fieldsets applied (and ``included`` if asked for)."""
    body: dict[str, Any] = {"data": data, "links": links, **extra}
    if ctx.value("include") is not None and "included" not in body:
        body["included"] = []
    apply_sparse_fields(body, ctx.sparse_fields())
    return Answer(200, body)
