"""What happens to an ``/api/`` request between the socket and its handler.

:func:`build_app` assembles the shared state; :func:`match_route` finds the
operation (path with an optional trailing slash, then method, from the spec);
:func:`admit` applies, in order, the checks Klaviyo applies before any
handler runs (the order Klaviyo uses is not documented; this one is a
choice):

1. ``Authorization: Klaviyo-API-Key <key>``: a missing or different scheme is
   401 ``not_authenticated``, an unknown key 401 ``authentication_failed``;
2. the ``revision`` header: missing, malformed or unsupported is 400 with
   ``source.parameter = "revision"``;
3. scopes: 403 ``permission_denied``;
4. rate limits: 429 ``throttled`` with ``Retry-After``;
5. the body's media type (``application/vnd.api+json`` or
   ``application/json``, else 415) and size (over 5 MiB, 413);
6. query parameters against the spec (400).

Faults are drawn by the server before step 1 (see :mod:`sandbox.faults`).
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message

from sandbox import routes, routes_jobs
from sandbox.clock import Clock
from sandbox.config import SandboxConfig
from sandbox.context import App, Handler, check_query
from sandbox.errors import (
    ApiError,
    authentication_failed,
    invalid_parameter,
    method_not_allowed,
    not_authenticated,
    not_found,
    payload_too_large,
    permission_denied,
    throttled,
    unsupported_media_type,
)
from sandbox.faults import FaultInjector
from sandbox.jobs import MAX_PAYLOAD_BYTES, JobProcessor
from sandbox.ratelimit import RateLimiter, TrafficStats
from sandbox.spec import Operation, operations, revision_problem
from sandbox.store import Account, Store

HANDLERS: dict[str, Handler] = {**routes.HANDLERS, **routes_jobs.HANDLERS}
ACCEPTED_MEDIA = frozenset({"application/vnd.api+json", "application/json"})
_SCHEME = "Klaviyo-API-Key "


def build_app(config: SandboxConfig, clock: Clock | None = None) -> App:
    """All shared state for one sandbox."""
    clock = clock or Clock()
    store = Store(config, clock)
    stats = TrafficStats()
    return App(
        config=config,
        clock=clock,
        store=store,
        processor=JobProcessor(store, config),
        limiter=RateLimiter(config.rate_limit_scale, clock, stats),
        stats=stats,
        faults=FaultInjector(config.fault_rate, config.seed),
    )


def match_route(method: str, path: str) -> tuple[Operation, dict[str, str]]:
    """The operation for ``method path`` and its path parameters, or a 404/405."""
    path_matched = False
    for op in operations().values():
        found = op.pattern.match(path)
        if found is None:
            continue
        path_matched = True
        if op.method == method:
            return op, found.groupdict()
    if path_matched:
        raise method_not_allowed(method)
    raise not_found("The requested resource was not found.")


@dataclass(frozen=True)
class Admission:
    """An admitted request: whose it is, and the rate-limit headers to send."""

    account: Account
    headers: dict[str, str]


def admit(
    app: App,
    op: Operation,
    headers: Message[str, str],
    query: dict[str, list[str]],
    body: bytes,
) -> Admission:
    """Run checks 1-6 of the module docstring; raises the first refusal."""
    account = authenticate(app.store, headers.get("Authorization") or "")
    revision = headers.get("revision")
    problem = revision_problem(revision)
    if problem is not None:
        raise _revision_error(problem, revision)
    if not account.allows(op.scopes):
        raise permission_denied()
    decision = app.limiter.check(account.id, op, query)
    if not decision.allowed:
        raise throttled(decision.retry_after)
    if op.has_body:
        media = (headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if body and media not in ACCEPTED_MEDIA:
            raise unsupported_media_type(media or "none")
        if len(body) > MAX_PAYLOAD_BYTES:
            raise payload_too_large(MAX_PAYLOAD_BYTES)
    check_query(op, query)
    return Admission(account, decision.headers)


def authenticate(store: Store, authorization: str) -> Account:
    """The account of a ``Klaviyo-API-Key`` header, or a 401."""
    key = authorization[len(_SCHEME) :].strip()
    if not authorization.startswith(_SCHEME) or not key:
        raise not_authenticated()
    account = store.account_for_key(key)
    if account is None:
        raise authentication_failed()
    return account


def _revision_error(problem: str, value: str | None) -> ApiError:
    if problem == "missing":
        detail = "A 'revision' header is required (format: YYYY-MM-DD[.suffix])."
    elif problem == "malformed":
        detail = "The 'revision' header must have the format YYYY-MM-DD[.suffix]."
    else:
        detail = f"'{value}' is not a supported API revision."
    return invalid_parameter(detail, "revision")
