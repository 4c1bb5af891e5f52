"""``/_sandbox/``: endpoints for tests and demos, outside Klaviyo's API.

They need no API key, are never rate-limited or faulted, and answer plain
``application/json``. Accounts appear under their account id (the id
``GET /api/accounts`` returns), never under their key.

``GET /_sandbox/health``
    ``{"ok": true}``; for readiness checks.
``GET /_sandbox/stats``
    Requests by operationId and by status, 429s sent, faults injected, and for
    each account and operation the request count, 429s, the most requests
    seen in any sliding 1 s / 60 s interval and in any fixed (enforced)
    1 s / 60 s window, next to the enforced limits. Also each account's
    profile, list and job counts (jobs by status).
``GET /_sandbox/lists/{id}[?account=ACCOUNT_ID]``
    The list and every member's email in one answer, so a 200,000-member list
    can be checked without paging under rate limits. ``account`` may be left
    out when the sandbox has a single account.
``POST /_sandbox/lists``
    Body ``{"name": "...", "id": optional, "account": optional}``: creates a
    list (in every account unless ``account`` is given); 201 with its id.
``PUT /_sandbox/fail-email``
    Body ``{"pattern": REGEX or null}``: replaces ``--fail-email`` from now on
    (rows of jobs processed later), as a Klaviyo-side problem that comes and
    goes; tests use it to make a failed run succeed on resume.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from sandbox.context import App
from sandbox.spec import operations
from sandbox.store import Account, Profile

_LIST_PATH = re.compile(r"^/_sandbox/lists/([^/]+)/?$")
_LIST_ID = re.compile(r"^[A-Za-z0-9]{1,64}$")


class AdminError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def handle_admin(
    app: App, method: str, path: str, query: dict[str, list[str]], body: bytes
) -> tuple[int, dict[str, Any]]:
    """Answer one ``/_sandbox/`` request: (status, JSON document)."""
    try:
        return _route(app, method, path.rstrip("/") or "/", query, body)
    except AdminError as exc:
        return exc.status, {"error": exc.message}


def _route(
    app: App, method: str, path: str, query: dict[str, list[str]], body: bytes
) -> tuple[int, dict[str, Any]]:
    if path == "/_sandbox/health":
        _only(method, "GET")
        return 200, {"ok": True}
    if path == "/_sandbox/stats":
        _only(method, "GET")
        return 200, stats(app)
    if path == "/_sandbox/lists":
        _only(method, "POST")
        return _create_list(app, body)
    if path == "/_sandbox/fail-email":
        _only(method, "PUT")
        return _set_fail_email(app, body)
    match = _LIST_PATH.match(path)
    if match:
        _only(method, "GET")
        return 200, _list_members(app, match.group(1), query)
    raise AdminError(404, f"no sandbox endpoint {path}")


def _set_fail_email(app: App, body: bytes) -> tuple[int, dict[str, Any]]:
    try:
        pattern = json.loads(body or b"{}").get("pattern")
        compiled = re.compile(pattern) if pattern else None
    except (ValueError, AttributeError, re.error) as exc:
        raise AdminError(400, f"want {{'pattern': REGEX or null}}: {exc}") from None
    with app.store.lock:
        app.processor.fail_email = compiled
    return 200, {"pattern": pattern}


def _only(method: str, allowed: str) -> None:
    if method != allowed:
        raise AdminError(405, f"use {allowed}")


def stats(app: App) -> dict[str, Any]:
    """The whole statistics document (also :meth:`SandboxServer.stats`)."""
    limits = {op_id: app.limiter.limits(op) for op_id, op in operations().items()}
    document = app.stats.snapshot(limits)
    with app.store.lock:
        now = app.clock.now()
        app.processor.advance(now)
        summary = {}
        for account in app.store.accounts.values():
            statuses = Counter(job.status(now) for job in account.job_order)
            summary[account.id] = {
                "scopes": sorted(account.scopes) if account.scopes is not None else "all",
                "profiles": len(account.profiles),
                "lists": {lid: len(rec.members) for lid, rec in account.lists.items()},
                "jobs": dict(statuses),
            }
    document["state"] = summary
    document["settings"] = {
        "rate_limit_scale": app.config.rate_limit_scale,
        "fault_rate": app.config.fault_rate,
        "latency_ms": app.config.latency_ms,
        "job_queue_seconds": app.config.job_queue_seconds,
        "job_profiles_per_second": app.config.job_profiles_per_second,
    }
    return document


def _account(app: App, wanted: str | None) -> Account:
    if wanted is None:
        if len(app.store.accounts) != 1:
            raise AdminError(
                400, f"several accounts; pass ?account= one of {sorted(app.store.accounts)}"
            )
        return next(iter(app.store.accounts.values()))
    account = app.store.accounts.get(wanted)
    if account is None:
        raise AdminError(404, f"no account {wanted}")
    return account


def _list_members(app: App, list_id: str, query: dict[str, list[str]]) -> dict[str, Any]:
    return list_members(app, list_id, query.get("account", [None])[-1])


def list_members(app: App, list_id: str, account_id: str | None = None) -> dict[str, Any]:
    """A list and all its members' emails (also :meth:`SandboxServer.list_emails`)."""
    with app.store.lock:
        app.processor.advance(app.clock.now())
        account = _account(app, account_id)
        record = account.lists.get(list_id)
        if record is None:
            raise AdminError(404, f"no list {list_id} in account {account.id}")
        profiles = account.profiles
        email = Profile._fields.index("email")
        emails = [profiles[pid][email] for pid in record.members]
        return {
            "id": record.id,
            "name": record.name,
            "account": account.id,
            "profile_count": len(emails),
            "emails": emails,
        }


def _create_list(app: App, body: bytes) -> tuple[int, dict[str, Any]]:
    try:
        request = json.loads(body or b"{}")
    except ValueError:
        raise AdminError(400, "body must be JSON") from None
    if not isinstance(request, dict):
        raise AdminError(400, "body must be a JSON object")
    name = request.get("name")
    list_id = request.get("id")
    if not isinstance(name, str) or not name.strip():
        raise AdminError(400, "'name' is required")
    if list_id is not None and (not isinstance(list_id, str) or not _LIST_ID.match(list_id)):
        raise AdminError(400, "'id' must be letters and digits")
    with app.store.lock:
        account_ids = list(app.store.accounts)
        if request.get("account") is not None:
            if request["account"] not in app.store.accounts:
                raise AdminError(404, f"no account {request['account']}")
            account_ids = [request["account"]]
        try:
            created = app.store.create_list(name, list_id, account_ids)
        except ValueError as exc:
            raise AdminError(409, str(exc)) from None
    return 201, {"id": created, "name": name, "accounts": account_ids}
