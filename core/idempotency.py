"""``Idempotency-Key``: an orchestrator's retried POST gets the run the first one started.

An orchestrator (Airflow, Dagster, ...) that times out waiting for an answer
sends its request again. With the same key, the second request gets the
first one's run instead of a second run (or a 409 for the run in progress).
Keys are per caller (``scope``: the token's user), kept ``TTL`` seconds, and
stored under their sha256 so that Redis holds no caller-chosen text.

The key is claimed before the run is opened (``SET NX``), so two requests
racing with one key cannot both start a run; the claim then records the run
id (``settle``), or is dropped when the request was refused (``forget``) so
that a corrected retry may go ahead. A key reused for a different request
(another export, other options) is refused, as Stripe's API does.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Final

import redis

from core.errors import ExportBusy, InvalidInput
from schemas import keys

TTL: Final = 24 * 3600
PENDING_TTL: Final = 60
"""How long a claim waits for its run id: a server that died between the claim
and ``settle`` frees the key after this, not after a day."""
MAX_KEY_LENGTH: Final = 255
_PENDING: Final = ""


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Claim:
    """The outcome of a claim: ``run_id`` of the first request, or None: go ahead."""

    run_id: str | None


class Idempotency:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def _key(self, scope: str, key: str) -> str:
        if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
            raise InvalidInput(
                f"must be 1 to {MAX_KEY_LENGTH} printable characters", field="idempotency_key"
            )
        return keys.idempotency(_digest(scope), _digest(key))

    def claim(self, scope: str, key: str, request: str) -> Claim:
        """Take ``key`` for ``request`` (a fingerprint of what is asked), or say
        which run it already started."""
        name = self._key(scope, key)
        fingerprint = _digest(request)
        mine = json.dumps({"request": fingerprint, "run_id": _PENDING})
        if self.redis.set(name, mine, nx=True, ex=PENDING_TTL):
            return Claim(None)
        raw = self.redis.get(name)
        if raw is None:  # expired between the two calls: take it now
            return self.claim(scope, key, request)
        held = json.loads(raw)
        if held["request"] != fingerprint:
            raise InvalidInput(
                "this Idempotency-Key was used for another request: use a new key",
                field="idempotency_key",
            )
        if held["run_id"] == _PENDING:
            raise ExportBusy("a request with this Idempotency-Key is still being answered", "")
        return Claim(str(held["run_id"]))

    def settle(self, scope: str, key: str, request: str, run_id: str) -> None:
        name = self._key(scope, key)
        value = json.dumps({"request": _digest(request), "run_id": run_id})
        self.redis.set(name, value, ex=TTL)

    def forget(self, scope: str, key: str) -> None:
        self.redis.delete(self._key(scope, key))
