"""Runs: the history, a run's page with its counts and live progress, its
rejected rows as CSV, and the decisions a run may wait for (approve or reject
removals held at the safety brake; resume a run that failed).

The run page works without JavaScript (a refresh link); with it, a small
script (``static/live.js``) polls ``/runs/{id}/live`` (``Run.summary()``) every
second until the run is final, and moves the counts and the progress bar.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from core import queries
from core.errors import NotFound
from core.lifecycle import RESUMABLE
from frontdoors.http.console.rendering import ConsoleRoute, known_error, page, redirect
from frontdoors.http.console.session import Signed, context_of, posted, signed_in
from frontdoors.http.errors import describe
from frontdoors.http.report_csv import report_download
from producer.approval import approve, reject
from producer.resume import resume_run
from schemas.contracts import RunStatus

router = APIRouter(route_class=ConsoleRoute)

HISTORY = 100
COUNT_LABELS = (
    ("rows_read", "Rows read"),
    ("rejected", "Rejected before upload"),
    ("submitted", "Submitted"),
    ("imported", "Imported"),
    ("failed", "Failed at Klaviyo"),
    ("unchanged", "Unchanged (not sent)"),
    ("to_remove", "To remove"),
    ("removed", "Removed"),
    ("removal_failed", "Removals failed"),
)


@router.get("/runs")
def runs_page(
    request: Request, signed: Annotated[Signed, Depends(signed_in)], export: str = ""
) -> Response:
    ctx = context_of(request)
    chosen = queries.get_export(ctx, signed.actor, export) if export else None
    runs = queries.recent_runs(ctx, signed.actor, export or None, HISTORY)
    title = f"Runs of {chosen.name}" if chosen else "Runs"
    return page(request, "runs.html", signed, title=title, runs=runs, export=chosen)


def _run_page(
    request: Request, signed: Signed, run_id: str, problem: str = "", status: int = 200
) -> Response:
    ctx = context_of(request)
    run = queries.get_run(ctx, signed.actor, run_id)
    try:
        export_name = queries.get_export(ctx, signed.actor, run.export_id).name
    except NotFound:  # removed since, or on a connection this user does not see
        export_name = ""
    return page(
        request,
        "run.html",
        signed,
        status=status,
        title=f"Run {run.run_id}",
        run=run,
        export_name=export_name,
        summary=run.summary(),
        count_labels=COUNT_LABELS,
        waiting=run.status is RunStatus.AWAITING_APPROVAL,
        resumable=run.status in RESUMABLE,
        problem=problem,
    )


@router.get("/runs/{run_id}")
def run_page(
    request: Request, run_id: str, signed: Annotated[Signed, Depends(signed_in)]
) -> Response:
    return _run_page(request, signed, run_id)


@router.get("/runs/{run_id}/live")
def run_live(
    request: Request, run_id: str, signed: Annotated[Signed, Depends(signed_in)]
) -> JSONResponse:
    run = queries.get_run(context_of(request), signed.actor, run_id)
    summary = run.summary()
    summary["final"] = run.final
    return JSONResponse(summary, headers={"Cache-Control": "no-store"})


@router.get("/runs/{run_id}/rejected.csv")
def rejected_csv(
    request: Request, run_id: str, signed: Annotated[Signed, Depends(signed_in)]
) -> StreamingResponse:
    rows = queries.run_report(context_of(request), signed.actor, run_id)  # refuses before a row
    return report_download(run_id, rows)


def _decide(request: Request, signed: Signed, run_id: str, action: str) -> Response:
    ctx = context_of(request)
    queries.get_run(ctx, signed.actor, run_id)  # an unknown run: not found
    try:
        if action == "approve":
            approve(ctx, signed.actor, run_id)
        elif action == "reject":
            reject(ctx, signed.actor, run_id)
        else:
            resume_run(ctx, signed.actor, run_id)
    except Exception as exc:
        if not known_error(exc):
            raise
        answer = describe(exc)
        return _run_page(request, signed, run_id, answer.message, answer.status)
    done = {"approve": "run_approved", "reject": "run_rejected", "resume": "run_resumed"}
    return redirect(f"/runs/{run_id}", done=done[action])


@router.post("/runs/{run_id}/approve")
def approve_run(
    request: Request, run_id: str, signed: Annotated[Signed, Depends(posted)]
) -> Response:
    return _decide(request, signed, run_id, "approve")


@router.post("/runs/{run_id}/reject")
def reject_run(
    request: Request, run_id: str, signed: Annotated[Signed, Depends(posted)]
) -> Response:
    return _decide(request, signed, run_id, "reject")


@router.post("/runs/{run_id}/resume")
def resume(request: Request, run_id: str, signed: Annotated[Signed, Depends(posted)]) -> Response:
    return _decide(request, signed, run_id, "resume")
