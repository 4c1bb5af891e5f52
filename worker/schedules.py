"""Scheduled refreshes: beat ticks every minute, due exports get a request.

``celery -A worker beat`` sends ``kx.schedule_tick`` every minute; the tick
looks at every enabled export with a bound segment (``export add --segment``)
and, when its system refresh (``KLAVIYO_EXPORT_REFRESH_CRON``) or its own
``--schedule`` is due, publishes an ``ExportRequest`` (trigger ``schedule``,
requested_by ``schedule``) to ``kx.requests``. ``klaviyo-export listen``
starts the run, as for any upstream request: the worker never imports the
producer.

Cron expressions are five fields, read in UTC as Celery's ``crontab`` reads
them (day of month *and* day of week must both match, unlike classic cron's
*or* when both are restricted).

Exactly once per due minute: each tick looks back ``LOOKBACK_MINUTES`` (a
tick that ran late, or whose worker was down for a while, still sees the
minute), and claims each due minute of each export with ``SET NX`` on
``schemas.keys.schedule_fired`` before publishing. A second beat, a tick
delivered twice, or the next tick finds the claim and sends nothing. If
several due minutes of one export are unclaimed (a late tick), one request
covers them all: runs of one export never stack up. A claim whose publish
failed is released, so the next tick tries again.

Disabled, removed and segment-less exports are never requested; an export
disabled or removed after the request was sent is refused by the listener
(dead-lettered, see ``producer.listen``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import redis

from core.cron import parse_cron
from core.errors import NotFound
from core.schedule_claims import ScheduleClaims
from core.store import Export, Store
from schemas import tasks as names
from schemas.contracts import EXPORT_REQUEST, VERSION, load

log = logging.getLogger(__name__)

LOOKBACK_MINUTES: Final = 10
"""How far back a tick looks for due minutes nobody claimed yet."""
REQUESTED_BY: Final = "schedule"

Publish = Callable[[dict[str, Any]], None]


class Cron:
    """A five-field cron expression, matched minute by minute (UTC)."""

    def __init__(self, expression: str) -> None:
        spec = parse_cron(expression)
        self.expression = expression
        self._minute: set[int] = set(spec.minute)
        self._hour: set[int] = set(spec.hour)
        self._day_of_month: set[int] = set(spec.day_of_month)
        self._month: set[int] = set(spec.month_of_year)
        self._day_of_week: set[int] = set(spec.day_of_week)  # 0 = Sunday

    def matches(self, at: datetime) -> bool:
        return (
            at.minute in self._minute
            and at.hour in self._hour
            and at.day in self._day_of_month
            and at.month in self._month
            and at.isoweekday() % 7 in self._day_of_week
        )


@dataclass(frozen=True, slots=True)
class Requested:
    export_id: str
    minutes: tuple[str, ...]  # the due minutes this request covers, oldest first


def minute_stamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y%m%d%H%M")


def recent_minutes(now: datetime, lookback: int = LOOKBACK_MINUTES) -> list[datetime]:
    """The start of this minute and of the ``lookback - 1`` before it, oldest first (UTC)."""
    current = now.astimezone(UTC).replace(second=0, microsecond=0)
    return [current - timedelta(minutes=n) for n in reversed(range(lookback))]


def request_for(export_id: str) -> dict[str, Any]:
    """The ``ExportRequest`` a due schedule sends (the listener reads the bound segment)."""
    return load(
        EXPORT_REQUEST,
        {"v": VERSION, "export_id": export_id, "trigger": "schedule", "requested_by": REQUESTED_BY},
    )


def tick(
    store: Store,
    client: redis.Redis,
    publish: Publish,
    *,
    now: datetime,
    refresh_cron: str | None,
    lookback: int = LOOKBACK_MINUTES,
) -> list[Requested]:
    """Publish one request per export with an unclaimed due minute; returns them."""
    system = Cron(refresh_cron) if refresh_cron else None
    minutes = recent_minutes(now, lookback)
    claims = ScheduleClaims(client)
    requested = []
    for export in _schedulable(store):
        crons = _crons(export, system)
        created = datetime.fromtimestamp(export.created_at, UTC).replace(second=0, microsecond=0)
        due = [m for m in minutes if m >= created and any(c.matches(m) for c in crons)]
        if not due:
            continue
        claimed = claims.claim(export.id, map(minute_stamp, due))
        if not claimed:
            continue
        try:
            publish(request_for(export.id))
        except BaseException:
            claims.release(export.id, claimed)
            raise
        log.info("export %s: scheduled run requested (due %s UTC)", export.id, claimed[-1])
        requested.append(Requested(export.id, tuple(claimed)))
    return requested


def _schedulable(store: Store) -> Iterator[Export]:
    """Enabled exports with a bound segment; one removed meanwhile is passed over."""
    for export_id in store.export_ids():
        try:
            export = store.get_export(export_id)
        except NotFound:
            continue
        if export.enabled and export.segment:
            yield export


def _crons(export: Export, system: Cron | None) -> Sequence[Cron]:
    crons = [system] if system else []
    if export.schedule:
        try:
            crons.append(Cron(export.schedule))
        except ValueError as exc:
            log.warning("export %s: its schedule is ignored: %s", export.id, exc)
    return crons


def publisher(connection: Any) -> Publish:
    """Publish requests on ``connection`` (a kombu connection to the broker)."""

    def publish(request: dict[str, Any]) -> None:
        body = json.dumps(request, separators=(",", ":")).encode()
        names.publish_document(connection, names.REQUESTS_QUEUE, body)

    return publish
