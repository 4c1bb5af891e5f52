"""Turn an HTTP answer or a transport failure into the right typed error.

Rules (see ../shared/reference/klaviyo-api.md §1.6, §4):
- 2xx is success.
- A body that is not JSON (Cloudflare's HTML pages, a proxy's text) is
  retriable whatever its status: Klaviyo's own errors are always JSON:API.
- 429 is throttling. The wait comes from ``Retry-After`` (seconds), or from the
  detail "Expected available in N seconds" that older answers carried instead.
- Other 5xx are retriable; 401, 403, 404 and every other 4xx are fatal.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Final
from urllib.parse import urlsplit

import requests

from klaviyo_client.errors import (
    AuthenticationError,
    BadRequestError,
    ErrorDetail,
    FatalError,
    KlaviyoError,
    NotFoundError,
    PermissionDeniedError,
    RetriableError,
    ThrottledError,
)

_EXPECTED_IN = re.compile(r"available in (\d+(?:\.\d+)?) second")
_FATAL_BY_STATUS: dict[int, type[FatalError]] = {
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
}


def parse_error_details(body: Any) -> tuple[ErrorDetail, ...]:
    """Read the JSON:API ``errors`` array; tolerate anything malformed."""
    if not isinstance(body, dict) or not isinstance(body.get("errors"), list):
        return ()
    details = []
    for item in body["errors"]:
        if not isinstance(item, dict):
            continue
        raw_source = item.get("source")
        source: dict[str, Any] = raw_source if isinstance(raw_source, dict) else {}
        details.append(
            ErrorDetail(
                code=str(item.get("code") or ""),
                title=str(item.get("title") or ""),
                detail=str(item.get("detail") or ""),
                pointer=source.get("pointer"),
                parameter=source.get("parameter"),
            )
        )
    return tuple(details)


MAX_RETRY_AFTER: Final = 3600.0
"""A longer (or non-finite) wait is taken as this: Klaviyo's windows are a minute."""


def parse_retry_after(value: str | None, details: tuple[ErrorDetail, ...] = ()) -> float | None:
    """Seconds to wait from ``Retry-After``, else from the throttled detail."""
    if value:
        try:
            return _bounded(float(value.strip()))
        except ValueError:
            pass  # an HTTP-date: Klaviyo documents integers only, fall through
    for detail in details:
        match = _EXPECTED_IN.search(detail.detail)
        if match:
            return _bounded(float(match.group(1)))
    return None


def _bounded(seconds: float) -> float:
    if not math.isfinite(seconds):
        return MAX_RETRY_AFTER
    return min(MAX_RETRY_AFTER, max(0.0, seconds))


def _json_body(response: requests.Response) -> Any | None:
    content_type = response.headers.get("Content-Type", "")
    if "json" not in content_type:
        return None
    try:
        return response.json()
    except (ValueError, json.JSONDecodeError):
        return None


def error_for_response(response: requests.Response, operation: str) -> KlaviyoError | None:
    """The typed error for a non-2xx answer, or None for success."""
    status = response.status_code
    if 200 <= status < 300:
        return None
    body = _json_body(response)
    if body is None:
        kind = (
            "HTML page" if "html" in response.headers.get("Content-Type", "") else "non-JSON body"
        )
        mitigated = " (cf-mitigated)" if response.headers.get("cf-mitigated") else ""
        return RetriableError(
            f"unexpected {kind}{mitigated}; treated as transient",
            status=status,
            operation=operation,
        )
    details = parse_error_details(body)
    summary = "; ".join(str(d) for d in details) or response.reason or "error"
    if status == 429:
        return ThrottledError(
            summary,
            retry_after=parse_retry_after(response.headers.get("Retry-After"), details),
            status=status,
            operation=operation,
            errors=details,
        )
    if status >= 500:
        return RetriableError(summary, status=status, operation=operation, errors=details)
    fatal = _FATAL_BY_STATUS.get(status, BadRequestError)
    return fatal(summary, status=status, operation=operation, errors=details)


def error_for_exception(
    exc: requests.RequestException, operation: str, url: str = ""
) -> RetriableError:
    """A transport failure (reset, timeout, broken stream) as a retriable error.

    The message names the host (and port) it failed to reach and the
    exception's class, never requests' own message: that can hold the full
    URL, and lookups by email put emails in the query string.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host and parts.port:
        host = f"{host}:{parts.port}"
    where = f" reaching {parts.scheme}://{host}" if host else ""
    return RetriableError(f"transport failure{where}: {type(exc).__name__}", operation=operation)
