"""Who is signed in to the console, and whether a form really came from our page.

A session is ``core.sessions``' (in Redis, so any server can answer), named
by the ``kx_session`` cookie: HttpOnly (no script reads it), SameSite=Lax (a
form on another site does not carry it along), Secure when the request came
over https. Every page but the sign-in page needs one: without it the page
answers 303 to ``/signin?next=PATH``.

A POST must also carry the session's CSRF token in the hidden ``csrf`` field,
and when the browser says where the form came from (``Origin``, else
``Referer``) it must be this host: a cross-site form is refused with 403 even
if the browser sent the cookie. The sign-in form has no session yet, so it is
checked by origin only.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated, Final
from urllib.parse import urlencode, urlsplit

from fastapi import Form, Request, Response

from core.actors import Actor
from core.context import Context
from core.sessions import Session, session_for

COOKIE: Final = "kx_session"


class SignInNeeded(Exception):
    """No valid session: the console answers with a redirect to the sign-in page."""

    def __init__(self, next_path: str | None) -> None:
        super().__init__("sign in first")
        self.next_path = next_path

    def location(self) -> str:
        if not self.next_path or self.next_path == "/":
            return "/signin"
        return "/signin?" + urlencode({"next": self.next_path})


class CsrfRefused(Exception):
    """A POST without the session's CSRF token, or from another site: 403."""


@dataclass(frozen=True, slots=True)
class Signed:
    """The signed-in user of one request: the actor the domain checks, and the
    session (its ``csrf`` goes into every form of the page)."""

    session: Session

    @property
    def actor(self) -> Actor:
        return self.session.actor

    @property
    def csrf(self) -> str:
        return self.session.csrf


def context_of(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


def safe_next(value: str | None) -> str:
    """``value`` if it is a path on this site, else ``/``: a sign-in link must
    not send the user on to another site (``//evil.example``, ``https://...``)."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return "/"
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F or ch == "\\" for ch in value):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    return value


def _here(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def signed_in(request: Request) -> Signed:
    """The dependency of every console page: the session, or a redirect to sign in."""
    cookie = request.cookies.get(COOKIE)
    session = session_for(context_of(request).redis, cookie) if cookie else None
    if session is None:
        raise SignInNeeded(_here(request) if request.method == "GET" else None)
    signed = Signed(session)
    request.state.signed = signed  # for the error page's header
    return signed


def same_origin(request: Request) -> bool:
    """Whether ``Origin`` (or else ``Referer``), when the browser sent one, names this host."""
    origin = request.headers.get("origin")
    if origin is None:
        origin = request.headers.get("referer")
        if origin is None:
            return True  # an old browser or a privacy setting: the token still protects
    if origin == "null":
        return False
    parts = urlsplit(origin)
    return bool(parts.scheme) and parts.netloc.lower() == request.url.netloc.lower()


def posted(request: Request, csrf: Annotated[str, Form()] = "") -> Signed:
    """The dependency of every console POST: a session, our own page, its token."""
    signed = signed_in(request)
    if not same_origin(request):
        raise CsrfRefused("the form came from another site")
    if not csrf or not hmac.compare_digest(csrf.encode(), signed.csrf.encode()):
        raise CsrfRefused("the form's security token is missing or out of date")
    return signed


def set_session_cookie(request: Request, response: Response, cookie_value: str) -> None:
    response.set_cookie(
        COOKIE,
        cookie_value,  # no max_age: Redis ends the session (``TTL`` after its last use)
        path="/",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )


def clear_session_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(
        COOKIE, path="/", httponly=True, samesite="lax", secure=request.url.scheme == "https"
    )
