"""``run --dry-run`` predicts what the real run that follows it reports.

Through the command, against real workers, real Redis and the sandbox over
HTTP: after an import, with rows changed, added and dropped from a mirror
export's segment, the plan's adds, updates, unchanged, removals and brake are
exactly what ``run`` then counts (``submitted``, ``unchanged``, ``to_remove``,
``awaiting_approval`` or not), and the dry run itself wrote nothing to Redis
and sent nothing to Klaviyo.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from schemas import keys
from tests.support.pipeline import LIST_ID, Pipeline, pipeline
from tests.support.services import redis_server


@pytest.fixture(scope="module")
def kx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    tmp = tmp_path_factory.mktemp("dry-run")
    with redis_server() as url, pipeline(url, tmp) as running:
        yield running


def _segment(path: Path, rows: dict[str, str], junk: int = 0) -> str:
    lines = ["email,plan", *(f"{email},{plan}" for email, plan in rows.items())]
    lines += [f"not an email {i},pro" for i in range(junk)]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _ours(client: redis.Redis) -> dict[bytes, bytes | None]:
    """Every key of the project (Celery's own aside) with its serialized value."""
    return {key: client.dump(key) for key in client.scan_iter(match=keys.PREFIX + "*")}


def _dry_run(kx: Pipeline, export_id: str, source: str, *extra: str) -> dict[str, Any]:
    """The plan, checking that making it wrote nothing and sent nothing."""
    client = redis.Redis.from_url(kx.env["REDIS_URL"])
    before, requests_before = _ours(client), kx.stats()["requests"]["total"]
    code, plan = kx.cli_json("run", export_id, "--source", source, "--dry-run", *extra)
    after = _ours(client)
    assert code == 0
    assert kx.stats()["requests"]["total"] == requests_before  # nothing sent to Klaviyo
    assert set(after) <= set(before)  # no key written (one may have expired meanwhile)
    assert {key: after[key] for key in after} == {key: before[key] for key in after}
    return plan


def _predicted(plan: dict[str, Any], run: dict[str, Any]) -> None:
    counts = run["counts"]
    assert (plan["rows_read"], plan["rejected"]) == (counts["rows_read"], counts["rejected"])
    assert plan["submitted"] == plan["adds"] + plan["updates"] == counts["submitted"]
    assert plan["unchanged"] == counts["unchanged"]
    assert plan["removals"] == counts["to_remove"]
    assert plan["batches"] == run["batches"]["total"]
    assert plan["brake_holds"] == (run["status"] == "awaiting_approval")
    if plan["brake_holds"]:
        assert run["message"] == plan["brake_reason"]


def test_the_dry_run_predicts_a_mirror_run_and_its_brake(kx: Pipeline, tmp_path: Path) -> None:
    export_id = kx.add_export(
        kx.add_connection(), LIST_ID, "--property", "plan", "--mode", "mirror"
    )
    first = {f"u{i}@example.com": "pro" for i in range(3000)}
    code, imported = kx.cli_json(
        "run", export_id, "--source", _segment(tmp_path / "1.csv", first, junk=7), "--wait"
    )
    assert (code, imported["counts"]["imported"]) == (0, 3000)

    # 200 change, 300 leave (10%: under the brake), 100 join.
    second = dict(list(first.items())[300:])
    second.update({f"u{i}@example.com": "enterprise" for i in range(300, 500)})
    second.update({f"v{i}@example.com": "pro" for i in range(100)})
    source = _segment(tmp_path / "2.csv", second, junk=5)
    plan = _dry_run(kx, export_id, source)
    assert (plan["adds"], plan["updates"], plan["unchanged"]) == (100, 200, 2500)
    assert (plan["members"], plan["removals"], plan["brake_holds"]) == (3000, 300, False)
    assert (plan["delta"], plan["blocker"]) == (True, None)
    code, run = kx.cli_json("run", export_id, "--source", source, "--wait")
    assert (code, run["status"]) == (0, "succeeded")
    _predicted(plan, run)

    # 1,000 of the 2,800 members leave: over the 20% brake.
    third = dict(list(second.items())[1000:])
    source = _segment(tmp_path / "3.csv", third)
    plan = _dry_run(kx, export_id, source)
    assert (plan["adds"], plan["updates"], plan["unchanged"]) == (0, 0, 1800)
    assert (plan["members"], plan["removals"], plan["brake_holds"]) == (2800, 1000, True)
    assert plan["brake_reason"] == (
        "1,000 of 2,800 members (36%) would be removed, over the brake at 20%: "
        "approve or reject the run"
    )
    # Started, held at the brake, and read as `status --json` shows it.
    _, started = kx.cli_json("run", export_id, "--source", source)
    kx.wait_for(started["run_id"], lambda s: s["status"] == "awaiting_approval", 120)
    _, held = kx.cli_json("status", started["run_id"])
    _predicted(plan, held)
    kx.cli("reject", started["run_id"], check=True)

    # A full run sends every row again: nothing is unchanged. The 1,000 the
    # brake kept are back in this segment, so nobody leaves.
    plan = _dry_run(kx, export_id, _segment(tmp_path / "2b.csv", second), "--full")
    assert (plan["full"], plan["delta"]) == (True, False)
    assert (plan["adds"], plan["updates"], plan["unchanged"]) == (0, 2800, 0)
    assert (plan["removals"], plan["brake_holds"]) == (0, False)
    code, run = kx.cli_json(
        "run", export_id, "--source", str(tmp_path / "2b.csv"), "--wait", "--full"
    )
    assert (code, run["status"]) == (0, "succeeded")
    _predicted(plan, run)


def test_the_dry_run_text_says_what_the_brake_would_do(kx: Pipeline, tmp_path: Path) -> None:
    export_id = kx.add_export(
        kx.add_connection(), LIST_ID, "--property", "plan", "--mode", "mirror"
    )
    everyone = {f"t{i}@example.com": "pro" for i in range(200)}
    kx.cli(
        "run", export_id, "--source", _segment(tmp_path / "1.csv", everyone), "--wait", check=True
    )
    source = _segment(tmp_path / "2.csv", dict(list(everyone.items())[100:]))
    text = kx.cli("run", export_id, "--source", source, "--dry-run", check=True).stdout
    assert "delta run" in text
    assert "unchanged               100" in text
    assert "removals                100" in text
    assert "the safety brake holds the removals: 100 of 200 members (50%) would be removed" in text
