"""Mirror sync with its safety brake, delta runs and reconcile, end to end."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from klaviyo_client import ClientSettings, KlaviyoClient
from tests.support.pipeline import LIST_ID, OTHER_LIST_ID, Pipeline, pipeline
from tests.support.services import redis_server


@pytest.fixture(scope="module")
def kx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    tmp = tmp_path_factory.mktemp("mirror")
    with redis_server() as url, pipeline(url, tmp) as running:
        yield running


def _segment(path: Path, emails: list[str], plan: str = "pro") -> str:
    path.write_text("email,plan\n" + "".join(f"{e},{plan}\n" for e in emails))
    return str(path)


def _run(kx: Pipeline, export_id: str, source: str, *extra: str) -> tuple[int, dict[str, Any]]:
    code, out = kx.cli_json("run", export_id, "--source", source, "--wait", *extra)
    return code, out


def _wait_final(kx: Pipeline, run_id: str) -> dict[str, Any]:
    return kx.wait_for(run_id, lambda s: s["finished_at"] is not None, timeout=120)


def _imports(kx: Pipeline) -> int:
    return int(kx.stats()["requests"]["by_operation"].get("bulk_import_profiles", 0))


def test_delta_runs_send_only_new_and_changed_rows(kx: Pipeline, tmp_path: Path) -> None:
    export_id = kx.add_export(kx.add_connection(), LIST_ID, "--property", "plan")
    emails = [f"d{i}@example.com" for i in range(1000)]
    source = _segment(tmp_path / "a.csv", emails)
    code, first = _run(kx, export_id, source)
    assert (code, first["counts"]["imported"]) == (0, 1000)

    before = _imports(kx)
    code, same = _run(kx, export_id, source)
    assert (code, same["status"]) == (0, "succeeded")
    assert (same["counts"]["unchanged"], same["counts"]["submitted"]) == (1000, 0)
    assert _imports(kx) == before  # nothing was sent

    changed = tmp_path / "b.csv"
    changed.write_text(
        "email,plan\n"
        + "".join(f"{e},{'enterprise' if i < 10 else 'pro'}\n" for i, e in enumerate(emails))
        + "".join(f"new{i}@example.com,pro\n" for i in range(5))
    )
    code, delta = _run(kx, export_id, str(changed))
    counts = delta["counts"]
    assert (counts["submitted"], counts["unchanged"], counts["imported"]) == (15, 990, 15)
    assert counts["rows_read"] == counts["rejected"] + counts["unchanged"] + counts["submitted"]

    code, full = _run(kx, export_id, str(changed), "--full")
    assert (full["counts"]["submitted"], full["counts"]["unchanged"]) == (1005, 0)


def test_mirror_removes_leavers_and_the_brake_holds_big_removals(
    kx: Pipeline, tmp_path: Path
) -> None:
    _, out = kx.cli_json(
        "export",
        "add",
        "--connection",
        kx.add_connection(),
        "--list-id",
        OTHER_LIST_ID,
        "--email-field",
        "email",
        "--mode",
        "mirror",
    )
    export_id = out["id"]
    everyone = [f"m{i}@example.com" for i in range(100)]
    code, first = _run(kx, export_id, _segment(tmp_path / "1.csv", everyone))
    assert (code, first["counts"]["imported"]) == (0, 100)
    assert sorted(kx.list_emails(OTHER_LIST_ID)) == sorted(everyone)

    # 10 of 100 leave the segment: under the 20% brake, removed at once.
    code, second = _run(kx, export_id, _segment(tmp_path / "2.csv", everyone[:90]))
    assert (code, second["status"]) == (0, "succeeded")
    assert (second["counts"]["to_remove"], second["counts"]["removed"]) == (10, 10)
    assert sorted(kx.list_emails(OTHER_LIST_ID)) == sorted(everyone[:90])

    # 40 of 90 would leave: the brake holds; rejected, nothing is removed.
    code, started = kx.cli_json(
        "run", export_id, "--source", _segment(tmp_path / "3.csv", everyone[:50])
    )
    held = kx.wait_for(started["run_id"], lambda s: s["status"] == "awaiting_approval", 60)
    assert held["status"] == "awaiting_approval"
    assert "40 of 90 members (44%) would be removed" in held["message"]
    assert len(kx.list_emails(OTHER_LIST_ID)) == 90
    proc = kx.cli("reject", started["run_id"], "--json")
    assert proc.returncode == 0, proc.stderr
    rejected = json.loads(proc.stdout.splitlines()[-1])
    assert rejected["status"] == "rejected"
    assert "removals rejected by" in rejected["message"]
    assert len(kx.list_emails(OTHER_LIST_ID)) == 90

    # The same again, approved this time: the 40 leave the list.
    code, started = kx.cli_json(
        "run", export_id, "--source", _segment(tmp_path / "4.csv", everyone[:50])
    )
    kx.wait_for(started["run_id"], lambda s: s["status"] == "awaiting_approval", 60)
    code, approved = kx.cli_json("approve", started["run_id"])
    assert (code, approved["to_remove"]) == (0, 40)
    final = _wait_final(kx, started["run_id"])
    assert (final["status"], final["counts"]["removed"]) == ("succeeded", 40)
    assert sorted(kx.list_emails(OTHER_LIST_ID)) == sorted(everyone[:50])

    # An empty segment never wipes a list without approval.
    empty = tmp_path / "empty.csv"
    empty.write_text("email,plan\n")
    code, started = kx.cli_json("run", export_id, "--source", str(empty))
    held = kx.wait_for(started["run_id"], lambda s: s["status"] == "awaiting_approval", 60)
    assert "no valid row" in held["message"]
    kx.cli("reject", started["run_id"], check=True)
    assert len(kx.list_emails(OTHER_LIST_ID)) == 50


def test_reconcile_reports_members_added_by_hand_and_missing(kx: Pipeline, tmp_path: Path) -> None:
    kx.cli("export", "list")  # warm
    _, created = kx.cli_json(
        "export",
        "add",
        "--connection",
        kx.add_connection(),
        "--list-id",
        LIST_ID,
        "--email-field",
        "email",
    )
    export_id = created["id"]
    emails = [f"r{i}@example.com" for i in range(20)]
    _run(kx, export_id, _segment(tmp_path / "r.csv", emails))

    client = KlaviyoClient(kx.api_key, ClientSettings(base_url=kx.sandbox.base_url))
    (gone,) = list(client.iter_profiles_by_email([emails[0]]))
    client.remove_profiles_from_list(LIST_ID, [gone.id])  # removed by hand in Klaviyo

    code, drift = kx.cli_json("reconcile", export_id, "--show-emails")
    assert code == 0
    assert drift["missing_emails"] == [emails[0]]
    assert drift["exported"] == 20
    # LIST_ID also holds other tests' members: all of them count as added by hand here
    assert drift["added_by_hand"] == drift["list_members"] - 19
