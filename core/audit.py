"""The audit log: every change and every run, who did it and when.

A Redis stream (``schemas.keys.AUDIT``), capped at about ``MAX_ENTRIES``
entries. Entries name ids, never keys or profile data; ``via`` says how the
user came in (``cli``, ``console``, ``token t_...``).
"""

from __future__ import annotations

import json
import time
from typing import Any, Final

import redis

from core.actors import Actor
from core.store import text
from schemas import keys

MAX_ENTRIES: Final = 100_000


def record(client: redis.Redis, actor: Actor, action: str, target: str, **detail: Any) -> None:
    client.xadd(
        keys.AUDIT,
        {
            "at": repr(time.time()),
            "user": actor.user,
            "role": actor.role,
            "action": action,
            "target": target,
            "via": actor.via or "cli",
            "detail": json.dumps(detail, sort_keys=True, default=str),
        },
        maxlen=MAX_ENTRIES,
        approximate=True,
    )


def recent(client: redis.Redis, limit: int = 50) -> list[dict[str, Any]]:
    """Newest first."""
    entries = []
    for _, raw in client.xrevrange(keys.AUDIT, count=limit) or []:
        entry = {text(k): text(v) for k, v in (raw or {}).items()}
        entries.append(
            {
                "at": float(entry["at"]),
                "user": entry["user"],
                "role": entry["role"],
                "action": entry["action"],
                "target": entry["target"],
                "via": entry.get("via", "cli"),
                "detail": json.loads(entry["detail"]),
            }
        )
    return entries
