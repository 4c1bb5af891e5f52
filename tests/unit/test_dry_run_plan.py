"""A dry run predicts exactly what a run would send, skip, reject and remove.

The plan and the run read the segment through one function against the same
export state; these tests hold the plan against what ``_read_and_store``
records for the same segment and state, and check that planning writes
nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from core.actors import Actor
from core.context import Context
from core.state import ExportState
from core.store import Connection, Export
from demo.sample import write_sample
from klaviyo_client import Operation
from producer.plan import Plan, import_schedule_seconds, plan_run
from producer.runner import RunRequest, _read_and_store
from schemas import keys

EXPORT = Export(
    id="e_1",
    name="n",
    connection_id="c_1",
    list_id="L1",
    email_field="email",
    properties={"plan": "plan"},
)
MIRROR = dataclasses.replace(EXPORT, mode="mirror")
CONNECTION = Connection(id="c_1", name="c", allow="contributors", created_by="t", created_at=0.0)
ACTOR = Actor("tester", "admin")


@pytest.fixture
def ctx(make_context: Callable[..., Context]) -> Context:
    return make_context(KLAVIYO_EXPORT_BATCH_PROFILES="100")


def _segment(path: Path, rows: dict[str, str], junk: int = 0) -> str:
    lines = ["email,plan"] + [f"{email},{plan}" for email, plan in rows.items()]
    lines += ["not-an-email,pro"] * junk
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _run(ctx: Context, export: Export, source: str, full: bool = False) -> dict[str, object]:
    """What a run records for ``source``, as the workers would see it after an import."""
    run_id = ctx.lifecycle.create(export.id, source, "tester", "c_1", "L1")
    loaded = _read_and_store(
        ctx, run_id, export, RunRequest(export.id, source, ACTOR, full=full), None
    )
    record = ctx.runs.get(run_id).counts
    brake = ctx.runs.brake_reason(run_id)
    return {
        "rows_read": loaded.rows_read,
        "rejected": record.rejected,
        "submitted": loaded.submitted,
        "unchanged": loaded.unchanged,
        "batches": loaded.batches,
        "to_remove": record.to_remove,
        "brake_reason": brake,
        "run_id": run_id,
    }


def _import(ctx: Context, export: Export, source: str) -> None:
    """Run ``source`` and record every batch in the export's state, as Klaviyo's import would."""
    run = _run(ctx, export, source)
    state = ExportState(ctx.redis, export.id)
    for number in range(int(str(run["batches"]))):
        stored = ctx.batches.load(str(run["run_id"]), number)
        assert stored is not None
        state.record(stored.emails, stored.digests)
    for key in list(ctx.redis.scan_iter(match=f"{keys.PREFIX}run*")):
        ctx.redis.delete(key)  # only the state stays, as after a finished run


def _snapshot(ctx: Context) -> dict[bytes, bytes | None]:
    return {key: ctx.redis.dump(key) for key in ctx.redis.scan_iter()}


def _agrees(plan: Plan, run: dict[str, object]) -> None:
    assert (plan.rows_read, plan.rejected, plan.submitted, plan.unchanged, plan.batches) == (
        run["rows_read"],
        run["rejected"],
        run["submitted"],
        run["unchanged"],
        run["batches"],
    )
    assert (plan.removals, plan.brake_reason) == (run["to_remove"], run["brake_reason"])


def test_a_first_run_is_all_adds(ctx: Context, tmp_path: Path) -> None:
    segment = tmp_path / "s.csv"
    makeup = write_sample(segment, 2500)
    export = dataclasses.replace(EXPORT, properties={})
    plan = plan_run(ctx, export, CONNECTION, str(segment), None)
    assert plan.rows_read == makeup.rows
    assert plan.rejected == makeup.rejected
    assert plan.rejected_by_reason == {
        "invalid_email": makeup.invalid_email,
        "missing_email": makeup.missing_email,
        "duplicate": makeup.duplicate,
    }
    assert (plan.adds, plan.submitted) == (makeup.valid, makeup.valid)
    assert (plan.delta, plan.updates, plan.unchanged, plan.removals) == (False, 0, 0, 0)
    assert plan.batches == -(-makeup.valid // 100)
    assert plan.calls[Operation.BULK_IMPORT] == plan.batches
    assert plan.expected_seconds > 0
    assert plan.blocker is None


def test_after_an_import_the_plan_tells_adds_updates_and_unchanged(
    ctx: Context, tmp_path: Path
) -> None:
    before = {f"p{i}@example.com": "pro" for i in range(1000)}
    _import(ctx, EXPORT, _segment(tmp_path / "1.csv", before))
    after = dict(before)
    for i in range(30):
        after[f"p{i}@example.com"] = "enterprise"  # changed
    for i in range(12):
        after[f"new{i}@example.com"] = "pro"  # new
    source = _segment(tmp_path / "2.csv", after, junk=5)

    plan = plan_run(ctx, EXPORT, CONNECTION, source, None)

    assert (plan.delta, plan.adds, plan.updates, plan.unchanged) == (True, 12, 30, 970)
    assert (plan.rejected, plan.submitted, plan.batches) == (5, 42, 1)
    _agrees(plan, _run(ctx, EXPORT, source))


def test_a_full_plan_sends_everything_and_tells_updates_from_adds(
    ctx: Context, tmp_path: Path
) -> None:
    before = {f"f{i}@example.com": "pro" for i in range(500)}
    _import(ctx, EXPORT, _segment(tmp_path / "1.csv", before))
    source = _segment(tmp_path / "2.csv", before | {"late@example.com": "pro"})

    plan = plan_run(ctx, EXPORT, CONNECTION, source, None, full=True)

    assert (plan.full, plan.delta) == (True, False)
    assert (plan.adds, plan.updates, plan.unchanged, plan.submitted) == (1, 500, 0, 501)
    _agrees(plan, _run(ctx, EXPORT, source, full=True))


def test_a_mirror_plan_counts_the_leavers_and_the_brake_lets_few_go(
    ctx: Context, tmp_path: Path
) -> None:
    everyone = {f"m{i}@example.com": "pro" for i in range(1000)}
    _import(ctx, MIRROR, _segment(tmp_path / "1.csv", everyone))
    staying = dict(list(everyone.items())[150:])  # 15%: under the 20% brake
    source = _segment(tmp_path / "2.csv", staying)

    plan = plan_run(ctx, MIRROR, CONNECTION, source, None)

    assert (plan.members, plan.removals, plan.unchanged, plan.submitted) == (1000, 150, 850, 0)
    assert (plan.brake_holds, plan.brake_reason) == (False, None)
    assert plan.calls[Operation.REMOVE_PROFILES_FROM_LIST] == 1
    assert plan.calls[Operation.GET_PROFILES] == 2  # 150 emails, 100 a lookup
    _agrees(plan, _run(ctx, MIRROR, source))


def test_a_mirror_plan_says_the_brake_holds_and_why_as_the_run_does(
    ctx: Context, tmp_path: Path
) -> None:
    everyone = {f"b{i}@example.com": "pro" for i in range(2500)}
    _import(ctx, MIRROR, _segment(tmp_path / "1.csv", everyone))
    source = _segment(tmp_path / "2.csv", dict(list(everyone.items())[1500:]))

    plan = plan_run(ctx, MIRROR, CONNECTION, source, None)

    assert plan.brake_holds
    assert plan.brake_reason == (
        "1,500 of 2,500 members (60%) would be removed, over the brake at 20%: "
        "approve or reject the run"
    )
    assert plan.calls[Operation.REMOVE_PROFILES_FROM_LIST] == 2
    assert plan.calls[Operation.GET_PROFILES] == 15
    _agrees(plan, _run(ctx, MIRROR, source))


def test_an_empty_mirror_segment_holds_every_removal(ctx: Context, tmp_path: Path) -> None:
    _import(ctx, MIRROR, _segment(tmp_path / "1.csv", {"e@example.com": "pro"}))
    source = _segment(tmp_path / "2.csv", {}, junk=3)
    plan = plan_run(ctx, MIRROR, CONNECTION, source, None)
    assert (plan.removals, plan.brake_holds) == (1, True)
    assert plan.brake_reason is not None
    assert "no valid row" in plan.brake_reason
    _agrees(plan, _run(ctx, MIRROR, source))


def test_planning_writes_nothing(ctx: Context, tmp_path: Path) -> None:
    everyone = {f"w{i}@example.com": "pro" for i in range(300)}
    _import(ctx, MIRROR, _segment(tmp_path / "1.csv", everyone))
    source = _segment(tmp_path / "2.csv", dict(list(everyone.items())[200:]), junk=2)
    before = _snapshot(ctx)
    for full in (False, True):
        plan_run(ctx, MIRROR, CONNECTION, source, None, full=full)
    assert _snapshot(ctx) == before


def test_the_plan_names_what_would_stop_the_run(ctx: Context, tmp_path: Path) -> None:
    source = _segment(tmp_path / "s.csv", {f"c{i}@example.com": "pro" for i in range(50)})
    capped = dataclasses.replace(EXPORT, max_profiles=40)
    over = plan_run(ctx, capped, CONNECTION, source, None).blocker
    assert over == (
        "the segment has 50 profiles to send, over export e_1's cap of 40: nothing was sent"
    )
    contract = dataclasses.replace(CONNECTION, contract_cap=10)
    assert "contract cap of 10" in str(plan_run(ctx, EXPORT, contract, source, None).blocker)
    disabled = dataclasses.replace(EXPORT, enabled=False)
    assert plan_run(ctx, disabled, CONNECTION, source, None).blocker == (
        "export e_1 is disabled: enable it to run it"
    )
    ctx.redis.set(keys.export_lock(EXPORT.id), "r_busy")
    busy = plan_run(ctx, EXPORT, CONNECTION, source, None).blocker
    assert busy is not None
    assert "has run r_busy in progress" in busy
    assert (
        plan_run(ctx, dataclasses.replace(EXPORT, id="e_2"), CONNECTION, source, None).blocker
        is None
    )


def test_import_schedule_follows_both_windows() -> None:
    assert import_schedule_seconds(0, 10, 150) == 0.0
    assert import_schedule_seconds(1, 10, 150) == 0.0
    assert import_schedule_seconds(10, 10, 150) == 0.0  # one burst
    assert import_schedule_seconds(11, 10, 150) == 1.0
    assert import_schedule_seconds(150, 10, 150) == 14.0  # the burst binds
    assert import_schedule_seconds(151, 10, 150) == 60.0  # then the steady window
    assert import_schedule_seconds(100, 9, 135) == 11.0  # 1M profiles, with headroom
