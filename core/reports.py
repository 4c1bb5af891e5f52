"""A run's report: the rows rejected before upload and the rows Klaviyo failed,
each with its row number and reason, kept ``REPORT_TTL`` after the run ends."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final

import redis

from core.errors import NotFound
from schemas import keys
from schemas.keys import RunField

REPORT_TTL: Final = 30 * 24 * 3600
REPORT_COLUMNS: Final = ("row", "stage", "field", "code", "reason")
"""A row not exported: its source row, where it stopped (``checks`` before
upload, or ``klaviyo``), the field at fault, a reason code and the reason."""


class Reports:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def add_rejections(self, run_id: str, rejections: Iterable[Mapping[str, Any]]) -> None:
        """Append rejected rows (each with row, field, reason, code) and count them.

        One ``RPUSH`` for all of them and one ``HINCRBY`` per reason code, in
        one round trip: a million-row segment can have tens of thousands of
        rejections, and a command per row cost the producer about a second.
        """
        items = list(rejections)
        if not items:
            return
        by_code = Counter(str(item["code"]) for item in items)
        pipe = self.redis.pipeline(transaction=False)
        pipe.rpush(keys.run_rejected(run_id), *[json.dumps(item) for item in items])
        for code, count in by_code.items():
            pipe.hincrby(keys.run_rejected_reasons(run_id), code, count)
        pipe.hincrby(keys.run(run_id), RunField.REJECTED, len(items))
        pipe.execute()

    def rejected_rows(self, run_id: str) -> list[dict[str, Any]]:
        return [json.loads(r) for r in self.redis.lrange(keys.run_rejected(run_id), 0, -1)]

    def failed_rows(self, run_id: str) -> list[dict[str, Any]]:
        return [json.loads(r) for r in self.redis.lrange(keys.run_failed(run_id), 0, -1)]

    def not_exported(self, run_id: str) -> list[dict[str, Any]]:
        """Every row of the run that was not exported, as ``REPORT_COLUMNS``: the
        rows rejected before upload, then those Klaviyo failed (no emails)."""
        return list(self.iter_not_exported(run_id))

    def iter_not_exported(self, run_id: str, page: int = 5000) -> Iterator[dict[str, Any]]:
        """``not_exported``, read ``page`` rows at a time (a report can hold a
        million rows); ``NotFound`` at once, before the first row."""
        if not self.redis.exists(keys.run(run_id)):
            raise NotFound(f"no run {run_id!r}")
        return self._report_rows(run_id, page)

    def _report_rows(self, run_id: str, page: int) -> Iterator[dict[str, Any]]:
        for item in self._pages(keys.run_rejected(run_id), page):
            yield {
                "row": item["row"],
                "stage": "checks",
                "field": item.get("field") or "",
                "code": item["code"],
                "reason": item["reason"],
            }
        for item in self._pages(keys.run_failed(run_id), page):
            yield {
                "row": item.get("row") or "",
                "stage": "klaviyo",
                "field": item.get("field") or "",
                "code": item["code"],
                "reason": item["detail"],
            }

    def _pages(self, key: str, page: int) -> Iterator[dict[str, Any]]:
        start = 0
        while True:
            chunk = self.redis.lrange(key, start, start + page - 1)
            yield from (json.loads(r) for r in chunk)
            if len(chunk) < page:
                return
            start += page

    def drop_failed_rows(self, run_id: str, batches: set[int]) -> None:
        """A resume sends ``batches`` again: their failed rows leave the report."""
        failed_key = keys.run_failed(run_id)
        kept = [
            r
            for r in self.redis.lrange(failed_key, 0, -1)
            if json.loads(r).get("batch") not in batches
        ]
        pipe = self.redis.pipeline()
        pipe.delete(failed_key)
        if kept:
            pipe.rpush(failed_key, *kept)
        pipe.execute()

    def keep(self, run_id: str) -> None:
        """The run ended: its report expires ``REPORT_TTL`` from now."""
        pipe = self.redis.pipeline(transaction=False)
        for key in (keys.run_rejected(run_id), keys.run_failed(run_id)):
            pipe.expire(key, REPORT_TTL)
        pipe.execute()
