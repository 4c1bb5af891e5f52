"""``approve`` and ``reject``: decide a mirror run held at the safety brake."""

from __future__ import annotations

from typing import Any

from core import audit
from core.actors import Actor, require_use
from core.context import Context
from core.errors import ExportError
from producer.dispatch import launch_removals
from schemas import keys


def _held(ctx: Context, actor: Actor, run_id: str) -> dict[str, Any]:
    status = ctx.runs.status(run_id)
    if status["status"] != "awaiting_approval":
        raise ExportError(f"run {run_id} is {status['status']}, not awaiting approval")
    connection_id, _ = ctx.runs.target(run_id)
    require_use(actor, ctx.store.get_connection(connection_id))
    return status


def approve(ctx: Context, actor: Actor, run_id: str) -> int:
    """Let the held removals go; returns how many members will be removed."""
    status = _held(ctx, actor, run_id)
    ctx.runs.set_stage(run_id, "removing", f"removals approved by {actor.user}")
    audit.record(ctx.redis, actor, "run.approve", run_id, to_remove=status["counts"]["to_remove"])
    launch_removals(ctx.settings, run_id, ctx.runs.removal_chunks(run_id))
    return int(status["counts"]["to_remove"])


def reject(ctx: Context, actor: Actor, run_id: str) -> dict[str, Any]:
    """Remove nothing and end the run; the list keeps every member."""
    status = _held(ctx, actor, run_id)
    chunks = [keys.run_removals(run_id, c) for c in range(ctx.runs.removal_chunks(run_id))]
    if chunks:
        ctx.redis.delete(*chunks)
    ctx.redis.hset(keys.run(run_id), "removals_rejected", actor.user)
    audit.record(ctx.redis, actor, "run.reject", run_id, to_remove=status["counts"]["to_remove"])
    return ctx.runs.finish(run_id)
