"""Signing in and out of the console.

Sign in with a console user's password (``core.credentials.check_password``)
or with a person's API token (``core.credentials.authenticate``); a trigger
token is an upstream system's and is refused with a sentence saying so. A
wrong name, password or token gets one sentence that does not tell which part
was wrong. The password and the token are never written back into the form.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, Response

from core.actors import Actor
from core.credentials import authenticate, check_password
from core.errors import Forbidden, Throttled
from core.sessions import close_session, open_session, session_for
from frontdoors.http.console.forms import FormState
from frontdoors.http.console.rendering import ConsoleRoute, error_page, page, redirect
from frontdoors.http.console.session import (
    COOKIE,
    Signed,
    clear_session_cookie,
    context_of,
    posted,
    safe_next,
    same_origin,
    set_session_cookie,
)

router = APIRouter(route_class=ConsoleRoute)

WRONG_PASSWORD = "The user name or the password is wrong."  # noqa: S105 - a message
WRONG_TOKEN = "That token is not a valid token (or it was revoked)."  # noqa: S105 - a message
TRIGGER = (
    "That is a trigger token: it lets an upstream system start runs over the API, "
    "and cannot sign in to the console. Sign in with your own password or token."
)


def _form(request: Request, form: FormState, next_path: str, status: int) -> Response:
    return page(
        request, "signin.html", None, status=status, title="Sign in", form=form, next=next_path
    )


@router.get("/signin")
def signin_page(request: Request, next: str = "/") -> Response:
    cookie = request.cookies.get(COOKIE)
    if cookie and session_for(context_of(request).redis, cookie) is not None:
        return redirect(safe_next(next))
    return _form(request, FormState(), safe_next(next), 200)


@router.post("/signin")
def signin(
    request: Request,
    user: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    next_path = safe_next(next)
    if not same_origin(request):
        return error_page(request, 403, "Refused: the sign-in form came from another site.")
    redis = context_of(request).redis
    form = FormState(values={"user": user})
    actor: Actor | None
    if token.strip():
        actor = authenticate(redis, token.strip())
        if actor is None:
            form.errors["token"] = WRONG_TOKEN
            form.message = WRONG_TOKEN
            return _form(request, form, next_path, 401)
    else:
        try:
            address = request.client.host if request.client else ""
            actor = check_password(redis, user.strip(), password, address)
        except Throttled as exc:
            form.message = (
                f"Too many wrong passwords for this user: try again in {exc.retry_after} s."
            )
            return _form(request, form, next_path, 429)
        if actor is None:
            form.errors["password"] = WRONG_PASSWORD
            form.message = WRONG_PASSWORD
            return _form(request, form, next_path, 401)
    if actor.is_trigger:
        form.errors["token"] = TRIGGER
        form.message = TRIGGER
        return _form(request, form, next_path, 403)
    earlier = request.cookies.get(COOKIE)
    if earlier:
        close_session(redis, earlier)  # a new sign-in never keeps an old session id
    try:
        cookie_value, _session = open_session(redis, actor)
    except Forbidden as exc:
        form.message = str(exc)
        return _form(request, form, next_path, 403)
    response = redirect(next_path)
    set_session_cookie(request, response, cookie_value)
    return response


@router.post("/signout")
def signout(request: Request, signed: Annotated[Signed, Depends(posted)]) -> Response:
    cookie = request.cookies.get(COOKIE)
    if cookie:
        close_session(context_of(request).redis, cookie)
    response = redirect("/signin", done="signed_out")
    clear_session_cookie(request, response)
    return response
