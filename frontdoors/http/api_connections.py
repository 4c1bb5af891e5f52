"""``/api/v1/connections``: the Klaviyo accounts exports send to.

Each endpoint calls the function the CLI calls (``core.queries`` to read,
``core.operations`` to change), which checks the actor's role and writes the
audit log. A connection's API key goes in (add, rotate-key) and never comes
out. The reference product asks for consent to the data-privacy terms to add
a connection, so the API refuses an add without ``accept_privacy_terms: true``
(``ConnectionIn``); ``accept-terms`` is there for a connection added without
(from the CLI).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import APIRouter, Path, Response
from pydantic import SecretStr

from core import operations, queries
from core.errors import InvalidInput
from core.records import Connection
from frontdoors.http.auth import AppContext, CurrentActor
from frontdoors.http.models import (
    ERROR_RESPONSES,
    ID_PATTERN,
    ConnectionIn,
    ConnectionList,
    ConnectionOut,
    ConnectionRemoved,
    KeyIn,
    created,
)
from klaviyo_client import AuthenticationError, PermissionDeniedError

router = APIRouter(prefix="/connections", tags=["connections"], responses=ERROR_RESPONSES)
ConnectionId = Annotated[str, Path(pattern=ID_PATTERN)]


def shown(connection: Connection) -> ConnectionOut:
    return ConnectionOut(**connection.public(), privacy_terms_accepted=connection.terms_accepted)


def _key(secret: SecretStr) -> str:
    """The key as the domain takes it (only here is it read out of its ``SecretStr``)."""
    return secret.get_secret_value()


@contextmanager
def _key_checked() -> Iterator[None]:
    """Klaviyo refusing a key the caller sent is the fault of the ``api_key`` field."""
    try:
        yield
    except (AuthenticationError, PermissionDeniedError) as exc:
        raise InvalidInput(
            f"Klaviyo refused the key (HTTP {exc.status}): {exc.message}", field="api_key"
        ) from None


@router.get("", response_model=ConnectionList)
def list_connections(ctx: AppContext, actor: CurrentActor) -> ConnectionList:
    """The connections the actor may see (contributors: those allowed to contributors)."""
    return ConnectionList(connections=[shown(c) for c in queries.list_connections(ctx, actor)])


@router.post("", status_code=201, response_model=ConnectionOut, responses=created("connection"))
def add_connection(
    body: ConnectionIn, ctx: AppContext, actor: CurrentActor, response: Response
) -> ConnectionOut:
    """Add a connection (admins): the key is checked with Klaviyo, then stored encrypted."""
    with _key_checked():
        connection = operations.add_connection(
            ctx,
            actor,
            name=body.name,
            api_key=_key(body.api_key),
            allow=body.allow,
            accept_privacy_terms=body.accept_privacy_terms,
            contract_cap=body.contract_cap,
        )
    response.headers["Location"] = f"/api/v1/connections/{connection.id}"
    return shown(connection)


@router.get("/{connection_id}", response_model=ConnectionOut)
def get_connection(
    connection_id: ConnectionId, ctx: AppContext, actor: CurrentActor
) -> ConnectionOut:
    return shown(queries.get_connection(ctx, actor, connection_id))


@router.post("/{connection_id}/verify", response_model=ConnectionOut)
def verify_connection(
    connection_id: ConnectionId, ctx: AppContext, actor: CurrentActor
) -> ConnectionOut:
    """Check the stored key with Klaviyo again."""
    return shown(operations.verify_connection(ctx, actor, connection_id))


@router.post("/{connection_id}/accept-terms", response_model=ConnectionOut)
def accept_terms(
    connection_id: ConnectionId, ctx: AppContext, actor: CurrentActor
) -> ConnectionOut:
    """Accept the connection's data-privacy terms (admins)."""
    return shown(operations.accept_terms(ctx, actor, connection_id))


@router.post("/{connection_id}/rotate-key", response_model=ConnectionOut)
def rotate_key(
    connection_id: ConnectionId, body: KeyIn, ctx: AppContext, actor: CurrentActor
) -> ConnectionOut:
    """Replace the key with a new one for the same Klaviyo account (admins)."""
    with _key_checked():
        connection = operations.rotate_key(ctx, actor, connection_id, _key(body.api_key))
    return shown(connection)


@router.delete("/{connection_id}", response_model=ConnectionRemoved)
def remove_connection(
    connection_id: ConnectionId, ctx: AppContext, actor: CurrentActor
) -> ConnectionRemoved:
    """Remove a connection and its exports (admins); their unfinished runs are cancelled."""
    removed = operations.remove_connection(ctx, actor, connection_id)
    return ConnectionRemoved(id=connection_id, exports_removed=removed)
