"""Claims on scheduled minutes: an export's run for one due minute is
requested once, however many beats or late ticks see that minute."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import redis

from schemas import keys

CLAIM_TTL: Final = 24 * 3600
"""How long a claimed minute is remembered: far longer than a tick's look-back."""


class ScheduleClaims:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def claim(self, export_id: str, minutes: Iterable[str]) -> list[str]:
        """The minutes (``YYYYmmddHHMM`` UTC) this caller claimed first (``SET NX``)."""
        return [
            minute
            for minute in minutes
            if self.redis.set(keys.schedule_fired(export_id, minute), "1", nx=True, ex=CLAIM_TTL)
        ]

    def release(self, export_id: str, minutes: Iterable[str]) -> None:
        """Give claims back (the request could not be published)."""
        names = [keys.schedule_fired(export_id, minute) for minute in minutes]
        if names:
            self.redis.delete(*names)
