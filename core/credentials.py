"""Who may call the HTTP API and sign in to the console: API tokens and console users.

Both are secrets we check but never keep. A token's secret (``kxt_...``) is shown
once, when it is issued, and Redis holds only its sha256 (``schemas.keys.TOKENS``):
a copy of Redis lets nobody in. sha256 suffices for tokens because their secret
has 256 random bits; a password has far fewer, so it is kept as a scrypt hash
with its own salt, slow enough to make guessing from a stolen copy expensive.

Only admins issue, list and revoke tokens and set, list and remove users; every
change goes to the audit log, never with a secret. ``authenticate`` and
``check_password`` are the two ways in; they answer ``None`` for anything wrong,
never an error naming what was wrong.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import asdict, dataclass, fields
from functools import cache
from typing import Any, Final

import redis

from core import audit
from core.actors import PERSON_ROLES, ROLES, Actor, require_admin
from core.errors import InvalidInput, NotFound, Throttled
from core.store import new_id, text
from schemas import keys

SECRET_PREFIX: Final = "kxt_"  # noqa: S105 - the marker of our tokens, no secret
_SECRET: Final = re.compile(r"kxt_[A-Za-z0-9_-]{43}")  # token_urlsafe(32) is 43 characters
LAST_USED_EVERY: Final = 60.0
"""Seconds between two writes of a token's ``last_used_at``: a status poll many
times a second reads the token each time but writes it once a minute."""

USER_NAME: Final = re.compile(r"[A-Za-z0-9._@-]{1,64}")
MIN_PASSWORD: Final = 12
MAX_PASSWORD: Final = 1024  # a bound on the work one sign-in attempt can ask for
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1  # 16 MiB and ~50 ms per check
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
SIGNIN_FAILURES: Final = 10  # wrong passwords for one user name ...
SIGNIN_WINDOW: Final = 900  # ... within this many seconds, and sign-in waits for the rest


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _label(value: str, field: str, limit: int) -> str:
    """A display name or a token's user: trimmed, 1..limit characters, printable
    (it goes into the audit log and onto terminals)."""
    value = value.strip()
    if not value or len(value) > limit:
        raise InvalidInput(f"must be 1 to {limit} characters, not blank", field=field)
    if _CONTROL.search(value):
        raise InvalidInput("must not contain control characters", field=field)
    return value


def _load(cls: type[Any], raw: bytes | str) -> Any:
    """A record from its JSON; fields an older record lacks take their defaults."""
    data = json.loads(raw)
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in known})


# -- tokens ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Token:
    id: str
    name: str
    user: str  # whom the token acts as, in audit entries and role checks
    role: str
    created_by: str
    created_at: float
    last_used_at: float | None = None

    def public(self) -> dict[str, Any]:
        """Everything about the token; the record holds no secret and no hash."""
        return asdict(self)


def issue_token(
    client: redis.Redis, actor: Actor, *, name: str, role: str, user: str | None = None
) -> tuple[Token, str]:
    """A new token and its secret, which is returned here and never again."""
    require_admin(actor, "issue API tokens")
    if role not in ROLES:
        raise InvalidInput(f"must be one of {', '.join(ROLES)}, not {role!r}", field="role")
    name = _label(name, "name", 100)
    token = Token(
        id=new_id("t_"),
        name=name,
        user=_label(user, "user", 100) if user is not None else name,
        role=role,
        created_by=actor.user,
        created_at=time.time(),
    )
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    digest = _digest(secret)
    record = {k: v for k, v in token.public().items() if k != "last_used_at"}
    pipe = client.pipeline(transaction=True)
    pipe.hset(keys.token(token.id), mapping={"record": json.dumps(record), "digest": digest})
    pipe.hset(keys.TOKENS, digest, json.dumps({"id": token.id, "user": token.user, "role": role}))
    pipe.execute()
    audit.record(client, actor, "token.add", token.id, name=name, role=role, user=token.user)
    return token, secret


def _token(client: redis.Redis, token_id: str) -> tuple[Token, str] | None:
    """The token and the sha256 it is filed under; None when there is none."""
    raw, used, digest = client.hmget(keys.token(token_id), ["record", "last_used_at", "digest"])
    if raw is None:
        return None
    token: Token = _load(Token, raw)
    if used is not None:
        token = Token(**{**asdict(token), "last_used_at": float(text(used))})
    return token, text(digest or "")


def token_exists(client: redis.Redis, token_id: str) -> bool:
    """Whether the token is still issued (a session opened with it ends when it is not)."""
    return bool(client.hexists(keys.token(token_id), "record"))


def list_tokens(client: redis.Redis, actor: Actor) -> list[Token]:
    """Every token, oldest first."""
    require_admin(actor, "list API tokens")
    ids = sorted({json.loads(v)["id"] for v in client.hvals(keys.TOKENS)})
    found = [_token(client, token_id) for token_id in ids]
    return sorted((pair[0] for pair in found if pair), key=lambda t: (t.created_at, t.id))


def revoke_token(client: redis.Redis, actor: Actor, token_id: str) -> Token:
    """Revoked at once: the next request with it is refused, its console sessions end."""
    require_admin(actor, "revoke API tokens")
    found = _token(client, token_id)
    if found is None:
        raise NotFound(f"no API token {token_id!r}; `klaviyo-export token list` shows them")
    token, digest = found
    pipe = client.pipeline(transaction=True)
    pipe.delete(keys.token(token_id))
    if digest:
        pipe.hdel(keys.TOKENS, digest)
    pipe.execute()
    audit.record(
        client, actor, "token.revoke", token.id, name=token.name, role=token.role, user=token.user
    )
    return token


_marked: dict[str, float] = {}
"""When this process last wrote each token's ``last_used_at`` (a few bytes a token)."""


def authenticate(client: redis.Redis, secret: str) -> Actor | None:
    """The actor a bearer token acts as; None for anything that is not a live token.

    One ``HGET``: the digest's entry holds who the token acts as, so that an
    orchestrator polling a run's status many times a second costs one round
    trip for its token. ``last_used_at`` is written at most once a minute per
    token and process. A value that cannot be one of our secrets is refused
    without asking Redis.
    """
    if not isinstance(secret, str) or not _SECRET.fullmatch(secret):
        return None
    raw = client.hget(keys.TOKENS, _digest(secret))
    if raw is None:
        return None
    entry = json.loads(raw)
    token_id = str(entry["id"])
    now = time.time()
    if now - _marked.get(token_id, 0.0) >= LAST_USED_EVERY:
        _marked[token_id] = now
        _mark_used(client, token_id, now)
    return Actor(str(entry["user"]), str(entry["role"]), via=f"token {token_id}")


def _mark_used(client: redis.Redis, token_id: str, now: float) -> None:
    """Write ``last_used_at`` unless the token was revoked meanwhile: a plain HSET
    after a revoke would bring back a hash that looks like a live token."""
    key = keys.token(token_id)
    with client.pipeline(transaction=True) as pipe:
        try:
            pipe.watch(key)
            if not pipe.hexists(key, "record"):
                return
            pipe.multi()
            pipe.hset(key, "last_used_at", repr(now))
            pipe.execute()
        except redis.WatchError:
            pass  # revoked, or marked by another request: nothing left to write


# -- console users ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: str  # admin or contributor: a trigger is a system, never a person at a console
    created_by: str
    created_at: float
    password_set_at: float = 0.0  # a session opened before this time has ended

    def public(self) -> dict[str, Any]:
        """The record; the password hash is kept apart and never shown."""
        return asdict(self)


def check_user_name(name: str) -> str:
    if not USER_NAME.fullmatch(name):
        raise InvalidInput("must be 1 to 64 letters, digits or ._@-", field="name")
    return name


def _hash_password(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32)


def _stored_password(password: str) -> str:
    """``scrypt$n$r$p$salt$hash`` (base64): the parameters travel with the hash, so
    that stronger ones later still check the passwords set before."""
    salt = secrets.token_bytes(16)
    digest = _hash_password(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


@cache
def _dummy() -> str:
    """What a sign-in as an unknown user is checked against, so that it takes as long
    as one as a known user: the time does not tell which names exist. Made on first
    use, not at import: every CLI command imports this module."""
    return _stored_password(secrets.token_urlsafe(16))


def _encodes(password: str) -> bool:
    try:
        password.encode()
    except UnicodeEncodeError:  # a lone surrogate, from a badly decoded form
        return False
    return True


def _matches(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        expected = base64.b64decode(digest)
        actual = _hash_password(password, base64.b64decode(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return scheme == "scrypt" and hmac.compare_digest(actual, expected)


def get_user(client: redis.Redis, name: str) -> User | None:
    """The user's record, or None (also for a name that cannot be a user's)."""
    if not USER_NAME.fullmatch(name):
        return None
    raw = client.hget(keys.user(name), "record")
    return None if raw is None else _load(User, raw)


def set_password(
    client: redis.Redis, actor: Actor, name: str, password: str, role: str | None = None
) -> User:
    """Create the user (``role`` required: without one, the user must exist) or
    replace an existing user's password (and role, when given). Either ends the
    user's console sessions."""
    require_admin(actor, "set console passwords")
    check_user_name(name)
    if role is not None and role not in PERSON_ROLES:
        raise InvalidInput(f"must be one of {', '.join(PERSON_ROLES)}, not {role!r}", field="role")
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidInput(
            f"must be {MIN_PASSWORD} to {MAX_PASSWORD} characters long", field="password"
        )
    if _CONTROL.search(password) or not _encodes(password):
        raise InvalidInput("must be text without control characters", field="password")
    existing = get_user(client, name)
    if existing is None and role is None:
        raise NotFound(
            f"no console user {name!r}; a new one needs a role "
            f"(`klaviyo-export user add {name} --role ROLE --password-stdin`)"
        )
    now = time.time()
    user = User(
        name=name,
        role=role or (existing.role if existing else ""),
        created_by=existing.created_by if existing else actor.user,
        created_at=existing.created_at if existing else now,
        password_set_at=now,
    )
    pipe = client.pipeline(transaction=True)
    pipe.hset(
        keys.user(name),
        mapping={"record": json.dumps(user.public()), "password": _stored_password(password)},
    )
    pipe.sadd(keys.USERS, name)
    pipe.execute()
    audit.record(client, actor, "user.password", name, role=user.role, created=existing is None)
    return user


def list_users(client: redis.Redis, actor: Actor) -> list[User]:
    require_admin(actor, "list console users")
    found = (get_user(client, text(name)) for name in client.smembers(keys.USERS))
    return sorted((user for user in found if user), key=lambda u: u.name)


def remove_user(client: redis.Redis, actor: Actor, name: str) -> User:
    """The user may no longer sign in. Their open sessions end at their next
    request: ``core.sessions`` checks that the user still exists each time."""
    require_admin(actor, "remove console users")
    user = get_user(client, name)
    if user is None:
        raise NotFound(f"no console user {name!r}; `klaviyo-export user list` shows them")
    pipe = client.pipeline(transaction=True)
    pipe.delete(keys.user(name))
    pipe.srem(keys.USERS, name)
    pipe.execute()
    audit.record(client, actor, "user.remove", name, role=user.role)
    return user


def check_password(client: redis.Redis, name: str, password: str, source: str = "") -> Actor | None:
    """The console actor for a right name and password; None otherwise, after the
    same one scrypt whether or not the name exists.

    After ``SIGNIN_FAILURES`` wrong passwords for one name from one ``source``
    (the client's address) within ``SIGNIN_WINDOW`` seconds, ``Throttled``
    until the window ends (counted in Redis, so across every server): scrypt
    makes each guess cost 50 ms of CPU, this makes a run of guesses cost hours.
    Counted per address too, so that a stranger's guesses cannot lock a user
    out everywhere. A right password clears the count.
    """
    failures_key = keys.signin_failures(_digest(f"{name}\x00{source}"))
    pipe = client.pipeline()
    pipe.get(failures_key)
    pipe.ttl(failures_key)
    failures, wait = pipe.execute()
    if failures is not None and int(failures) >= SIGNIN_FAILURES:
        raise Throttled(
            f"too many wrong passwords for this user: try again in {max(wait, 1)} s",
            max(int(wait), 1),
        )
    actor = _check_password(client, name, password)
    if actor is None:
        pipe = client.pipeline()
        pipe.set(failures_key, 0, ex=SIGNIN_WINDOW, nx=True)  # the window opens once
        pipe.incr(failures_key)  # INCR keeps the TTL (EXPIRE NX needs Redis 7)
        pipe.execute()
    elif failures is not None:
        client.delete(failures_key)
    return actor


def _check_password(client: redis.Redis, name: str, password: str) -> Actor | None:
    known = USER_NAME.fullmatch(name) is not None and len(password) <= MAX_PASSWORD
    raw, stored = client.hmget(keys.user(name), ["record", "password"]) if known else (None, None)
    if raw is None or stored is None:
        _matches(password[:MAX_PASSWORD], _dummy())
        return None
    if not _matches(password, text(stored)):
        return None
    user: User = _load(User, raw)
    return Actor(user.name, user.role, via="console")
