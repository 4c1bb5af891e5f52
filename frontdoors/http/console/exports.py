"""Exports: the list, adding one (saving never runs it), its page with Run now,
enable and disable, and removal after a confirmation (admins).

Run now opens the run in the request (``producer.remote.open_remote_run``:
every refusal is immediate) and hands the reading to the server's readers
(``app.state.readers``), then shows the run's page, where its progress moves.
An export without a bound segment asks for a source path, which the domain
accepts only under the server's source roots.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, Response

from core import operations, queries
from core.errors import ExportBusy, InvalidInput, NotFound
from core.records import Export, ExportSpec
from frontdoors.http.console.forms import EXPORT_LABELS, FormState, export_spec
from frontdoors.http.console.rendering import (
    ConsoleRoute,
    known_error,
    mapping_text,
    page,
    redirect,
)
from frontdoors.http.console.session import Signed, context_of, posted, signed_in
from frontdoors.http.errors import describe
from producer.remote import open_remote_run

router = APIRouter(route_class=ConsoleRoute)

RUN_HISTORY = 20
MODE_CHOICES = (
    ("add", "Add: add and update members only"),
    ("mirror", "Mirror: also remove members who left the segment"),
)


@router.get("/exports")
def exports_page(request: Request, signed: Annotated[Signed, Depends(signed_in)]) -> Response:
    ctx = context_of(request)
    exports = queries.list_exports(ctx, signed.actor)
    names = {c.id: c.name for c in queries.list_connections(ctx, signed.actor)}
    return page(request, "exports.html", signed, title="Exports", exports=exports, names=names)


def _new_page(request: Request, signed: Signed, form: FormState, status: int = 200) -> Response:
    connections = queries.list_connections(context_of(request), signed.actor)
    return page(
        request,
        "export_new.html",
        signed,
        status=status,
        title="Add an export",
        form=form,
        connections=connections,
        mode_choices=MODE_CHOICES,
    )


@router.get("/exports/new")
def new_export_page(
    request: Request, signed: Annotated[Signed, Depends(signed_in)], connection: str = ""
) -> Response:
    defaults = {
        "connection_id": connection,
        "mode": ExportSpec.default("mode"),
        "brake_share": str(ExportSpec.default("brake_share")),
        "brake_count": str(ExportSpec.default("brake_count")),
        "enabled": "on",
    }
    return _new_page(request, signed, FormState(values=defaults))


@router.post("/exports/new")
def add_export(
    request: Request,
    signed: Annotated[Signed, Depends(posted)],
    name: Annotated[str, Form()] = "",
    connection_id: Annotated[str, Form()] = "",
    list_id: Annotated[str, Form()] = "",
    email_field: Annotated[str, Form()] = "",
    properties: Annotated[str, Form()] = "",
    schedule: Annotated[str, Form()] = "",
    mode: Annotated[str, Form()] = "add",
    brake_share: Annotated[str, Form()] = "",
    brake_count: Annotated[str, Form()] = "",
    segment: Annotated[str, Form()] = "",
    enabled: Annotated[str, Form()] = "",
) -> Response:
    ctx = context_of(request)
    form = FormState(
        values={
            "name": name, "connection_id": connection_id, "list_id": list_id,
            "email_field": email_field, "properties": properties, "schedule": schedule,
            "mode": mode, "brake_share": brake_share, "brake_count": brake_count,
            "segment": segment, "enabled": enabled,
        }
    )  # fmt: skip
    spec = export_spec(ctx, form)
    if spec is None:
        return _new_page(request, signed, form, 422)
    try:
        export = operations.add_export(ctx, signed.actor, spec)  # hidden: NotFound
    except NotFound:
        form.refuse("connection_id", "choose one of the connections listed", EXPORT_LABELS)
        return _new_page(request, signed, form, 422)
    except Exception as exc:
        if not known_error(exc):
            raise
        return _new_page(request, signed, form.failed(exc, EXPORT_LABELS), describe(exc).status)
    return redirect(f"/exports/{export.id}", done="export_added")


def _export_page(
    request: Request,
    signed: Signed,
    export_id: str,
    run_form: FormState | None = None,
    status: int = 200,
    busy_run: str = "",
) -> Response:
    ctx = context_of(request)
    export = queries.get_export(ctx, signed.actor, export_id)
    return page(
        request,
        "export.html",
        signed,
        status=status,
        title=export.name,
        export=export,
        connection=_connection_name(request, signed, export),
        properties=mapping_text(export.properties),
        runs=queries.recent_runs(ctx, signed.actor, export.id, RUN_HISTORY),
        run_form=run_form or FormState(),
        busy_run=busy_run,
    )


def _connection_name(request: Request, signed: Signed, export: Export) -> str:
    try:
        return queries.get_connection(context_of(request), signed.actor, export.connection_id).name
    except NotFound:
        return export.connection_id


@router.get("/exports/{export_id}")
def export_page(
    request: Request, export_id: str, signed: Annotated[Signed, Depends(signed_in)]
) -> Response:
    return _export_page(request, signed, export_id)


@router.post("/exports/{export_id}/run")
def run_now(
    request: Request,
    export_id: str,
    signed: Annotated[Signed, Depends(posted)],
    source: Annotated[str, Form()] = "",
) -> Response:
    ctx = context_of(request)
    queries.get_export(ctx, signed.actor, export_id)  # hidden: not found
    form = FormState(values={"source": source})
    try:
        opened = open_remote_run(
            ctx,
            signed.actor,
            export_id,
            source=source.strip() or None,
            full=False,
            trigger="console",
        )
    except Exception as exc:
        if not known_error(exc):
            raise
        if isinstance(exc, InvalidInput) and exc.field == "source":
            form.refuse("source", exc.problem, EXPORT_LABELS)
        else:
            form.message = describe(exc).message
        busy = exc.holder if isinstance(exc, ExportBusy) else ""
        return _export_page(request, signed, export_id, form, describe(exc).status, busy)
    if opened.request is not None:
        request.app.state.readers.submit(opened.run_id, opened.request)
    return redirect(f"/runs/{opened.run_id}", done="run_started")


@router.post("/exports/{export_id}/enable")
def enable(
    request: Request, export_id: str, signed: Annotated[Signed, Depends(posted)]
) -> Response:
    return _set_enabled(request, signed, export_id, True)


@router.post("/exports/{export_id}/disable")
def disable(
    request: Request, export_id: str, signed: Annotated[Signed, Depends(posted)]
) -> Response:
    return _set_enabled(request, signed, export_id, False)


def _set_enabled(request: Request, signed: Signed, export_id: str, enabled: bool) -> Response:
    operations.set_enabled(context_of(request), signed.actor, export_id, enabled)
    return redirect(
        f"/exports/{export_id}", done="export_enabled" if enabled else "export_disabled"
    )


@router.get("/exports/{export_id}/remove")
def confirm_remove(
    request: Request, export_id: str, signed: Annotated[Signed, Depends(signed_in)]
) -> Response:
    export = queries.get_export(context_of(request), signed.actor, export_id)
    return page(
        request,
        "confirm.html",
        signed,
        title="Remove an export",
        question=f"Remove export {export.name} (list {export.list_id})?",
        explain="Nothing more of it runs; its unfinished runs are cancelled. "
        "The Klaviyo list keeps its members. This cannot be undone.",
        action=f"/exports/{export.id}/remove",
        button="Remove the export",
        back=f"/exports/{export.id}",
    )


@router.post("/exports/{export_id}/remove")
def remove(
    request: Request, export_id: str, signed: Annotated[Signed, Depends(posted)]
) -> Response:
    operations.remove_export(context_of(request), signed.actor, export_id)
    return redirect("/exports", done="export_removed")
