"""The client turns every kind of answer into the right typed error, key-free."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from klaviyo_client import (
    AuthenticationError,
    BadRequestError,
    ClientSettings,
    KlaviyoClient,
    NotFoundError,
    PermissionDeniedError,
    RetriableError,
    ThrottledError,
)
from tests.support.scripted_http import Answer, ScriptedServer

KEY = "pk_abcdefghijklmnopqrstuvwxyz01234567"


def _errors(status: int, code: str, detail: str, **source: str) -> Answer:
    item = {"id": "x", "status": status, "code": code, "title": code, "detail": detail}
    if source:
        item["source"] = source
    return Answer(status=status, body={"errors": [item]})


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as srv:
        yield srv


@pytest.fixture
def client(server: ScriptedServer) -> KlaviyoClient:
    settings = ClientSettings(base_url=server.url, connect_timeout=2, read_timeout=2)
    return KlaviyoClient(KEY, settings)


def test_throttled_reads_retry_after(server: ScriptedServer, client: KlaviyoClient) -> None:
    answer = _errors(429, "throttled", "Request was throttled. Expected available in 7 seconds.")
    answer.headers["Retry-After"] = "3"
    server.script(answer)
    with pytest.raises(ThrottledError) as caught:
        client.get_list("AbC123")
    assert caught.value.retry_after == 3.0
    assert caught.value.status == 429
    assert caught.value.code == "throttled"


def test_throttled_without_header_falls_back_to_detail(
    server: ScriptedServer, client: KlaviyoClient
) -> None:
    server.script(
        _errors(429, "throttled", "Request was throttled. Expected available in 2 seconds.")
    )
    with pytest.raises(ThrottledError) as caught:
        client.get_list("AbC123")
    assert caught.value.retry_after == 2.0


def test_throttled_with_nothing_to_go_on_has_no_wait(
    server: ScriptedServer, client: KlaviyoClient
) -> None:
    server.script(_errors(429, "throttled", "Request was throttled."))
    with pytest.raises(ThrottledError) as caught:
        client.get_list("AbC123")
    assert caught.value.retry_after is None


@pytest.mark.parametrize("status", [500, 502, 503, 504, 524])
def test_server_errors_are_retriable(
    server: ScriptedServer, client: KlaviyoClient, status: int
) -> None:
    server.script(_errors(status, "error", "Something went wrong"))
    with pytest.raises(RetriableError) as caught:
        client.get_list("AbC123")
    assert not isinstance(caught.value, ThrottledError)
    assert caught.value.status == status


@pytest.mark.parametrize("status", [400, 403, 502])
def test_cloudflare_html_pages_are_retriable(
    server: ScriptedServer, client: KlaviyoClient, status: int
) -> None:
    page = Answer(
        status=status,
        body=b"<html><body>Attention Required! | Cloudflare</body></html>",
        headers={"Content-Type": "text/html", "cf-mitigated": "challenge"},
    )
    server.script(page)
    with pytest.raises(RetriableError) as caught:
        client.get_list("AbC123")
    assert "HTML" in str(caught.value)


def test_dropped_connection_is_retriable(server: ScriptedServer, client: KlaviyoClient) -> None:
    server.script(Answer(drop=True))
    with pytest.raises(RetriableError, match="transport failure"):
        client.get_list("AbC123")


def test_timeout_is_retriable(server: ScriptedServer) -> None:
    import time

    class Slow(Answer):
        def encoded(self) -> tuple[bytes, dict[str, str]]:
            time.sleep(1.0)
            return super().encoded()

    server.script(Slow(body={"data": {"id": "AbC123", "attributes": {"name": "n"}}}))
    slow_client = KlaviyoClient(
        KEY, ClientSettings(base_url=server.url, connect_timeout=1, read_timeout=0.2)
    )
    with pytest.raises(RetriableError, match="ReadTimeout"):
        slow_client.get_list("AbC123")


@pytest.mark.parametrize(
    ("status", "code", "error_type"),
    [
        (401, "authentication_failed", AuthenticationError),
        (403, "permission_denied", PermissionDeniedError),
        (404, "not_found", NotFoundError),
        (415, "unsupported_media_type", BadRequestError),
    ],
)
def test_client_errors_are_fatal(
    server: ScriptedServer, client: KlaviyoClient, status: int, code: str, error_type: type
) -> None:
    server.script(_errors(status, code, "nope"))
    with pytest.raises(error_type) as caught:
        client.get_list("AbC123")
    assert caught.value.code == code


def test_bad_request_carries_jsonapi_details(server: ScriptedServer, client: KlaviyoClient) -> None:
    server.script(
        _errors(400, "invalid", "'x' is not a valid email", pointer="/data/attributes/email")
    )
    with pytest.raises(BadRequestError) as caught:
        client.get_list("AbC123")
    (detail,) = caught.value.errors
    assert detail.code == "invalid"
    assert detail.pointer == "/data/attributes/email"
    assert "/data/attributes/email" in str(caught.value)
    assert "get_list" in str(caught.value)


def test_no_error_and_no_repr_shows_the_key(
    server: ScriptedServer, client: KlaviyoClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server.script(
        _errors(401, "authentication_failed", "bad key"),
        Answer(drop=True),
        _errors(500, "error", "boom"),
    )
    raised = []
    for _ in range(3):
        with pytest.raises(Exception) as caught:  # noqa: PT011 - each type is checked above
            client.get_list("AbC123")
        raised.append(caught.value)
    for exc in raised:
        text = f"{exc!s} {exc!r} {exc.args!r} {vars(exc)!r}"
        assert KEY not in text
        assert exc.__cause__ is None
    assert KEY not in repr(client)
    assert KEY not in repr(vars(client))
    assert KEY not in caplog.text
