"""Who calls the API: the actor of an ``Authorization: Bearer TOKEN`` header.

``core.credentials.authenticate`` turns a token into the ``Actor`` it acts as
(its user and role, ``via="token t_..."``); what that actor may do is decided
by the domain, never here. Without a live token the answer is 401 with
``WWW-Authenticate: Bearer`` (RFC 6750), the same for a missing, malformed,
unknown or revoked token: the answer does not tell which.
"""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

from core import credentials
from core.actors import Actor
from core.context import Context

REALM: Final = 'Bearer realm="klaviyo-export"'

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="token",
    description="A token from `klaviyo-export token add --role admin|contributor|trigger`.",
)


async def context(request: Request) -> Context:
    """The app's one ``Context``, built at startup and shared by every request.

    ``async``: it reads an attribute, and FastAPI runs a plain ``def``
    dependency in its thread pool, a hop that costs more than the work.
    """
    ctx: Context = request.app.state.ctx
    return ctx


Given = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def current_actor(request: Request, given: Given) -> Actor:
    return actor_for(request.app.state.ctx, given)


def actor_for(ctx: Context, given: HTTPAuthorizationCredentials | None) -> Actor:
    """The token's actor, or 401 (blocking: call it from a worker thread)."""
    if given is None:
        raise HTTPException(
            401, "send `Authorization: Bearer TOKEN`", headers={"WWW-Authenticate": REALM}
        )
    found = credentials.authenticate(ctx.redis, given.credentials)
    if found is None:
        raise HTTPException(
            401,
            "the bearer token is not valid (unknown, revoked or malformed)",
            headers={"WWW-Authenticate": f'{REALM}, error="invalid_token"'},
        )
    return found


CurrentActor = Annotated[Actor, Depends(current_actor)]
AppContext = Annotated[Context, Depends(context)]
