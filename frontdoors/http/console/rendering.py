"""How console pages are rendered, and how an error becomes a page.

Templates are Jinja2 with autoescape always on (names of users, connections
and exports are user input) and ``StrictUndefined`` (a template naming a value
the page did not pass fails its test instead of showing nothing).

``ConsoleRoute`` is the route class of every console page: a missing session
becomes a redirect to sign in, a refused form (CSRF) a 403 page, and an error
the page did not handle itself a page with one sentence from
``frontdoors.http.errors.describe`` and its status. An error we did not expect
says only that it happened and a request id, as the API's 500 does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, Final

import jinja2
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException

from frontdoors.http.console.session import CsrfRefused, Signed, SignInNeeded
from frontdoors.http.errors import describe, log_internal, new_request_id

TEMPLATES_DIR: Final = Path(__file__).parent / "templates"
STATIC_DIR: Final = Path(__file__).parent / "static"

NOTICES: Final = {
    "signed_out": "You are signed out.",
    "connection_added": "Connection saved: Klaviyo accepted the key.",
    "connection_verified": "Klaviyo accepted the connection's key.",
    "terms_accepted": "The data-privacy terms are accepted: exports may use this connection.",
    "connection_removed": "Connection removed, with its exports.",
    "export_added": (
        "Export saved. Saving does not run it: it runs on its schedule, or when you choose Run now."
    ),
    "export_enabled": "Export enabled: it runs on its schedule and when asked.",
    "export_disabled": "Export disabled: it does not run until it is enabled again.",
    "export_removed": "Export removed: nothing more of it runs.",
    "run_started": "Run started.",
    "run_approved": "Removals approved: they are being sent.",
    "run_rejected": "Removals rejected: the list keeps every member.",
    "run_resumed": "Run resumed: its unfinished batches are sent again.",
}
"""What a page says after a change (``?done=CODE``): fixed sentences, so that
nothing a link carries is shown on the page."""


PAGE_HEADERS: Final = {
    # A page holds the session's CSRF token and what the user may see: not kept
    # in caches, where the back button after signing out would show it again.
    "Cache-Control": "no-store",
    # Our files only, and never inside another site's frame (a hidden frame over
    # "Approve the removals" is a click the user did not mean).
    "Content-Security-Policy": (
        "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}

ERROR_TITLES: Final = {403: "Not allowed", 404: "Not found", 409: "Not now"}


def _when(value: float | None) -> str:
    if not value:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(value))


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 60:
        return f"{value:.1f} s"
    minutes, seconds = divmod(int(value), 60)
    return f"{minutes} min {seconds} s"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["seconds"] = _seconds
    env.filters["n"] = lambda value: f"{int(value):,}"  # 18,857: counts read at a glance
    return env


templates: Final = Jinja2Templates(env=_environment())


def page(
    request: Request,
    template: str,
    signed: Signed | None,
    *,
    status: int = 200,
    title: str,
    **values: Any,
) -> Response:
    """A console page: ``template`` in the layout, with the user's name, the
    CSRF token for its forms, and the notice a redirect asked for."""
    done = request.query_params.get("done", "")
    context = {
        "title": title,
        "signed": signed,
        "actor": signed.actor if signed else None,
        "csrf": signed.csrf if signed else "",
        "notice": NOTICES.get(done, ""),
        "path": request.url.path,
        **values,
    }
    response = templates.TemplateResponse(request, template, context, status_code=status)
    response.headers.update(PAGE_HEADERS)
    return response


def redirect(location: str, done: str | None = None) -> RedirectResponse:
    """303 (a POST's answer: the browser GETs the next page)."""
    if done:
        location += ("&" if "?" in location else "?") + f"done={done}"
    return RedirectResponse(location, status_code=303)


def error_page(request: Request, status: int, message: str) -> Response:
    signed = getattr(request.state, "signed", None)
    return page(
        request,
        "error.html",
        signed if isinstance(signed, Signed) else None,
        status=status,
        title=ERROR_TITLES.get(status, "Refused" if status < 500 else "Something went wrong"),
        message=message,
    )


def error_answer(request: Request, exc: BaseException) -> Response:
    """The page for an error a page did not handle: its one sentence and status."""
    request_id = new_request_id()
    answer = describe(exc, request_id=request_id)
    if answer.status == 500:
        log_internal(exc, request_id)
    return error_page(request, answer.status, answer.message)


Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class ConsoleRoute(APIRoute):
    """Every console route: sign-in redirects, CSRF refusals, errors as pages."""

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInNeeded as exc:
                return RedirectResponse(exc.location(), status_code=303)
            except CsrfRefused as exc:
                return error_page(
                    request,
                    403,
                    f"Refused: {exc}. Go back, reload the page and send the form again.",
                )
            except (HTTPException, RequestValidationError):
                raise
            except Exception as exc:  # noqa: BLE001 - every other error is answered as a page
                return error_answer(request, exc)

        return handle


def known_error(exc: BaseException) -> bool:
    """An error ``describe`` has a sentence for (a form shows it and keeps its values)."""
    return describe(exc).status != 500


def mapping_text(values: Mapping[str, str]) -> str:
    """Properties as the form's lines: ``column`` or ``column:name``."""
    return "\n".join(c if n == c else f"{c}:{n}" for c, n in values.items())
