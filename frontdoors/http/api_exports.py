"""``/api/v1/exports``: what goes where, and starting its runs.

Saving an export never runs it. A bound ``segment`` named over HTTP must lie
under ``KLAVIYO_EXPORT_SOURCE_ROOTS`` (``producer.remote.allowed_path``): a
caller on the network does not choose a file of the server's to read.

``POST /exports/{id}/runs`` opens the run (every refusal is decided then:
403, 404, 409 busy, 422) and answers 202 with the run and its ``Location``;
the segment is read after the answer, by ``app.state.readers``. With an
``Idempotency-Key`` a retried request answers 202 with the run the first one
opened (``Idempotent-Replayed: true``), and starts nothing. ``dry_run``
answers 200 with the plan, recording and sending nothing.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Request, Response
from fastapi.responses import JSONResponse

from core import operations, queries
from core.records import Export, ExportSpec
from frontdoors.http.auth import AppContext, CurrentActor
from frontdoors.http.models import (
    ERROR_RESPONSES,
    ID_PATTERN,
    ExportIn,
    ExportList,
    ExportOut,
    ExportRemoved,
    Plan,
    RunIn,
    RunSummary,
    created,
)
from frontdoors.http.readers import Readers
from producer import plan, remote

router = APIRouter(prefix="/exports", tags=["exports"], responses=ERROR_RESPONSES)
ExportId = Annotated[str, Path(pattern=ID_PATTERN)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="a retried request with the same key gets the first one's run",
    ),
]


def shown(export: Export) -> ExportOut:
    return ExportOut(**export.public())


def run_location(run_id: str) -> str:
    return f"/api/v1/runs/{run_id}"


@router.get("", response_model=ExportList)
def list_exports(ctx: AppContext, actor: CurrentActor) -> ExportList:
    """The exports the actor may see (contributors: those on connections they may see)."""
    return ExportList(exports=[shown(e) for e in queries.list_exports(ctx, actor)])


@router.post("", status_code=201, response_model=ExportOut, responses=created("export"))
def add_export(
    body: ExportIn, ctx: AppContext, actor: CurrentActor, response: Response
) -> ExportOut:
    """Save an export (the list is checked with Klaviyo); saving does not run it."""
    chosen: dict[str, Any] = body.model_dump()
    if body.segment is not None:
        chosen["segment"] = remote.allowed_path(ctx, body.segment, field="segment")
    spec = ExportSpec(**{f.name: chosen[f.name] for f in fields(ExportSpec)})
    export = operations.add_export(ctx, actor, spec)
    response.headers["Location"] = f"/api/v1/exports/{export.id}"
    return shown(export)


@router.get("/{export_id}", response_model=ExportOut)
def get_export(export_id: ExportId, ctx: AppContext, actor: CurrentActor) -> ExportOut:
    return shown(queries.get_export(ctx, actor, export_id))


@router.post("/{export_id}/enable", response_model=ExportOut)
def enable_export(export_id: ExportId, ctx: AppContext, actor: CurrentActor) -> ExportOut:
    return shown(operations.set_enabled(ctx, actor, export_id, True))


@router.post("/{export_id}/disable", response_model=ExportOut)
def disable_export(export_id: ExportId, ctx: AppContext, actor: CurrentActor) -> ExportOut:
    """A disabled export does not run, on schedule or on demand."""
    return shown(operations.set_enabled(ctx, actor, export_id, False))


@router.delete("/{export_id}", response_model=ExportRemoved)
def remove_export(export_id: ExportId, ctx: AppContext, actor: CurrentActor) -> ExportRemoved:
    """Remove an export at once (admins); its unfinished runs are cancelled."""
    cancelled = operations.remove_export(ctx, actor, export_id)
    return ExportRemoved(id=export_id, runs_cancelled=cancelled)


@router.post(
    "/{export_id}/runs",
    status_code=202,
    response_model=RunSummary,
    responses={
        200: {"model": Plan, "description": "dry_run: the plan; nothing recorded or sent"},
        202: {
            "description": "the run is recorded; its segment is read next",
            "headers": {
                "Location": {"description": "the run", "schema": {"type": "string"}},
                "Idempotent-Replayed": {
                    "description": "true: a request with this Idempotency-Key opened it before",
                    "schema": {"type": "string", "enum": ["true"]},
                },
            },
        },
    },
)
def start_run(
    export_id: ExportId,
    request: Request,
    ctx: AppContext,
    actor: CurrentActor,
    idempotency_key: IdempotencyKey = None,
    body: RunIn | None = None,
) -> Response:
    """Start a run of the export (202): the bound segment, or ``source`` under the source
    roots. Answers once the run is recorded; follow it at ``Location``. A dry run
    answers its plan (200) and claims no ``Idempotency-Key``."""
    asked = body or RunIn.model_validate({})
    if asked.dry_run:
        wanted = remote.request_run(
            ctx, actor, export_id, source=asked.source, fmt=asked.format, full=asked.full
        )
        with request.app.state.readers.planning():  # bounded: it reads the whole segment
            found = plan.dry_run(ctx, actor, export_id, wanted.source, wanted.format, wanted.full)
        return JSONResponse(Plan(**found.as_dict()).model_dump(mode="json"), status_code=200)
    opened = remote.open_remote_run(
        ctx,
        actor,
        export_id,
        source=asked.source,
        fmt=asked.format,
        full=asked.full,
        idempotency_key=idempotency_key,
    )
    headers = {"Location": run_location(opened.run_id)}
    if opened.request is not None:
        readers: Readers = request.app.state.readers
        readers.submit(opened.run_id, opened.request)
    else:
        headers["Idempotent-Replayed"] = "true"
    summary = RunSummary(**queries.get_run(ctx, actor, opened.run_id).summary())
    return JSONResponse(summary.model_dump(mode="json"), status_code=202, headers=headers)
