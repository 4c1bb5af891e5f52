"""The schedule tick: which exports are due, and each due minute fires once."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import fakeredis
import pytest

from core.records import Export, ExportSpec
from core.secrets import SecretBox, generate_key
from core.store import Store
from schemas import keys
from schemas.contracts import EXPORT_REQUEST, load
from worker.schedules import Cron, recent_minutes, tick

MONDAY_0300 = datetime(2026, 1, 5, 3, 0, 20, tzinfo=UTC)  # 5 January 2026 is a Monday


class Published:
    """A fake publish callable that keeps what it was given."""

    def __init__(self, fail: bool = False) -> None:
        self.requests: list[dict[str, Any]] = []
        self.fail = fail

    def __call__(self, request: dict[str, Any]) -> None:
        if self.fail:
            raise ConnectionError("broker down")
        self.requests.append(request)

    @property
    def export_ids(self) -> list[str]:
        return [r["export_id"] for r in self.requests]


@pytest.fixture
def store() -> Store:
    return Store(fakeredis.FakeRedis(), SecretBox(generate_key()))


def _export(
    store: Store,
    *,
    schedule: str | None = None,
    segment: str | None = "/data/segment.csv",
    enabled: bool = True,
    created_at: float = 0.0,
) -> Export:
    connection_id = store.list_connections()[0].id if store.list_connections() else None
    if connection_id is None:
        connection_id = store.add_connection(
            name="c",
            api_key="pk_test",
            allow="admins",
            created_by="t",
            account_id=None,
            verified_via=None,
            accepted_terms=True,
        ).id
    spec = ExportSpec(
        name="e",
        connection_id=connection_id,
        list_id="L1",
        email_field="email",
        segment=segment,
        schedule=schedule,
        enabled=enabled,
    )
    export = store.add_export(spec, created_by="t")
    export = replace(export, created_at=created_at)  # long before the ticks below
    store.save_export(export)
    return export


def _tick(store: Store, publish: Published, now: datetime, refresh: str | None = None) -> list[str]:
    requested = tick(store, store.redis, publish, now=now, refresh_cron=refresh)
    return [r.export_id for r in requested]


def test_a_per_export_cron_fires_when_due_and_not_otherwise(store: Store) -> None:
    export = _export(store, schedule="*/15 * * * *")
    publish = Published()

    assert _tick(store, publish, datetime(2026, 1, 5, 3, 14, 50, tzinfo=UTC)) == []
    assert _tick(store, publish, datetime(2026, 1, 5, 3, 15, 1, tzinfo=UTC)) == [export.id]

    assert publish.requests == [
        {
            "v": 1,
            "export_id": export.id,
            "source": None,  # the listener reads the export's bound segment
            "format": None,
            "requested_by": "schedule",
            "trigger": "schedule",
        }
    ]
    assert load(EXPORT_REQUEST, publish.requests[0]) == publish.requests[0]


def test_the_system_refresh_runs_every_export_with_a_segment(store: Store) -> None:
    first = _export(store)
    second = _export(store, schedule="30 * * * *")
    publish = Published()

    assert sorted(_tick(store, publish, MONDAY_0300, refresh="0 3 * * *")) == sorted(
        [first.id, second.id]
    )
    assert _tick(store, publish, datetime(2026, 1, 5, 4, 0, 5, tzinfo=UTC), "0 3 * * *") == []
    assert _tick(store, publish, datetime(2026, 1, 5, 4, 30, 5, tzinfo=UTC), "0 3 * * *") == [
        second.id
    ]


def test_no_system_refresh_when_the_setting_is_empty(store: Store) -> None:
    _export(store)
    assert _tick(store, Published(), MONDAY_0300, refresh=None) == []


def test_both_crons_due_in_one_minute_send_one_request(store: Store) -> None:
    export = _export(store, schedule="0 * * * *")
    publish = Published()
    assert _tick(store, publish, MONDAY_0300, refresh="0 3 * * *") == [export.id]
    assert publish.export_ids == [export.id]


def test_disabled_segmentless_and_removed_exports_never_fire(store: Store) -> None:
    disabled = _export(store, schedule="* * * * *", enabled=False)
    _export(store, schedule="* * * * *", segment=None)
    removed = _export(store, schedule="* * * * *")
    store.remove_export(removed.id)
    publish = Published()

    assert _tick(store, publish, MONDAY_0300, refresh="* * * * *") == []

    store.save_export(replace(disabled, enabled=True))
    assert _tick(store, publish, MONDAY_0300, refresh="* * * * *") == [disabled.id]


def test_a_due_minute_fires_once_however_often_it_is_ticked(store: Store) -> None:
    export = _export(store, schedule="* * * * *")
    publish = Published()

    assert _tick(store, publish, MONDAY_0300) == [export.id]
    assert _tick(store, publish, MONDAY_0300) == []  # a second beat, or a redelivered tick
    assert _tick(store, publish, MONDAY_0300.replace(second=55)) == []
    assert _tick(store, publish, MONDAY_0300.replace(minute=1)) == [export.id]  # the next minute
    assert publish.export_ids == [export.id, export.id]
    assert store.redis.ttl(keys.schedule_fired(export.id, "202601050300")) > 3600


def test_a_late_tick_still_fires_and_the_next_does_not_again(store: Store) -> None:
    export = _export(store, schedule="0 3 * * *")
    publish = Published()

    late = datetime(2026, 1, 5, 3, 4, 10, tzinfo=UTC)  # the 03:00 tick never ran
    assert _tick(store, publish, late) == [export.id]
    assert _tick(store, publish, late.replace(minute=5)) == []
    assert publish.export_ids == [export.id]


def test_several_missed_minutes_make_one_request_not_a_pile(store: Store) -> None:
    export = _export(store, schedule="* * * * *")
    publish = Published()

    requested = tick(
        store, store.redis, publish, now=MONDAY_0300.replace(minute=5), refresh_cron=None
    )

    assert publish.export_ids == [export.id]
    assert len(requested[0].minutes) == 10  # every minute of the look-back, claimed once
    assert _tick(store, publish, MONDAY_0300.replace(minute=5, second=59)) == []


def test_a_failed_publish_releases_the_minute_for_the_next_tick(store: Store) -> None:
    export = _export(store, schedule="0 3 * * *")

    with pytest.raises(ConnectionError):
        _tick(store, Published(fail=True), MONDAY_0300)

    publish = Published()
    assert _tick(store, publish, MONDAY_0300.replace(minute=1)) == [export.id]


def test_an_export_added_after_the_due_minute_waits_for_the_next(store: Store) -> None:
    created = datetime(2026, 1, 5, 3, 2, tzinfo=UTC).timestamp()
    _export(store, schedule="0 3 * * *", created_at=created)
    assert _tick(store, Published(), MONDAY_0300.replace(minute=4)) == []


def test_a_broken_own_schedule_is_ignored_but_the_system_refresh_applies(store: Store) -> None:
    # Saving checks the schedule: a broken one comes from a record written by hand.
    export = replace(_export(store), schedule="every day")
    store.save_export(export)
    publish = Published()
    assert _tick(store, publish, MONDAY_0300.replace(hour=4), refresh="0 3 * * *") == []
    assert _tick(store, publish, MONDAY_0300, refresh="0 3 * * *") == [export.id]


@pytest.mark.parametrize(
    ("expression", "at", "due"),
    [
        ("0 3 * * *", datetime(2026, 1, 5, 3, 0, tzinfo=UTC), True),
        ("0 3 * * *", datetime(2026, 1, 5, 3, 1, tzinfo=UTC), False),
        ("0 3 * * 1", datetime(2026, 1, 5, 3, 0, tzinfo=UTC), True),  # Monday
        ("0 3 * * 0", datetime(2026, 1, 5, 3, 0, tzinfo=UTC), False),  # Sunday
        ("0 3 * * sun", datetime(2026, 1, 4, 3, 0, tzinfo=UTC), True),
        ("*/20 8-17 * * mon-fri", datetime(2026, 1, 7, 17, 40, tzinfo=UTC), True),
        ("*/20 8-17 * * mon-fri", datetime(2026, 1, 10, 17, 40, tzinfo=UTC), False),  # Saturday
        ("0 0 1 */3 *", datetime(2026, 4, 1, 0, 0, tzinfo=UTC), True),
        ("0 0 1 */3 *", datetime(2026, 5, 1, 0, 0, tzinfo=UTC), False),
    ],
)
def test_cron_matching(expression: str, at: datetime, due: bool) -> None:
    assert Cron(expression).matches(at) is due


@pytest.mark.parametrize("expression", ["* * * *", "61 * * * *", "every day"])
def test_bad_cron_expressions_are_refused(expression: str) -> None:
    with pytest.raises(ValueError, match="cron"):
        Cron(expression)


def test_recent_minutes_are_whole_utc_minutes_oldest_first() -> None:
    minutes = recent_minutes(datetime(2026, 1, 5, 3, 0, 59, 999, tzinfo=UTC), lookback=3)
    assert [m.strftime("%H:%M:%S") for m in minutes] == ["02:58:00", "02:59:00", "03:00:00"]
