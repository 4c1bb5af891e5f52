"""Console sessions, kept in Redis so that any number of servers can answer a user.

The cookie value is a random secret; Redis keeps the session under its sha256
(``schemas.keys.session``), so a copy of Redis holds no cookie that signs anyone
in. A session lasts ``TTL`` seconds from its last use (Redis expires it). Each
lookup checks that whoever opened it may still sign in: a revoked token, a
removed user, or a user whose password or role changed since ends the session
at its next request, without a list of sessions per user to keep.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from typing import Final

import redis

from core.actors import Actor, require_person
from core.credentials import get_user, token_exists
from core.errors import Forbidden, InvalidInput
from core.store import text
from schemas import keys

TTL: Final = 8 * 3600
_COOKIE: Final = re.compile(r"[A-Za-z0-9_-]{43}")  # token_urlsafe(32)
VIA_TOKEN: Final = "token "  # noqa: S105 - how a token actor's ``via`` begins


@dataclass(frozen=True, slots=True)
class Session:
    user: str
    role: str
    via: str  # "console" (a password) or "token t_..." (signed in with a token)
    csrf: str  # the token every form of this session carries back
    expires_at: float

    @property
    def actor(self) -> Actor:
        return Actor(self.user, self.role, via=self.via)


def _key(cookie_value: str) -> str | None:
    """The session's Redis key, or None for a value that cannot be one of ours."""
    if not isinstance(cookie_value, str) or not _COOKIE.fullmatch(cookie_value):
        return None
    return keys.session(hashlib.sha256(cookie_value.encode()).hexdigest())


def _since(client: redis.Redis, actor: Actor) -> float:
    """When the actor's sign-in was last made valid: a password user's
    ``password_set_at``; 0 for a token, which never changes."""
    if actor.via == "console":
        user = get_user(client, actor.user)
        if user is None or user.role != actor.role:
            raise Forbidden(f"{actor} may not sign in to the console: no such console user")
        return user.password_set_at
    if actor.via and actor.via.startswith(VIA_TOKEN):
        if not token_exists(client, actor.via.removeprefix(VIA_TOKEN)):
            raise Forbidden(f"{actor} may not sign in to the console: the token was revoked")
        return 0.0
    raise InvalidInput("a console session opens after a sign-in with a password or a token")


def open_session(client: redis.Redis, actor: Actor) -> tuple[str, Session]:
    """A new session for a signed-in actor: the cookie value (returned here only)
    and the session. A trigger token is a system's, and may not sign in."""
    require_person(actor, "sign in to the console")
    since = _since(client, actor)
    cookie_value = secrets.token_urlsafe(32)
    session = Session(
        user=actor.user,
        role=actor.role,
        via=actor.via or "",
        csrf=secrets.token_urlsafe(32),
        expires_at=time.time() + TTL,
    )
    key = _key(cookie_value)
    assert key is not None  # token_urlsafe(32) is always 43 URL-safe characters
    pipe = client.pipeline(transaction=True)
    pipe.hset(
        key,
        mapping={
            "user": session.user,
            "role": session.role,
            "via": session.via,
            "csrf": session.csrf,
            "since": repr(since),
        },
    )
    pipe.expire(key, TTL)
    pipe.execute()
    return cookie_value, session


def _still_valid(client: redis.Redis, user: str, role: str, via: str, since: float) -> bool:
    if via.startswith(VIA_TOKEN):
        return token_exists(client, via.removeprefix(VIA_TOKEN))
    record = get_user(client, user)
    return record is not None and record.role == role and record.password_set_at <= since


def session_for(client: redis.Redis, cookie_value: str) -> Session | None:
    """The live session a cookie names, its life extended by ``TTL``; None when
    it is unknown, expired, malformed, or its user may no longer sign in."""
    key = _key(cookie_value)
    if key is None:
        return None
    raw = {text(k): text(v) for k, v in client.hgetall(key).items()}
    try:
        user, role, via, csrf = raw["user"], raw["role"], raw["via"], raw["csrf"]
        since = float(raw.get("since", "0"))
    except (KeyError, ValueError):
        client.delete(key)
        return None
    if not _still_valid(client, user, role, via, since):
        client.delete(key)
        return None
    if not client.expire(key, TTL):
        return None  # it expired between the two calls
    return Session(user=user, role=role, via=via, csrf=csrf, expires_at=time.time() + TTL)


def close_session(client: redis.Redis, cookie_value: str) -> None:
    """Sign out: the cookie signs nobody in any more. Unknown values are ignored."""
    key = _key(cookie_value)
    if key is not None:
        client.delete(key)
