"""What a run decides for every row, computed once for runs and dry runs.

A run and its dry run read the segment through the same function,
:func:`read_segment`, against the same export state (``ExportState``): a row
is rejected (with its reason), unchanged (a delta run skips it), an update (its
email was imported before, with another profile) or an add (a new email). A
mirror export then takes the members it put in the list that have left the
segment as its removals (:func:`decide_removals`) and asks the safety brake
(``brake_reason``) whether they may go ahead. The run stores what was decided
(batches, rejections, removals); the dry run (:func:`plan_run`) only counts it,
so a plan and the run after it cannot disagree, and a dry run writes nothing
to Redis and sends nothing to Klaviyo.

The calls per endpoint in a plan count the minimum a run makes; the duration
is the least Klaviyo's rate limits allow for them (with the same headroom the
workers keep) plus one job's processing.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from core import queries
from core.actors import Actor, require_person, require_use
from core.context import Context
from core.mirror import brake_reason
from core.removal_store import REMOVAL_CHUNK
from core.state import ExportState, digest
from core.store import Connection, Export
from klaviyo_client import RATE_LIMITS, Operation
from klaviyo_client.constants import MAX_EMAILS_PER_LOOKUP
from producer.batches import Batch, BatchPacker
from producer.dedup import EmailDeduplicator
from producer.profiles import MappedProfile
from producer.segment import Rejected, checked_rows

JOB_SECONDS_PER_PROFILE: Final = 1 / 5000
"""A conservative guess at Klaviyo's own processing speed for one job."""

STATE_LOOKUP_CHUNK: Final = 1000
"""Accepted rows looked up in the export's state per round trip."""
PROGRESS_EVERY: Final = 10_000

BatchSink = Callable[[Batch, list[str], list[str]], None]
"""Takes a packed batch with its rows' emails and digests (aligned with its rows)."""


@dataclass
class Reading:
    """What reading a segment decided, row by row.

    ``updates`` is only told apart from ``adds`` when rows are looked up in the
    export's state: in delta runs, and in every plan. A full run does not look
    its rows up (it sends them all anyway), so it counts them all as adds.
    """

    delta: bool  # unchanged rows are skipped
    segment: EmailDeduplicator | None  # mirror exports: the segment's valid emails
    rows_read: int = 0
    rejected: int = 0
    adds: int = 0
    updates: int = 0
    unchanged: int = 0
    batches: int = 0
    in_segment: int = 0  # valid, unique rows (sent or unchanged)

    @property
    def submitted(self) -> int:
        """The rows a run sends: what its ``submitted`` count will say."""
        return self.adds + self.updates


def read_segment(
    export: Export,
    state: ExportState,
    source: str,
    fmt: str | None,
    *,
    full: bool,
    batch_profiles: int,
    on_batch: BatchSink,
    on_rejected: Callable[[Rejected], None],
    on_progress: Callable[[int], None] | None = None,
    look_up_full: bool = False,
) -> Reading:
    """Stream the segment, decide each row against ``state``, pack what is sent.

    A delta run (not ``full``, and the export has imported before) skips rows
    whose profile digest equals the stored one. ``look_up_full`` makes a full
    run look its rows up too, only to tell updates from adds (a plan wants
    that; a run does not pay the round trips for it).
    """
    has_state = state.size() > 0
    delta = not full and has_state
    look_up = has_state and (delta or look_up_full)
    reading = Reading(delta, EmailDeduplicator() if export.mode == "mirror" else None)
    packer = BatchPacker(max_profiles=batch_profiles)
    pending: list[tuple[str, str]] = []  # (email, digest) of the rows in the packer
    waiting: list[MappedProfile] = []  # accepted rows whose decision is pending

    def emit(batch: Batch) -> None:
        meta = pending[: len(batch.rows)]
        del pending[: len(batch.rows)]
        reading.batches += 1
        on_batch(batch, [m[0] for m in meta], [m[1] for m in meta])

    def decide(rows: list[MappedProfile]) -> None:
        digests = [digest(r.profile_json) for r in rows]
        if not look_up:
            reading.adds += len(rows)
            for row, new in zip(rows, digests, strict=True):
                pending.append((row.email, new))
                finished = packer.add(row.profile_json, row.row)
                if finished is not None:
                    emit(finished)
            rows.clear()
            return
        known = state.digests([r.email for r in rows])
        for row, new, old in zip(rows, digests, known, strict=True):
            if old is None:
                reading.adds += 1
            elif delta and new == old:
                reading.unchanged += 1
                continue
            else:
                reading.updates += 1
            pending.append((row.email, new))
            finished = packer.add(row.profile_json, row.row)
            if finished is not None:
                emit(finished)
        rows.clear()

    seen = reading.segment.seen_before if reading.segment is not None else None
    rows_read = rejected = in_segment = 0
    for outcome in checked_rows(export, source, fmt):
        rows_read += 1
        if on_progress is not None and rows_read % PROGRESS_EVERY == 0:
            on_progress(rows_read)
        if isinstance(outcome, Rejected):
            rejected += 1
            on_rejected(outcome)
            continue
        in_segment += 1
        if seen is not None:
            seen(outcome.email)
        waiting.append(outcome)
        if len(waiting) >= STATE_LOOKUP_CHUNK:
            decide(waiting)
    decide(waiting)
    last = packer.flush()
    if last is not None:
        emit(last)
    reading.rows_read, reading.rejected, reading.in_segment = rows_read, rejected, in_segment
    return reading


@dataclass(frozen=True)
class Removals:
    """A mirror run's removals and what the safety brake says of them."""

    to_remove: int
    members: int  # what the export has put in the list, as its state knows it
    brake_reason: str | None  # None: the removals go ahead without approval


def decide_removals(
    export: Export,
    state: ExportState,
    reading: Reading,
    keep: Callable[[Iterable[str]], int],
) -> Removals | None:
    """The members the export put in the list that are not in this segment.

    ``keep`` consumes the leaving emails and returns how many there were (a
    run stores them, a plan counts them). None for an export that only adds.
    """
    if reading.segment is None:
        return None
    segment = reading.segment
    members = state.size()
    leaving = (email for email in state.emails() if not segment.seen_before(email))
    to_remove = keep(leaving)
    return Removals(
        to_remove, members, brake_reason(export, to_remove, members, reading.in_segment)
    )


def cap_breach(submitted: int, export: Export, connection: Connection, default: int) -> str | None:
    """Why ``submitted`` profiles are over a cap (the run then sends nothing), or None."""
    caps = [
        (export.max_profiles or default, f"export {export.id}'s cap"),
        (connection.contract_cap, f"connection {connection.id}'s contract cap"),
    ]
    for cap, name in caps:
        if cap and submitted > cap:
            return (
                f"the segment has {submitted:,} profiles to send, over {name} of {cap:,}: "
                "nothing was sent"
            )
    return None


def disabled_reason(export: Export) -> str | None:
    """Why a run of ``export`` is refused before it starts, or None."""
    if not export.enabled:
        return f"export {export.id} is disabled: enable it to run it"
    return None


@dataclass
class Plan:
    export_id: str
    list_id: str
    mode: str
    full: bool = False
    delta: bool = False  # unchanged rows would be skipped (the export has imported before)
    rows_read: int = 0
    rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    adds: int = 0  # new emails: profiles upserted and added to the list
    updates: int = 0  # emails imported before whose profile changed (all of them with --full)
    unchanged: int = 0  # skipped by a delta run
    submitted: int = 0  # adds + updates: the run's ``submitted`` count
    members: int = 0  # what the export has put in the list so far
    removals: int = 0  # only mirror exports remove: the run's ``to_remove`` count
    brake_holds: bool = False  # the run would wait in awaiting_approval
    brake_reason: str | None = None  # the run's message when it does
    blocker: str | None = None  # why a run now would send nothing (refused or failed)
    batches: int = 0
    calls: dict[str, int] = field(default_factory=dict)
    expected_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def import_schedule_seconds(jobs: int, burst: int, steady: int, window: float = 60.0) -> float:
    """When the last of ``jobs`` calls of one operation may start, under both windows."""
    if jobs <= 0:
        return 0.0
    last = jobs - 1
    return float(max(last // burst, (last // steady) * window))


def dry_run(
    ctx: Context, actor: Actor, export_id: str, source: str, fmt: str | None, full: bool = False
) -> Plan:
    """The plan of a run the actor may start (the same rules as a run's; an
    upstream system's trigger starts runs, it does not plan them)."""
    require_person(actor, "plan a run (dry run)")
    export = queries.get_export(ctx, actor, export_id)
    connection = ctx.store.get_connection(export.connection_id)
    require_use(actor, connection)
    return plan_run(ctx, export, connection, source, fmt, full=full)


def plan_run(
    ctx: Context,
    export: Export,
    connection: Connection,
    source: str,
    fmt: str | None,
    full: bool = False,
) -> Plan:
    """What ``run`` would do now, decided as the run decides it; writes and sends nothing."""
    plan = Plan(export_id=export.id, list_id=export.list_id, mode=export.mode, full=full)
    state = ExportState(ctx.redis, export.id)
    reasons: Counter[str] = Counter()
    largest = 0

    def count_batch(batch: Batch, emails: list[str], digests: list[str]) -> None:
        nonlocal largest
        largest = max(largest, len(batch.rows))

    def count_rejection(outcome: Rejected) -> None:
        reasons[outcome.code] += 1

    reading = read_segment(
        export,
        state,
        source,
        fmt,
        full=full,
        batch_profiles=ctx.settings.batch_profiles,
        on_batch=count_batch,
        on_rejected=count_rejection,
        look_up_full=True,
    )
    removals = decide_removals(export, state, reading, keep=_count)
    plan.delta = reading.delta
    plan.rows_read, plan.rejected = reading.rows_read, reading.rejected
    plan.rejected_by_reason = dict(reasons)
    plan.adds, plan.updates, plan.unchanged = reading.adds, reading.updates, reading.unchanged
    plan.submitted, plan.batches = reading.submitted, reading.batches
    plan.members = state.size() if removals is None else removals.members
    if removals is not None:
        plan.removals = removals.to_remove
        plan.brake_reason = removals.brake_reason
        plan.brake_holds = removals.brake_reason is not None
    plan.blocker = _blocker(ctx, export, connection, plan.submitted)
    _estimate(plan, largest, ctx.settings.rate_headroom)
    return plan


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _count(emails: Iterable[str]) -> int:
    return sum(1 for _ in emails)


def _blocker(ctx: Context, export: Export, connection: Connection, submitted: int) -> str | None:
    """What would stop a run started now before it sends anything, as the run says it."""
    reason = disabled_reason(export)
    if reason is not None:
        return reason
    holder = ctx.locks.holder(export.id)
    if holder is not None:
        return f"export {export.id} has run {holder} in progress: a run now is skipped"
    return cap_breach(submitted, export, connection, ctx.settings.max_profiles_per_run)


def _estimate(plan: Plan, largest: int, headroom: float) -> None:
    """The calls a run makes at least, and the least time the rate limits allow."""
    full_chunks, rest = divmod(plan.removals, REMOVAL_CHUNK)
    chunks = full_chunks + (1 if rest else 0)
    # each chunk looks its emails up MAX_EMAILS_PER_LOOKUP at a time
    lookups = full_chunks * _ceil_div(REMOVAL_CHUNK, MAX_EMAILS_PER_LOOKUP)
    lookups += _ceil_div(rest, MAX_EMAILS_PER_LOOKUP)
    plan.calls = {
        Operation.GET_LIST: 1,  # the run's check of the list
        Operation.BULK_IMPORT: plan.batches,
        Operation.GET_IMPORT_JOB: plan.batches,  # at least one poll each
    }
    if chunks:
        plan.calls[Operation.GET_PROFILES] = lookups  # the leavers' profile ids
        plan.calls[Operation.REMOVE_PROFILES_FROM_LIST] = chunks

    def schedule(operation: str, calls: int) -> float:
        burst, steady = RATE_LIMITS[operation]
        return import_schedule_seconds(
            calls, max(1, int(burst * headroom)), max(1, int(steady * headroom))
        )

    adds = schedule(Operation.BULK_IMPORT, plan.batches)
    adds += math.ceil(largest * JOB_SECONDS_PER_PROFILE)
    removing = max(
        schedule(Operation.REMOVE_PROFILES_FROM_LIST, chunks),
        schedule(Operation.GET_PROFILES, lookups),
    )
    plan.expected_seconds = round(adds + removing, 1)
