"""``/api/v1/runs`` and ``/api/v1/audit``: what became of each run, and who did what.

A run reads as ``klaviyo-export status --json`` prints it (``Run.summary``):
an orchestrator polls ``GET /runs/{id}`` until its status is final. The rows
a run did not export stream as CSV (``core.reports.REPORT_COLUMNS``), read
from Redis a page at a time: a run's report can hold a million rows, and the
server never holds it whole. ``approve`` and ``resume`` answer 202: the
removals, or the batches sent again, go to the workers.
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials

from core import queries
from core.actors import Actor
from core.context import Context
from core.reports import REPORT_COLUMNS
from frontdoors.http.auth import AppContext, CurrentActor, Given, actor_for
from frontdoors.http.models import (
    ERROR_RESPONSES,
    ID_PATTERN,
    Approved,
    AuditEntry,
    AuditLog,
    Resumed,
    RunList,
    RunSummary,
)
from frontdoors.http.report_csv import report_download
from producer import approval, resume

router = APIRouter(prefix="/runs", tags=["runs"], responses=ERROR_RESPONSES)
audit_router = APIRouter(prefix="/audit", tags=["audit"], responses=ERROR_RESPONSES)
RunId = Annotated[str, Path(pattern=ID_PATTERN)]
Limit = Annotated[int, Query(ge=1, le=500, description="at most this many, newest first")]


def summary(ctx: Context, actor: Actor, run_id: str) -> RunSummary:
    return RunSummary(**queries.get_run(ctx, actor, run_id).summary())


@router.get("", response_model=RunList)
def list_runs(
    ctx: AppContext,
    actor: CurrentActor,
    export_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    limit: Limit = 20,
) -> RunList:
    """Recent runs, of one export or of all."""
    runs = queries.recent_runs(ctx, actor, export_id, limit)
    return RunList(runs=[RunSummary(**run.summary()) for run in runs])


@router.get("/{run_id}", response_model=RunSummary)
async def get_run(run_id: RunId, ctx: AppContext, given: Given) -> Response:
    """The run's status and counts, as ``status --json`` prints them."""
    # The request an orchestrator repeats while it waits: the token and the run
    # are read in one trip to a worker thread (a sync dependency and a sync
    # endpoint would take one each), and the summary, checked by its contract
    # as it is made, goes out as it is rather than through the model again.
    body = await run_in_threadpool(_status_json, ctx, given, run_id)
    return Response(body, media_type="application/json")


def _status_json(ctx: Context, given: HTTPAuthorizationCredentials | None, run_id: str) -> bytes:
    run = queries.get_run(ctx, actor_for(ctx, given), run_id)
    return json.dumps(run.summary(), separators=(",", ":")).encode()


@router.get(
    "/{run_id}/rejected",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "the rows not exported, as CSV: " + ",".join(REPORT_COLUMNS),
            "content": {"text/csv": {"schema": {"type": "string"}}},
        }
    },
)
def rejected_rows(run_id: RunId, ctx: AppContext, actor: CurrentActor) -> StreamingResponse:
    """The rows the run did not export (rejected by the checks, or failed by Klaviyo)."""
    rows = queries.run_report(ctx, actor, run_id)  # refused here, before the answer starts
    return report_download(run_id, rows)


@router.post("/{run_id}/approve", status_code=202, response_model=Approved)
def approve_run(run_id: RunId, ctx: AppContext, actor: CurrentActor) -> Approved:
    """Let a mirror run held at the safety brake remove its departed members."""
    removing = approval.approve(ctx, actor, run_id)
    return Approved(run=summary(ctx, actor, run_id), removing=removing)


@router.post("/{run_id}/reject", response_model=RunSummary)
def reject_run(run_id: RunId, ctx: AppContext, actor: CurrentActor) -> RunSummary:
    """End a mirror run held at the safety brake without removing anyone."""
    approval.reject(ctx, actor, run_id)
    return summary(ctx, actor, run_id)


@router.post("/{run_id}/resume", status_code=202, response_model=Resumed)
def resume_run(run_id: RunId, ctx: AppContext, actor: CurrentActor) -> Resumed:
    """Send again the batches of a failed or partly failed run (a new attempt)."""
    batches = resume.resume_run(ctx, actor, run_id)
    return Resumed(run=summary(ctx, actor, run_id), batches=batches)


@audit_router.get("", response_model=AuditLog)
def audit_log(ctx: AppContext, actor: CurrentActor, limit: Limit = 50) -> AuditLog:
    """Every change and every run, newest first: who, how (``via``), what."""
    return AuditLog(entries=[AuditEntry(**e) for e in queries.audit_entries(ctx, actor, limit)])
