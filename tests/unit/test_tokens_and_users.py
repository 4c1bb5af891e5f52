"""API tokens, console users and sessions: issued, checked and revoked by the
rules, and no secret ever kept where a copy of Redis would show it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, cast

import fakeredis
import pytest
import redis

from core import audit, credentials, sessions
from core.actors import Actor
from core.errors import Forbidden, InvalidInput, NotFound
from core.store import text
from schemas import keys

ADMIN = Actor("ada", "admin")
CONTRIBUTOR = Actor("carl", "contributor")
TRIGGER = Actor("airflow", "trigger", via="token t_0000000000")
PASSWORD = "correct horse battery"


@pytest.fixture
def client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


def _everything(client: redis.Redis) -> Iterator[Any]:
    """Every key and every value the fake Redis holds (bytes)."""
    for key in client.scan_iter():
        yield key
        kind = client.type(key)
        if kind == b"string":
            yield client.get(key)
        elif kind == b"hash":
            for field, value in client.hgetall(key).items():
                yield field
                yield value
        elif kind == b"set":
            yield from client.smembers(key)
        elif kind == b"list":
            yield from client.lrange(key, 0, -1)
        elif kind == b"stream":
            for _, entry in client.xrange(key) or []:
                for field, value in (entry or {}).items():
                    yield field
                    yield value
        else:
            raise AssertionError(f"a key of a type this test does not read: {kind!r}")


def _nowhere_in(client: redis.Redis, *secrets: str) -> None:
    for stored in _everything(client):
        for secret in secrets:
            assert secret.encode() not in stored


class _NoRedis:
    """A client that fails the test on any command."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"Redis was asked: {name}")


# -- tokens ----------------------------------------------------------------------------


def test_an_issued_token_authenticates_as_its_user_and_role(client: fakeredis.FakeRedis) -> None:
    token, secret = credentials.issue_token(
        client, ADMIN, name="airflow prod", role="trigger", user="airflow"
    )
    assert secret.startswith("kxt_")
    assert token.id.startswith("t_")
    assert len(token.id) == 12
    expected = ("airflow prod", "airflow", "trigger", "ada")
    assert (token.name, token.user, token.role, token.created_by) == expected
    actor = credentials.authenticate(client, secret)
    assert actor == Actor("airflow", "trigger", via=f"token {token.id}")
    token, secret = credentials.issue_token(client, ADMIN, name="ci-bot", role="contributor")
    assert token.user == "ci-bot"  # by default, the name
    assert credentials.authenticate(client, secret) == Actor(
        "ci-bot", "contributor", f"token {token.id}"
    )


def test_the_secret_is_kept_nowhere_only_its_hash(client: fakeredis.FakeRedis) -> None:
    token, secret = credentials.issue_token(client, ADMIN, name="x", role="admin")
    credentials.authenticate(client, secret)
    _nowhere_in(client, secret, secret.removeprefix("kxt_"))
    assert not {"token", "secret", "digest", "hash"} & set(token.public())
    assert secret not in str(token.public())


def test_unknown_and_malformed_secrets_are_refused(client: fakeredis.FakeRedis) -> None:
    credentials.issue_token(client, ADMIN, name="x", role="admin")
    unknown = "kxt_" + "A" * 43
    assert credentials.authenticate(client, unknown) is None
    for bad in ["", "kxt_", "Bearer kxt_abc", "kxt_" + "A" * 44, "kxt_" + "!" * 43, "x" * 10_000]:
        assert credentials.authenticate(cast(redis.Redis, _NoRedis()), bad) is None
    assert credentials.authenticate(cast(redis.Redis, _NoRedis()), cast(str, None)) is None


def test_a_revoked_token_is_refused_and_gone(client: fakeredis.FakeRedis) -> None:
    token, secret = credentials.issue_token(client, ADMIN, name="x", role="contributor")
    revoked = credentials.revoke_token(client, ADMIN, token.id)
    assert revoked.id == token.id
    assert credentials.authenticate(client, secret) is None
    assert not client.exists(keys.token(token.id))
    assert client.hlen(keys.TOKENS) == 0
    assert credentials.list_tokens(client, ADMIN) == []
    with pytest.raises(NotFound):
        credentials.revoke_token(client, ADMIN, token.id)


def test_tokens_are_listed_oldest_first(client: fakeredis.FakeRedis) -> None:
    first, _ = credentials.issue_token(client, ADMIN, name="one", role="admin")
    second, _ = credentials.issue_token(client, ADMIN, name="two", role="trigger")
    assert [t.id for t in credentials.list_tokens(client, ADMIN)] == [first.id, second.id]


def test_issuing_and_revoking_are_audited_without_the_secret(client: fakeredis.FakeRedis) -> None:
    token, secret = credentials.issue_token(
        client, Actor("ada", "admin", via="console"), name="x", role="trigger"
    )
    credentials.revoke_token(client, ADMIN, token.id)
    revoke, add = audit.recent(client, 2)
    assert (add["action"], add["target"], add["via"]) == ("token.add", token.id, "console")
    assert add["detail"] == {"name": "x", "role": "trigger", "user": "x"}
    assert (revoke["action"], revoke["target"], revoke["via"]) == ("token.revoke", token.id, "cli")
    _nowhere_in(client, secret)


def test_last_used_is_written_at_most_once_a_minute(
    client: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    token, secret = credentials.issue_token(client, ADMIN, name="poller", role="trigger")
    clock = [1_000_000.0]
    monkeypatch.setattr(credentials, "time", SimpleNamespace(time=lambda: clock[0]))
    writes: list[float] = []
    mark = credentials._mark_used

    def counted(c: redis.Redis, token_id: str, now: float) -> None:
        writes.append(now)
        mark(c, token_id, now)

    monkeypatch.setattr(credentials, "_mark_used", counted)

    def last_used() -> float | None:
        return credentials.list_tokens(client, ADMIN)[0].last_used_at

    assert last_used() is None
    for _ in range(500):
        assert credentials.authenticate(client, secret) is not None
        clock[0] += 0.002  # 500 polls a second
    assert writes == [1_000_000.0]
    assert last_used() == 1_000_000.0
    clock[0] = 1_000_000.0 + credentials.LAST_USED_EVERY + 1
    credentials.authenticate(client, secret)
    assert last_used() == clock[0]
    assert len(writes) == 2
    assert credentials.list_tokens(client, ADMIN)[0].id == token.id


def test_last_used_does_not_bring_back_a_revoked_token(client: fakeredis.FakeRedis) -> None:
    token, _ = credentials.issue_token(client, ADMIN, name="x", role="trigger")
    credentials.revoke_token(client, ADMIN, token.id)
    credentials._mark_used(client, token.id, time.time())
    assert not client.exists(keys.token(token.id))


@pytest.mark.parametrize("actor", [CONTRIBUTOR, TRIGGER])
def test_only_admins_issue_list_and_revoke_tokens(
    client: fakeredis.FakeRedis, actor: Actor
) -> None:
    token, _ = credentials.issue_token(client, ADMIN, name="x", role="admin")
    with pytest.raises(Forbidden, match="only admins"):
        credentials.issue_token(client, actor, name="mine", role="contributor")
    with pytest.raises(Forbidden, match="only admins"):
        credentials.list_tokens(client, actor)
    with pytest.raises(Forbidden, match="only admins"):
        credentials.revoke_token(client, actor, token.id)
    assert [t.id for t in credentials.list_tokens(client, ADMIN)] == [token.id]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": "  ", "role": "admin"}, "name"),
        ({"name": "x" * 101, "role": "admin"}, "name"),
        ({"name": "tab\tname", "role": "admin"}, "name"),
        ({"name": "x", "role": "owner"}, "role"),
        ({"name": "x", "role": "admin", "user": " "}, "user"),
    ],
)
def test_token_fields_are_checked_by_name(
    client: fakeredis.FakeRedis, fields: dict[str, str], field: str
) -> None:
    with pytest.raises(InvalidInput) as raised:
        credentials.issue_token(client, ADMIN, **fields)
    assert raised.value.field == field
    assert client.hlen(keys.TOKENS) == 0


# -- users -------------------------------------------------------------------------------


def test_a_password_signs_its_user_in(client: fakeredis.FakeRedis) -> None:
    user = credentials.set_password(client, ADMIN, "carl", PASSWORD, "contributor")
    assert (user.name, user.role, user.created_by) == ("carl", "contributor", "ada")
    assert credentials.check_password(client, "carl", PASSWORD) == Actor(
        "carl", "contributor", via="console"
    )
    assert credentials.check_password(client, "carl", PASSWORD + "!") is None
    assert credentials.check_password(client, "carl", "") is None
    assert credentials.check_password(client, "nobody", PASSWORD) is None
    assert credentials.check_password(client, "bad name!", PASSWORD) is None


def test_the_password_is_kept_only_as_a_salted_scrypt_hash(client: fakeredis.FakeRedis) -> None:
    credentials.set_password(client, ADMIN, "carl", PASSWORD, "contributor")
    credentials.set_password(client, ADMIN, "dora", PASSWORD, "admin")
    _nowhere_in(client, PASSWORD)
    carl, dora = (text(client.hget(keys.user(n), "password") or "") for n in ("carl", "dora"))
    assert carl.startswith("scrypt$16384$8$1$")
    assert carl.split("$")[4] != dora.split("$")[4]  # each its own salt
    assert "password" not in credentials.list_users(client, ADMIN)[0].public()


def test_an_unknown_user_costs_the_same_one_scrypt(
    client: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials.set_password(client, ADMIN, "carl", PASSWORD, "contributor")
    calls: list[bytes] = []
    hash_password = credentials._hash_password

    def counted(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
        calls.append(salt)
        return hash_password(password, salt, n, r, p)

    monkeypatch.setattr(credentials, "_hash_password", counted)
    for name in ["carl", "nobody", "not a name"]:
        calls.clear()
        assert credentials.check_password(client, name, "wrong password!") is None
        assert len(calls) == 1, name


def test_a_new_password_replaces_the_old(client: fakeredis.FakeRedis) -> None:
    created = credentials.set_password(client, ADMIN, "carl", PASSWORD, "contributor")
    changed = credentials.set_password(client, ADMIN, "carl", "another long password")
    expected = ("contributor", created.created_at, "ada")
    assert (changed.role, changed.created_at, changed.created_by) == expected
    assert credentials.check_password(client, "carl", PASSWORD) is None
    assert credentials.check_password(client, "carl", "another long password") is not None
    entries = audit.recent(client, 2)
    assert [e["action"] for e in entries] == ["user.password", "user.password"]
    assert [e["detail"]["created"] for e in entries] == [False, True]


def test_a_removed_user_can_no_longer_sign_in(client: fakeredis.FakeRedis) -> None:
    credentials.set_password(client, ADMIN, "carl", PASSWORD, "contributor")
    removed = credentials.remove_user(client, ADMIN, "carl")
    assert removed.name == "carl"
    assert credentials.check_password(client, "carl", PASSWORD) is None
    assert credentials.list_users(client, ADMIN) == []
    assert audit.recent(client, 1)[0]["action"] == "user.remove"
    with pytest.raises(NotFound):
        credentials.remove_user(client, ADMIN, "carl")


def test_users_are_listed_by_name(client: fakeredis.FakeRedis) -> None:
    credentials.set_password(client, ADMIN, "zoe", PASSWORD, "admin")
    credentials.set_password(client, ADMIN, "carl@example.com", PASSWORD, "contributor")
    assert [u.name for u in credentials.list_users(client, ADMIN)] == ["carl@example.com", "zoe"]


@pytest.mark.parametrize("actor", [CONTRIBUTOR, TRIGGER])
def test_only_admins_manage_users(client: fakeredis.FakeRedis, actor: Actor) -> None:
    credentials.set_password(client, ADMIN, "carl", PASSWORD, "contributor")
    with pytest.raises(Forbidden, match="only admins"):
        credentials.set_password(client, actor, "carl", "a password of mine", "admin")
    with pytest.raises(Forbidden, match="only admins"):
        credentials.set_password(client, actor, "eve", "a password of mine", "admin")
    with pytest.raises(Forbidden, match="only admins"):
        credentials.list_users(client, actor)
    with pytest.raises(Forbidden, match="only admins"):
        credentials.remove_user(client, actor, "carl")
    assert credentials.check_password(client, "carl", PASSWORD) is not None


@pytest.mark.parametrize(
    ("name", "password", "role", "field"),
    [
        ("", PASSWORD, "admin", "name"),
        ("x" * 65, PASSWORD, "admin", "name"),
        ("carl smith", PASSWORD, "admin", "name"),
        ("carl/..", PASSWORD, "admin", "name"),
        ("carl", "short", "admin", "password"),
        ("carl", "x" * 11, "admin", "password"),
        ("carl", "twelve chars\nand a newline", "admin", "password"),
        ("carl", "a lone surrogate \udc80", "admin", "password"),
        ("carl", PASSWORD, "trigger", "role"),
        ("carl", PASSWORD, "owner", "role"),
    ],
)
def test_user_fields_are_checked_by_name(
    client: fakeredis.FakeRedis, name: str, password: str, role: str, field: str
) -> None:
    with pytest.raises(InvalidInput) as raised:
        credentials.set_password(client, ADMIN, name, password, role)
    assert raised.value.field == field
    assert password not in str(raised.value)
    assert client.scard(keys.USERS) == 0


def test_a_new_user_needs_a_role(client: fakeredis.FakeRedis) -> None:
    with pytest.raises(NotFound, match="needs a role"):
        credentials.set_password(client, ADMIN, "carl", PASSWORD)


# -- sessions ---------------------------------------------------------------------------


def _signed_in(client: redis.Redis) -> tuple[str, sessions.Session]:
    credentials.set_password(client, ADMIN, "carl", PASSWORD, "contributor")
    actor = credentials.check_password(client, "carl", PASSWORD)
    assert actor is not None
    return sessions.open_session(client, actor)


def test_a_session_is_found_by_its_cookie(client: fakeredis.FakeRedis) -> None:
    cookie, opened = _signed_in(client)
    found = sessions.session_for(client, cookie)
    assert found is not None
    assert found.actor == Actor("carl", "contributor", via="console")
    assert found.csrf == opened.csrf
    assert found.csrf != cookie
    assert opened.expires_at == pytest.approx(time.time() + sessions.TTL, abs=5)
    _nowhere_in(client, cookie)  # only its hash names the session


def test_unknown_and_malformed_cookies_find_nothing(client: fakeredis.FakeRedis) -> None:
    _signed_in(client)
    assert sessions.session_for(client, "A" * 43) is None
    for bad in ["", "short", "A" * 44, "!" * 43]:
        assert sessions.session_for(cast(redis.Redis, _NoRedis()), bad) is None


def test_a_session_slides_and_expires(client: fakeredis.FakeRedis) -> None:
    cookie, _ = _signed_in(client)
    (key,) = client.scan_iter(keys.session("*"))
    assert 0 < client.ttl(key) <= sessions.TTL
    client.expire(key, 100)
    assert sessions.session_for(client, cookie) is not None
    assert client.ttl(key) > 100  # used: another eight hours
    client.pexpire(key, 1)
    time.sleep(0.01)
    assert sessions.session_for(client, cookie) is None


def test_a_closed_session_is_gone(client: fakeredis.FakeRedis) -> None:
    cookie, _ = _signed_in(client)
    sessions.close_session(client, cookie)
    assert sessions.session_for(client, cookie) is None
    sessions.close_session(client, cookie)  # twice: nothing to do
    sessions.close_session(client, "not a cookie")


def test_removing_the_user_or_changing_the_password_ends_the_session(
    client: fakeredis.FakeRedis,
) -> None:
    cookie, _ = _signed_in(client)
    credentials.set_password(client, ADMIN, "carl", "a brand new password")
    assert sessions.session_for(client, cookie) is None
    actor = credentials.check_password(client, "carl", "a brand new password")
    assert actor is not None
    cookie, _ = sessions.open_session(client, actor)
    assert sessions.session_for(client, cookie) is not None
    credentials.remove_user(client, ADMIN, "carl")
    assert sessions.session_for(client, cookie) is None


def test_a_session_opened_with_a_token_ends_when_it_is_revoked(
    client: fakeredis.FakeRedis,
) -> None:
    token, secret = credentials.issue_token(client, ADMIN, name="dora", role="admin")
    actor = credentials.authenticate(client, secret)
    assert actor is not None
    cookie, opened = sessions.open_session(client, actor)
    assert opened.actor == Actor("dora", "admin", via=f"token {token.id}")
    assert sessions.session_for(client, cookie) is not None
    credentials.revoke_token(client, ADMIN, token.id)
    assert sessions.session_for(client, cookie) is None


def test_a_trigger_token_may_not_open_a_session(client: fakeredis.FakeRedis) -> None:
    _, secret = credentials.issue_token(client, ADMIN, name="airflow", role="trigger")
    actor = credentials.authenticate(client, secret)
    assert actor is not None
    with pytest.raises(Forbidden, match="a trigger token may only start runs and read them"):
        sessions.open_session(client, actor)
    assert not list(client.scan_iter(keys.session("*")))


def test_only_a_signed_in_actor_opens_a_session(client: fakeredis.FakeRedis) -> None:
    with pytest.raises(InvalidInput):
        sessions.open_session(client, ADMIN)  # via the CLI: no sign-in
    with pytest.raises(Forbidden):
        sessions.open_session(client, Actor("ghost", "admin", via="console"))
    with pytest.raises(Forbidden):
        sessions.open_session(client, Actor("ghost", "admin", via="token t_0123456789"))


def test_guessing_a_password_is_throttled_per_user_name() -> None:
    """Ten wrong passwords for one name from one address within the window:
    sign-in from there waits, even with the right password; other names and
    other addresses are not affected; a right password before the limit
    clears the count."""
    from core.errors import Throttled

    client = fakeredis.FakeRedis()
    credentials.set_password(client, ADMIN, "eve", "correct horse battery", role="contributor")
    credentials.set_password(client, ADMIN, "dan", "another long password", role="contributor")
    for _ in range(credentials.SIGNIN_FAILURES - 1):
        assert credentials.check_password(client, "eve", "wrong password!!", "10.0.0.9") is None
    assert credentials.check_password(client, "eve", "correct horse battery", "10.0.0.9")
    for _ in range(credentials.SIGNIN_FAILURES):  # the right one above cleared the count
        assert credentials.check_password(client, "eve", "wrong password!!", "10.0.0.9") is None

    with pytest.raises(Throttled) as throttled:
        credentials.check_password(client, "eve", "correct horse battery", "10.0.0.9")
    assert 0 < throttled.value.retry_after <= 900
    assert credentials.check_password(client, "eve", "correct horse battery", "10.0.0.7")
    assert credentials.check_password(client, "dan", "another long password", "10.0.0.9")
