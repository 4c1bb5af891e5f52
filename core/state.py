"""What an export has put in its Klaviyo list: email -> digest of the profile.

Workers add to it as Klaviyo imports rows (and drop what a mirror run
removed); producers read it to skip unchanged rows (delta runs) and to find
members no longer in the segment (mirror runs); ``reconcile`` compares the
real list with it. The digest is 8 bytes of BLAKE2b over the exact profile
JSON sent, so any change to a mapped property changes it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence

import redis

from core.store import text
from schemas import keys


def digest(profile_json: bytes) -> str:
    return hashlib.blake2b(profile_json, digest_size=8).hexdigest()


class ExportState:
    def __init__(self, client: redis.Redis, export_id: str) -> None:
        self.redis = client
        self.key = keys.export_state(export_id)

    def digests(self, emails: Sequence[str]) -> list[str | None]:
        """The stored digest of each email, None where it was never imported."""
        if not emails:
            return []
        return [text(d) if d is not None else None for d in self.redis.hmget(self.key, emails)]

    def record(self, emails: Iterable[str], digests: Iterable[str]) -> None:
        mapping = dict(zip(emails, digests, strict=True))
        if mapping:
            self.redis.hset(self.key, mapping=mapping)  # type: ignore[arg-type]

    def forget(self, emails: Sequence[str]) -> None:
        if emails:
            self.redis.hdel(self.key, *emails)

    def emails(self) -> Iterator[str]:
        for field, _ in self.redis.hscan_iter(self.key, count=5000):
            yield text(field)

    def size(self) -> int:
        return int(self.redis.hlen(self.key))

    def drop(self) -> None:
        self.redis.delete(self.key)
