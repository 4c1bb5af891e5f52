"""What people and upstream systems may read, with the same rules everywhere.

``core.operations`` changes things; this module reads them. Each front door
(the CLI, the HTTP API, the console) lists and shows through here, so a
contributor sees the same connections in a terminal as in a browser:

- admins see everything;
- contributors see the connections allowed to contributors, the exports on
  them and their runs (with their reports), and the audit log;
- a trigger token (an upstream system) reads exports and runs and their
  status, never connections, reports or the audit log.

A record the actor may not see is ``NotFound``, as if it did not exist: an id
that leaks no name is the point of hiding it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

from core import audit
from core.actors import Actor, may_see, require_person
from core.context import Context
from core.errors import NotFound
from core.records import Connection, Export
from core.run_record import Run


def list_connections(ctx: Context, actor: Actor) -> list[Connection]:
    require_person(actor, "list connections")
    return [c for c in ctx.store.list_connections() if may_see(actor, c)]


def get_connection(ctx: Context, actor: Actor, connection_id: str) -> Connection:
    require_person(actor, "read connections")
    connection = ctx.store.get_connection(connection_id)
    if not may_see(actor, connection):
        raise NotFound(f"no connection {connection_id!r}")
    return connection


def _connection_visible(ctx: Context, actor: Actor, connection_id: str) -> bool:
    """Whether the actor may see what belongs to the connection; a connection
    that is gone is hidden from contributors (nobody can tell whom it was for)."""
    if actor.is_admin or actor.is_trigger:
        return True
    try:
        return may_see(actor, ctx.store.get_connection(connection_id))
    except NotFound:
        return False


def _visible(ctx: Context, actor: Actor, export: Export) -> bool:
    return _connection_visible(ctx, actor, export.connection_id)


def list_exports(ctx: Context, actor: Actor) -> list[Export]:
    return [e for e in ctx.store.list_exports() if _visible(ctx, actor, e)]


def get_export(ctx: Context, actor: Actor, export_id: str) -> Export:
    export = ctx.store.get_export(export_id)
    if not _visible(ctx, actor, export):
        raise NotFound(f"no export {export_id!r}")
    return export


def _run_visible(ctx: Context, actor: Actor, run: Run) -> bool:
    """By the connection the run recorded: still right once its export is gone."""
    if actor.is_admin or actor.is_trigger:
        return True
    connection_id, _ = ctx.runs.target(run.run_id)
    return _connection_visible(ctx, actor, connection_id)


def get_run(ctx: Context, actor: Actor, run_id: str) -> Run:
    """Every role may read the status of a run it can see: an orchestrator polls it."""
    run = ctx.runs.get(run_id)
    if not _run_visible(ctx, actor, run):
        raise NotFound(f"no run {run_id!r}")
    return run


def recent_runs(ctx: Context, actor: Actor, export_id: str | None, limit: int) -> list[Run]:
    if export_id is not None:
        get_export(ctx, actor, export_id)
        return ctx.runs.recent(export_id, limit)
    if actor.is_admin or actor.is_trigger:
        return ctx.runs.recent(None, limit)
    return [r for r in ctx.runs.recent(None, limit * 4) if _run_visible(ctx, actor, r)][:limit]


def run_report(ctx: Context, actor: Actor, run_id: str) -> Iterator[dict[str, Any]]:
    """The rows of a run that were not exported (``core.reports.REPORT_COLUMNS``),
    read from Redis a page at a time. Checked before the first row, so that a
    streamed answer is refused before it starts."""
    require_person(actor, "read a run's rejected rows")
    get_run(ctx, actor, run_id)
    return ctx.reports.iter_not_exported(run_id)


def audit_entries(ctx: Context, actor: Actor, limit: int) -> list[dict[str, Any]]:
    """Newest first. Contributors see the entries about connections they may
    see, their exports and runs; not those about hidden or removed connections,
    tokens or users."""
    require_person(actor, "read the audit log")
    if actor.is_admin:
        return audit.recent(ctx.redis, limit)
    seen: dict[str, bool] = {}
    shown = []
    for entry in audit.recent(ctx.redis, limit * AUDIT_SCAN):
        connection_id = _entry_connection(ctx, entry)
        if connection_id is None:
            continue
        if connection_id not in seen:
            seen[connection_id] = _connection_visible(ctx, actor, connection_id)
        if seen[connection_id]:
            shown.append(entry)
    return shown[:limit]


AUDIT_SCAN: Final = 5
"""A contributor's audit page reads this many entries per one it shows, at most."""


def _entry_connection(ctx: Context, entry: dict[str, Any]) -> str | None:
    """The connection an audit entry is about, or None (tokens, users, gone)."""
    target, detail = str(entry["target"]), entry["detail"]
    if target.startswith("c_"):
        return target
    if isinstance(detail, dict) and isinstance(detail.get("connection"), str):
        return str(detail["connection"])
    try:
        if target.startswith("e_"):
            return ctx.store.get_export(target).connection_id
        if target.startswith("r_"):
            return ctx.runs.target(target)[0]
    except NotFound:
        return None
    return None
