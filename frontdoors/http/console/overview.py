"""The overview (``/``) and the audit log (``/audit``): reads only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from core import queries
from frontdoors.http.console.rendering import ConsoleRoute, page
from frontdoors.http.console.session import Signed, context_of, signed_in

router = APIRouter(route_class=ConsoleRoute)

DASHBOARD_ITEMS = 10
AUDIT_ITEMS = 100


@router.get("/")
def dashboard(request: Request, signed: Annotated[Signed, Depends(signed_in)]) -> Response:
    ctx = context_of(request)
    return page(
        request,
        "dashboard.html",
        signed,
        title="Overview",
        connections=queries.list_connections(ctx, signed.actor),
        exports=queries.list_exports(ctx, signed.actor)[:DASHBOARD_ITEMS],
        runs=queries.recent_runs(ctx, signed.actor, None, DASHBOARD_ITEMS),
    )


@router.get("/audit")
def audit_log(
    request: Request,
    signed: Annotated[Signed, Depends(signed_in)],
    limit: str = "100",
) -> Response:
    shown = int(limit) if limit.isdigit() else AUDIT_ITEMS
    entries = queries.audit_entries(context_of(request), signed.actor, max(1, min(shown, 1000)))
    return page(request, "audit.html", signed, title="Audit log", entries=entries)
