"""Resume: send again only the batches of a run that did not succeed.

A resume is a new attempt of the same run, not a new run: the same run id,
the same segment snapshot (the stored payloads of its failed batches, kept
``FAILED_PAYLOAD_TTL``), the same connection and list. Results of the batches
sent again replace their old ones, so the run's counts stay exact.
"""

from __future__ import annotations

from core import audit, queries
from core.actors import Actor, require_person, require_use
from core.context import Context
from core.errors import ExportBusy, ExportError
from core.lifecycle import RESUMABLE
from producer.runner import interrupted


def resume_run(ctx: Context, actor: Actor, run_id: str) -> list[int]:
    """Resend the run's unfinished batches; returns their numbers."""
    require_person(actor, "resume runs")
    run = queries.get_run(ctx, actor, run_id)  # hidden: NotFound
    if run.status not in RESUMABLE:
        raise ExportError(
            f"run {run_id} is {run.status}: only failed, partially succeeded or "
            "rejected runs resume"
        )
    export = ctx.store.get_export(run.export_id)  # a removed export never runs again
    connection_id, _ = ctx.runs.target(run_id)
    require_use(actor, ctx.store.get_connection(connection_id))
    numbers = ctx.batches.unfinished(run_id)
    if not numbers:
        raise ExportError(
            f"run {run_id} sent no batch that failed (it stopped before sending): "
            "start a new run instead"
        )
    expired = [n for n in numbers if not ctx.batches.has_payload(run_id, n)]
    if expired:
        raise ExportError(
            f"run {run_id}: the stored rows of batches {expired} have expired: start a new run"
        )
    holder = ctx.locks.take(export.id, run_id)
    if holder != run_id:
        raise ExportBusy(
            f"export {export.id} has run {holder} in progress: resume it later", holder
        )
    try:
        ctx.lifecycle.reopen(run_id, numbers)
        audit.record(ctx.redis, actor, "run.resume", run_id, export=export.id, batches=numbers)
        ctx.lifecycle.dispatcher.launch_uploads(run_id, numbers)
    except BaseException as exc:
        interrupted(ctx, run_id, exc, what="resume")
        ctx.locks.release(export.id, run_id)  # also when the run had stayed final
        raise
    return numbers
