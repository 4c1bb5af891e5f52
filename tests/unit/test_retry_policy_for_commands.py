"""Commands call Klaviyo under the workers' policy: each call (each page of a
paged read too) takes its turn in the shared limiter, a 429 is waited out for
every process through the shared cooldown, a transient error is retried with
backoff, a fatal one is not; and errors say where they failed, without noise."""

from __future__ import annotations

from collections.abc import Iterator

import fakeredis
import pytest

from core.policy import MAX_TRANSIENT_ATTEMPTS, PatientClient, Quota
from core.ratelimit import RateLimiter
from demo.services import free_port
from klaviyo_client import (
    AuthenticationError,
    ClientSettings,
    KlaviyoClient,
    RetriableError,
    ThrottledError,
)
from klaviyo_client.errors import ErrorDetail
from schemas import keys
from tests.support.scripted_http import Answer, ScriptedServer

KEY = "pk_abcdefghijklmnopqrstuvwxyz01234567"
LIST = Answer(body={"data": {"type": "list", "id": "AbC123", "attributes": {"name": "L"}}})


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as running:
        yield running


@pytest.fixture
def limiter() -> RateLimiter:
    return RateLimiter(fakeredis.FakeRedis(), headroom=0.9)


def _patient(server: ScriptedServer, limiter: RateLimiter, slept: list[float]) -> PatientClient:
    settings = ClientSettings(base_url=server.url, connect_timeout=2, read_timeout=2)
    return PatientClient(KEY, settings, Quota(limiter, "acct"), sleep=slept.append)


def test_a_429_is_waited_out_for_everyone_then_retried(
    server: ScriptedServer, limiter: RateLimiter, monkeypatch: pytest.MonkeyPatch
) -> None:
    cooldowns: list[float] = []
    monkeypatch.setattr(limiter, "cooldown", lambda account, op, s: cooldowns.append(s))
    throttled = Answer(status=429, headers={"Retry-After": "1"}, body={"errors": []})
    server.script(throttled, LIST)

    assert _patient(server, limiter, []).get_list("AbC123").name == "L"
    assert cooldowns == [1.0]  # every process waits it out, through the limiter
    assert len(server.seen) == 2


def test_transient_errors_are_retried_up_to_the_workers_limit(
    server: ScriptedServer, limiter: RateLimiter
) -> None:
    slept: list[float] = []
    server.script(*[Answer(status=503, body={"errors": []})] * MAX_TRANSIENT_ATTEMPTS)

    with pytest.raises(RetriableError):
        _patient(server, limiter, slept).get_list("AbC123")
    assert len(slept) == MAX_TRANSIENT_ATTEMPTS - 1


def test_a_fatal_error_is_not_retried(server: ScriptedServer, limiter: RateLimiter) -> None:
    slept: list[float] = []
    server.script(Answer(status=401, body={"errors": [{"code": "not_authenticated"}]}), LIST)

    with pytest.raises(AuthenticationError):
        _patient(server, limiter, slept).get_list("AbC123")
    assert slept == []


def test_each_call_takes_its_turn_in_the_shared_limiter(
    server: ScriptedServer, limiter: RateLimiter
) -> None:
    server.script(LIST, LIST)
    client = _patient(server, limiter, [])
    client.get_list("AbC123")
    client.get_list("AbC123")
    assert limiter.redis.zcard(keys.rate_log("acct", "get_list")) == 2


def test_a_transport_failure_names_the_host_it_could_not_reach() -> None:
    port = free_port()
    client = KlaviyoClient(KEY, ClientSettings(base_url=f"http://127.0.0.1:{port}"))
    with pytest.raises(RetriableError) as caught:
        client.get_list("AbC123")
    assert f"transport failure reaching http://127.0.0.1:{port}: ConnectionError" in str(
        caught.value
    )


def test_a_pointer_to_the_whole_document_is_not_shown() -> None:
    assert str(ErrorDetail("not_authenticated", "t", "Missing key.", pointer="/data/")) == (
        "not_authenticated: Missing key."
    )
    assert str(ErrorDetail("invalid", "t", "Bad.", pointer="/data/attributes/name")) == (
        "invalid: Bad. (at /data/attributes/name)"
    )
    error = ThrottledError("x", retry_after=1.0, operation="get_list")
    assert str(error) == "get_list: HTTP 429: x"


class _StubLimiter:
    """Answers the waits it is given, one per call (seconds; 0 admits)."""

    def __init__(self, *waits: float) -> None:
        self.waits = list(waits)
        self.calls = 0

    def acquire(self, account: str, operation: str, max_sleep: float) -> float:
        self.calls += 1
        wait = self.waits.pop(0) if self.waits else 0.0
        return wait if wait > max_sleep else 0.0


def test_a_long_shared_wait_is_slept_not_spun(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr("core.policy.time.sleep", slept.append)
    limiter = _StubLimiter(100.0, 40.0)
    Quota(limiter, "acct").block("get_list")  # type: ignore[arg-type]
    assert slept == [60.0]  # 100 s ahead: slept in 60 s steps, then admitted
    assert limiter.calls == 2  # the 40 s left are slept inside the limiter


def test_a_wait_past_the_commands_patience_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("core.policy.time.sleep", lambda s: None)
    with pytest.raises(ThrottledError, match="past this command's patience"):
        Quota(_StubLimiter(5000.0), "acct").block("get_list", deadline=0.0)  # type: ignore[arg-type]


def test_retry_after_is_bounded() -> None:
    from klaviyo_client.classify import MAX_RETRY_AFTER, parse_retry_after

    assert parse_retry_after("inf") == MAX_RETRY_AFTER
    assert parse_retry_after("99999999") == MAX_RETRY_AFTER
    assert parse_retry_after("2") == 2.0
