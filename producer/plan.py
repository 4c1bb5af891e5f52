"""A dry run: what a run would do, computed from the segment, sending nothing.

The segment is read and checked exactly as a run reads it (``producer.segment``)
and packed into the same batches; nothing is written to Redis and no request
goes to Klaviyo. The calls per endpoint count the minimum a run makes; the
duration is the least Klaviyo's rate limits allow for the bulk imports (with
the same headroom the workers keep) plus one job's processing.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from klaviyo_client import RATE_LIMITS, Operation
from klaviyo_export.store import Export
from producer.batches import BatchPacker
from producer.segment import Rejected, checked_rows

JOB_SECONDS_PER_PROFILE: Final = 1 / 5000
"""A conservative guess at Klaviyo's own processing speed for one job."""


@dataclass
class Plan:
    export_id: str
    list_id: str
    mode: str
    rows_read: int = 0
    rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    adds: int = 0  # profiles upserted and added to the list
    updates: int = 0  # kept apart only by delta runs
    unchanged: int = 0
    removals: int = 0  # only mirror exports remove
    batches: int = 0
    calls: dict[str, int] = field(default_factory=dict)
    expected_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def import_schedule_seconds(jobs: int, burst: int, steady: int, window: float = 60.0) -> float:
    """When the last of ``jobs`` bulk imports may start, under both windows."""
    if jobs <= 0:
        return 0.0
    last = jobs - 1
    return float(max(last // burst, (last // steady) * window))


def plan_run(
    export: Export, source: str, fmt: str | None, batch_profiles: int, headroom: float
) -> Plan:
    plan = Plan(export_id=export.id, list_id=export.list_id, mode=export.mode)
    reasons: Counter[str] = Counter()
    packer = BatchPacker(max_profiles=batch_profiles)
    largest = 0
    for outcome in checked_rows(export, source, fmt):
        plan.rows_read += 1
        if isinstance(outcome, Rejected):
            reasons[outcome.code] += 1
            continue
        plan.adds += 1
        finished = packer.add(outcome.profile_json, outcome.row)
        if finished is not None:
            plan.batches += 1
            largest = max(largest, len(finished.rows))
    last = packer.flush()
    if last is not None:
        plan.batches += 1
        largest = max(largest, len(last.rows))
    plan.rejected = sum(reasons.values())
    plan.rejected_by_reason = dict(reasons)
    plan.calls = {
        Operation.GET_LIST: 1,  # the run's check of the list
        Operation.BULK_IMPORT: plan.batches,
        Operation.GET_IMPORT_JOB: plan.batches,  # at least one poll each
    }
    burst, steady = RATE_LIMITS[Operation.BULK_IMPORT]
    schedule = import_schedule_seconds(
        plan.batches, max(1, int(burst * headroom)), max(1, int(steady * headroom))
    )
    plan.expected_seconds = round(schedule + math.ceil(largest * JOB_SECONDS_PER_PROFILE), 1)
    return plan
