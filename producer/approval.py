"""``approve`` and ``reject``: decide a mirror run held at the safety brake."""

from __future__ import annotations

from core import audit, queries
from core.actors import Actor, require_person, require_use
from core.context import Context
from core.run_record import Run


def _check(ctx: Context, actor: Actor, run_id: str) -> Run:
    require_person(actor, "decide a run at the safety brake")
    queries.get_run(ctx, actor, run_id)  # hidden: NotFound
    run = ctx.lifecycle.held(run_id)
    connection_id, _ = ctx.runs.target(run_id)
    require_use(actor, ctx.store.get_connection(connection_id))
    return run


def approve(ctx: Context, actor: Actor, run_id: str) -> int:
    """Let the held removals go; returns how many members will be removed."""
    run = _check(ctx, actor, run_id)
    audit.record(ctx.redis, actor, "run.approve", run_id, to_remove=run.counts.to_remove)
    return ctx.lifecycle.approve(run_id, actor.user)


def reject(ctx: Context, actor: Actor, run_id: str) -> Run:
    """Remove nothing and end the run; the list keeps every member."""
    run = _check(ctx, actor, run_id)
    audit.record(ctx.redis, actor, "run.reject", run_id, to_remove=run.counts.to_remove)
    return ctx.lifecycle.reject(run_id, actor.user)
