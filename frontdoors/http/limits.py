"""Request bodies have a size limit, enforced before they are read.

An API body is a connection, an export or a run's options: a few hundred
bytes, so 64 KiB is generous; a console form at most 1 MiB. A body over the
limit is refused with 413 from its ``Content-Length`` before a byte of it is
read, and a body without one (chunked) is counted as it streams in and
refused as soon as it passes the limit: a client cannot make the server hold
a large body in memory either way.
"""

from __future__ import annotations

from typing import Final

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from frontdoors.http.errors import HttpAnswer, json_answer

API_BODY_LIMIT: Final = 64 * 1024
FORM_BODY_LIMIT: Final = 1024 * 1024
API_PREFIX: Final = "/api/"


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once a streamed body passes the limit: FastAPI lets an
    ``HTTPException`` out of its body parsing unchanged, so it becomes our 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, _message(limit))


def _message(limit: int) -> str:
    return f"the request body is over the limit of {limit // 1024} KiB"


def limit_for(path: str) -> int:
    return API_BODY_LIMIT if path.startswith(API_PREFIX) else FORM_BODY_LIMIT


class BodyLimit:
    """ASGI middleware: 413 for a body over ``limit_for(path)``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = limit_for(scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await json_answer(HttpAnswer(413, "too_large", _message(limit)))(scope, receive, send)
            return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watch(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watch)
        except BodyTooLarge:
            if started:
                raise
            await json_answer(HttpAnswer(413, "too_large", _message(limit)))(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    """The declared length; an unreadable one counts as too large (refused)."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 1 << 62
    return None
