"""What can go wrong talking to Klaviyo, sorted by what the caller should do.

The taxonomy follows the Singer SDK's: a *retriable* error may succeed if the
same request is sent again later, a *fatal* one never will. Throttling is a
retriable error that carries the server's own wait (``Retry-After``).

    KlaviyoError
    ├── RetriableError          5xx, resets, timeouts, Cloudflare HTML pages
    │   └── ThrottledError      429, with ``retry_after`` seconds or None
    └── FatalError              4xx other than 429, with the JSON:API details
        ├── BadRequestError     400 (and 405/409/413/415/422…)
        ├── AuthenticationError 401: the key is wrong
        ├── PermissionDeniedError 403: the key lacks a scope
        └── NotFoundError       404: the list or job does not exist

No message, repr or attribute of these errors holds the API key or a response
body beyond Klaviyo's own error fields (code, title, detail, source), which
never contain the key.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ErrorDetail:
    """One item of a JSON:API ``errors`` array."""

    code: str
    title: str
    detail: str
    pointer: str | None = None
    parameter: str | None = None

    def __str__(self) -> str:
        where = self.pointer or self.parameter
        text = f"{self.code}: {self.detail or self.title}"
        # "/data/" (Klaviyo's pointer on a 401 or 403) names the whole document: noise.
        return f"{text} (at {where})" if where and where.strip("/") != "data" else text


class KlaviyoError(Exception):
    """Base of every error the client raises."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        operation: str | None = None,
        errors: tuple[ErrorDetail, ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.operation = operation
        self.errors = errors

    @property
    def code(self) -> str | None:
        """Klaviyo's error code of the first error item, if any."""
        return self.errors[0].code if self.errors else None

    def __str__(self) -> str:
        prefix = f"{self.operation}: " if self.operation else ""
        status = f"HTTP {self.status}: " if self.status is not None else ""
        return f"{prefix}{status}{self.message}"


class RetriableError(KlaviyoError):
    """The request may succeed later: a 5xx, a reset, a timeout, an HTML page."""


class ThrottledError(RetriableError):
    """Klaviyo answered 429; ``retry_after`` is its wait in seconds, or None."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None,
        status: int | None = 429,
        operation: str | None = None,
        errors: tuple[ErrorDetail, ...] = (),
    ) -> None:
        super().__init__(message, status=status, operation=operation, errors=errors)
        self.retry_after = retry_after


class FatalError(KlaviyoError):
    """The same request will never succeed: fix the input, key or list."""


class BadRequestError(FatalError):
    """400 or another 4xx: the request itself is wrong (see ``errors``)."""


class AuthenticationError(FatalError):
    """401: the API key is not a valid Klaviyo private key."""


class PermissionDeniedError(FatalError):
    """403 with a JSON body: the key is valid but lacks a scope."""


class NotFoundError(FatalError):
    """404: the list, job or other resource does not exist."""
