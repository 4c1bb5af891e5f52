"""Every error the HTTP front door answers, in one table, in one shape.

Each answer is ``{"error": {"type", "message", "fields"}}`` with its status:
the domain's errors (``core.errors``), Klaviyo's (``klaviyo_client``), Redis's
and the broker's, FastAPI's own validation errors and Starlette's HTTP errors
(an unknown route is a JSON 404 too). ``describe`` looks an error up by its
class, most specific first, as the CLI's ``frontdoors.cli.output.ANSWERS``
does for exit codes; the console shows the same ``HttpAnswer.message``.

What an answer never holds: an exception's text for an error we did not
expect (it could quote a row, a key, a token: a 500 says ``internal_error``
and a request id, and the log has the class name and the place under that
id), the URL of Redis (it may carry a password), the value a caller sent in a
field that failed validation (it may be an API key).
"""

from __future__ import annotations

import logging
import os
import secrets
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kombu.exceptions import OperationalError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core import errors
from klaviyo_client import FatalError, KlaviyoError

log = logging.getLogger("frontdoors.http")

FIELD_NAMES: Final = {"idempotency_key": "header.Idempotency-Key"}
"""Domain fields a caller sends elsewhere than in the JSON body, named as FastAPI
names the place (``header.NAME``); every other domain field is the body's key."""


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """What the API (and the console) answers for one error."""

    status: int
    type: str
    message: str
    fields: dict[str, list[str]] = field(default_factory=dict)
    detail: Mapping[str, Any] = field(default_factory=dict)  # more keys of the error object

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "type": self.type,
                "message": self.message,
                "fields": self.fields,
                **self.detail,
            }
        }


def json_answer(answer: HttpAnswer, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(answer.body(), status_code=answer.status, headers=dict(headers or {}))


# -- the table ---------------------------------------------------------------------------


def _said(exc: BaseException) -> str:
    return str(exc)


def _fields(exc: BaseException) -> dict[str, list[str]]:
    if isinstance(exc, errors.InvalidRequest):
        return dict(exc.fields)
    if isinstance(exc, errors.InvalidInput) and exc.field:
        return {FIELD_NAMES.get(exc.field, exc.field): [exc.problem]}
    if isinstance(exc, errors.Refused):
        return dict(exc.fields)
    return {}


def _holder(exc: BaseException) -> dict[str, Any]:
    assert isinstance(exc, errors.ExportBusy)
    return {"run_in_progress": exc.holder or None}


def _none(_exc: BaseException) -> dict[str, Any]:
    return {}


def _fixed(message: str) -> Callable[[BaseException], str]:
    return lambda exc: f"{message} ({type(exc).__name__}); try again later"


def _retry_after(exc: BaseException) -> dict[str, Any]:
    assert isinstance(exc, errors.Throttled)
    return {"retry_after": exc.retry_after}


@dataclass(frozen=True, slots=True)
class Entry:
    status: int
    type: str
    message: Callable[[BaseException], str] = _said
    detail: Callable[[BaseException], dict[str, Any]] = _none


TABLE: Final[Mapping[type[BaseException], Entry]] = {
    errors.ExportError: Entry(409, "refused"),  # the state does not allow it (disabled, ...)
    errors.ConfigurationError: Entry(503, "configuration"),
    errors.SecretError: Entry(503, "configuration"),
    errors.NotFound: Entry(404, "not_found"),
    errors.InvalidInput: Entry(422, "invalid_input"),
    errors.InvalidRequest: Entry(422, "invalid_input"),
    errors.Forbidden: Entry(403, "forbidden"),
    errors.SourceError: Entry(422, "source_error"),
    errors.ExportBusy: Entry(409, "busy", detail=_holder),
    errors.Unavailable: Entry(503, "unavailable"),
    errors.Throttled: Entry(429, "throttled", detail=_retry_after),
    errors.Refused: Entry(422, "refused"),
    FatalError: Entry(422, "klaviyo_refused"),
    KlaviyoError: Entry(503, "klaviyo_unavailable"),
    redis.ConnectionError: Entry(503, "redis_unavailable", _fixed("the store cannot be reached")),
    redis.TimeoutError: Entry(503, "redis_unavailable", _fixed("the store cannot be reached")),
    redis.RedisError: Entry(503, "redis_refused", _fixed("the store refused the command")),
    OperationalError: Entry(503, "broker_unavailable", _fixed("the broker cannot be reached")),
}
"""Every error a caller can meet; anything else is ``internal_error`` (a bug)."""


def new_request_id() -> str:
    return secrets.token_hex(8)


def describe(exc: BaseException, *, request_id: str | None = None) -> HttpAnswer:
    """The answer to ``exc``: its entry in ``TABLE``, else a 500 that says nothing of it."""
    for cls in type(exc).__mro__:
        entry = TABLE.get(cls)
        if entry is not None:
            return HttpAnswer(
                entry.status, entry.type, entry.message(exc), _fields(exc), entry.detail(exc)
            )
    request_id = request_id or new_request_id()
    return HttpAnswer(
        500,
        "internal_error",
        f"internal error (request id {request_id}): the server's log has it under this id",
        detail={"request_id": request_id},
    )


def log_internal(exc: BaseException, request_id: str) -> None:
    """The class and the place, never the message (it could quote data)."""
    frames = traceback.extract_tb(exc.__traceback__)
    place = f"{os.path.basename(frames[-1].filename)}:{frames[-1].lineno}" if frames else "?"
    log.error("request %s: internal error %s at %s", request_id, type(exc).__name__, place)


# -- FastAPI's and Starlette's own errors --------------------------------------------------

HTTP_TYPES: Final = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
}


def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    message = exc.detail if isinstance(exc.detail, str) else "request refused"
    if exc.status_code == 404 and message == "Not Found":
        message = "no such resource or endpoint"
    answer = HttpAnswer(exc.status_code, HTTP_TYPES.get(exc.status_code, "http_error"), message)
    return json_answer(answer, exc.headers)


def validation_fields(problems: list[Any]) -> dict[str, list[str]]:
    """FastAPI's errors as ``{field path: [messages]}``: a body field by its JSON path
    (``properties.Tier``), a query, path or header one by its place (``query.limit``).
    The value sent is left out: it may be a secret."""
    found: dict[str, list[str]] = {}
    for problem in problems:
        loc = [str(part) for part in problem.get("loc", ())]
        if problem.get("type") == "json_invalid":
            loc = ["body"]  # its loc is the character where the JSON broke off
        elif loc and loc[0] == "body":
            loc = loc[1:] or ["body"]
        found.setdefault(".".join(loc) or "request", []).append(str(problem.get("msg", "")))
    return found


def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    fields = validation_fields(list(exc.errors()))
    named = "; ".join(f"{name}: {' '.join(msgs)}" for name, msgs in fields.items())
    return json_answer(HttpAnswer(422, "invalid_input", f"invalid request: {named}", fields))


def install(app: FastAPI) -> None:
    """Our shape for FastAPI's errors; ``ErrorAnswers`` answers everything else."""
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_middleware(ErrorAnswers)


class ErrorAnswers:
    """ASGI middleware: an error an endpoint raised becomes its ``describe`` answer.

    A middleware rather than an exception handler for ``Exception``: Starlette
    runs that handler and raises the error again for the server to log, with
    its message. Here an unexpected error is logged once, as ``log_internal``
    says, and not raised further. An error after the answer began (a CSV
    stream) can only end the connection: the client sees a cut answer.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:  # noqa: BLE001 - every error is answered or logged here
            request_id = new_request_id()
            answer = describe(exc, request_id=request_id)
            if answer.status == 500:
                log_internal(exc, request_id)
            elif started:
                log.warning("request %s: answer cut short by %s", request_id, type(exc).__name__)
            if started:
                return
            headers = {"X-Request-Id": request_id} if answer.status == 500 else {}
            await json_answer(answer, headers)(scope, receive, send)
