"""Connections: the list, adding one (admins), verifying its key, accepting its
terms (admins) and removing it with its exports (admins, after a confirmation).

A contributor sees only the connections ``core.queries`` shows them; one they
may not see is "not found", on every page and action, by its URL too. The API
key is write-only: the add form's key field is never filled in, not even
after an error, and no page shows a key.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, Response

from core import operations, queries
from core.records import Connection
from frontdoors.http.console.forms import CONNECTION_LABELS, CONSENT, FormState
from frontdoors.http.console.rendering import ConsoleRoute, known_error, page, redirect
from frontdoors.http.console.session import Signed, context_of, posted, signed_in
from frontdoors.http.errors import describe

router = APIRouter(route_class=ConsoleRoute)

ALLOW_CHOICES = (("admins", "Admins only"), ("contributors", "Admins and contributors"))


def _list_page(request: Request, signed: Signed, form: FormState, status: int = 200) -> Response:
    connections = queries.list_connections(context_of(request), signed.actor)
    return page(
        request,
        "connections.html",
        signed,
        status=status,
        title="Connections",
        connections=connections,
        form=form,
        allow_choices=ALLOW_CHOICES,
        allow_text=dict(ALLOW_CHOICES),
        consent=CONSENT,
    )


@router.get("/connections")
def connections_page(request: Request, signed: Annotated[Signed, Depends(signed_in)]) -> Response:
    return _list_page(request, signed, FormState())


@router.post("/connections")
def add_connection(
    request: Request,
    signed: Annotated[Signed, Depends(posted)],
    name: Annotated[str, Form()] = "",
    allow: Annotated[str, Form()] = "admins",
    api_key: Annotated[str, Form()] = "",
    accept_terms: Annotated[str, Form()] = "",
) -> Response:
    form = FormState(values={"name": name, "allow": allow})  # never the key
    if not name.strip():
        form.refuse("name", "a connection needs a display name", CONNECTION_LABELS)
    if not api_key.strip():
        form.refuse("api_key", "enter the account's private API key", CONNECTION_LABELS)
    if accept_terms != "on":
        consent_needed = "a connection is saved only with this consent given"
        form.refuse("accept_terms", consent_needed, CONNECTION_LABELS)
    if form.errors:
        return _list_page(request, signed, form, 422)
    try:
        connection = operations.add_connection(
            context_of(request),
            signed.actor,
            name=name.strip(),
            api_key=api_key.strip(),
            allow=allow,
            accept_privacy_terms=True,
        )
    except Exception as exc:
        if not known_error(exc):
            raise
        form.failed(exc, CONNECTION_LABELS)
        return _list_page(request, signed, form, describe(exc).status)
    return redirect(f"/connections/{connection.id}", done="connection_added")


def _exports_of(request: Request, signed: Signed, connection: Connection) -> list[object]:
    exports = queries.list_exports(context_of(request), signed.actor)
    return [e for e in exports if e.connection_id == connection.id]


def _connection_page(
    request: Request, signed: Signed, connection_id: str, problem: str = "", status: int = 200
) -> Response:
    connection = queries.get_connection(context_of(request), signed.actor, connection_id)
    return page(
        request,
        "connection.html",
        signed,
        status=status,
        title=connection.name,
        connection=connection,
        exports=_exports_of(request, signed, connection),
        allow_text=dict(ALLOW_CHOICES),
        problem=problem,
    )


@router.get("/connections/{connection_id}")
def connection_page(
    request: Request, connection_id: str, signed: Annotated[Signed, Depends(signed_in)]
) -> Response:
    return _connection_page(request, signed, connection_id)


@router.post("/connections/{connection_id}/verify")
def verify(
    request: Request, connection_id: str, signed: Annotated[Signed, Depends(posted)]
) -> Response:
    ctx = context_of(request)
    queries.get_connection(ctx, signed.actor, connection_id)  # hidden: not found
    try:
        operations.verify_connection(ctx, signed.actor, connection_id)
    except Exception as exc:
        if not known_error(exc):
            raise
        answer = describe(exc)
        return _connection_page(request, signed, connection_id, answer.message, answer.status)
    return redirect(f"/connections/{connection_id}", done="connection_verified")


@router.post("/connections/{connection_id}/accept-terms")
def accept_terms(
    request: Request, connection_id: str, signed: Annotated[Signed, Depends(posted)]
) -> Response:
    operations.accept_terms(context_of(request), signed.actor, connection_id)
    return redirect(f"/connections/{connection_id}", done="terms_accepted")


@router.get("/connections/{connection_id}/remove")
def confirm_remove(
    request: Request, connection_id: str, signed: Annotated[Signed, Depends(signed_in)]
) -> Response:
    connection = queries.get_connection(context_of(request), signed.actor, connection_id)
    count = len(_exports_of(request, signed, connection))
    return page(
        request,
        "confirm.html",
        signed,
        title="Remove a connection",
        question=f"Remove connection {connection.name} and its {count} "
        f"export{'' if count == 1 else 's'}?",
        explain="Their unfinished runs are cancelled. This cannot be undone.",
        action=f"/connections/{connection.id}/remove",
        button="Remove the connection",
        back=f"/connections/{connection.id}",
    )


@router.post("/connections/{connection_id}/remove")
def remove(
    request: Request, connection_id: str, signed: Annotated[Signed, Depends(posted)]
) -> Response:
    operations.remove_connection(context_of(request), signed.actor, connection_id)
    return redirect("/connections", done="connection_removed")
