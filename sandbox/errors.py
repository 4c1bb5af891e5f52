"""JSON:API error answers, shaped like the ones Klaviyo sends.

Klaviyo's API is built on Django REST Framework and its error bodies keep
DRF's wording: ``"Authentication credentials were not provided."``,
``"Incorrect authentication credentials."``, ``"You do not have permission to
perform this action."`` and ``"Request was throttled. Expected available in 1
second."`` (singular for one second, as in a real 429 body seen in
klaviyo-api-node#66). Each error object carries ``id`` (a UUID), ``status``
(an integer, as real answers do although the spec does not list it),
``code``, ``title``, ``detail``, ``source`` (``pointer`` for body problems,
``parameter`` for query or header problems) and an empty ``meta``.

Handlers raise :class:`ApiError`; the server turns it into an answer. The
builders below exist so that every place that refuses a request uses the same
codes and titles. No builder ever puts an API key into a message.
"""

from __future__ import annotations

import uuid
from typing import Any


class ApiError(Exception):
    """A refusal that becomes one JSON:API error answer."""

    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        detail: str,
        *,
        pointer: str | None = None,
        parameter: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.pointer = pointer
        self.parameter = parameter
        self.headers = headers or {}

    def error_object(self) -> dict[str, Any]:
        """The single entry of the ``errors`` array."""
        source: dict[str, str] = {}
        if self.parameter is not None:
            source["parameter"] = self.parameter
        else:
            source["pointer"] = self.pointer if self.pointer is not None else "/data/"
        return {
            "id": str(uuid.uuid4()),
            "status": self.status,
            "code": self.code,
            "title": self.title,
            "detail": self.detail,
            "source": source,
            "meta": {},
        }

    def body(self) -> dict[str, Any]:
        """The whole JSON:API error document."""
        return {"errors": [self.error_object()]}


def invalid_pointer(detail: str, pointer: str) -> ApiError:
    """A 400 about the request body."""
    return ApiError(400, "invalid", "Invalid input.", detail, pointer=pointer)


def invalid_parameter(detail: str, parameter: str) -> ApiError:
    """A 400 about a query parameter or header."""
    return ApiError(400, "invalid", "Invalid input.", detail, parameter=parameter)


def parse_error(detail: str) -> ApiError:
    """A 400 for a body that is not JSON at all (DRF's ``ParseError``)."""
    return ApiError(400, "parse_error", "Malformed request.", detail, pointer="/data/")


def not_authenticated() -> ApiError:
    return ApiError(
        401,
        "not_authenticated",
        "Authentication credentials were not provided.",
        "Missing or invalid authorization scheme. Please use Klaviyo-API-Key.",
    )


def authentication_failed() -> ApiError:
    return ApiError(
        401,
        "authentication_failed",
        "Incorrect authentication credentials.",
        "Incorrect authentication credentials.",
    )


def permission_denied() -> ApiError:
    return ApiError(
        403,
        "permission_denied",
        "You do not have permission to perform this action.",
        "You do not have permission to perform this action.",
    )


def not_found(detail: str = "Not found.") -> ApiError:
    return ApiError(404, "not_found", "Not found.", detail)


def method_not_allowed(method: str) -> ApiError:
    return ApiError(
        405, "method_not_allowed", "Method not allowed.", f'Method "{method}" not allowed.'
    )


def payload_too_large(limit_bytes: int) -> ApiError:
    return ApiError(
        413,
        "payload_too_large",
        "Payload too large.",
        f"The request payload exceeds the maximum allowed size of {limit_bytes} bytes.",
    )


def unsupported_media_type(media_type: str) -> ApiError:
    return ApiError(
        415,
        "unsupported_media_type",
        "Unsupported media type.",
        f'Unsupported media type "{media_type}" in request.',
    )


def throttled(wait_seconds: int) -> ApiError:
    unit = "second" if wait_seconds == 1 else "seconds"
    return ApiError(
        429,
        "throttled",
        "Request was throttled.",
        f"Request was throttled. Expected available in {wait_seconds} {unit}.",
        headers={"Retry-After": str(wait_seconds)},
    )


def server_error(status: int) -> ApiError:
    """A 5xx answer the fault injector sends in place of the real one."""
    if status == 503:
        return ApiError(
            503,
            "service_unavailable",
            "Service unavailable.",
            "Service temporarily unavailable, try again later.",
        )
    return ApiError(status, "error", "A server error occurred.", "A server error occurred.")
