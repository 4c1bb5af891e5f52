"""Who may do what, consent before export, caps, overlap, removal that cancels,
key rotation, and the audit log: each rule proven through the real CLI.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from demo.sample import write_sample
from tests.support.pipeline import LIST_ID, OTHER_LIST_ID, Pipeline, pipeline
from tests.support.services import redis_server

ADMIN = ("--as", "ada:admin")
CONTRIBUTOR = ("--as", "carl:contributor")


@pytest.fixture(scope="module")
def kx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    tmp = tmp_path_factory.mktemp("roles")
    # Small batches under a fifth of Klaviyo's rate keep a run sending for
    # half a minute: long enough to overlap it and to remove its export mid-run.
    env = {
        "KLAVIYO_EXPORT_BATCH_PROFILES": "1000",
        "KLAVIYO_EXPORT_RATE_HEADROOM": "0.2",
        "KLAVIYO_EXPORT_VISIBILITY_TIMEOUT": "30",
    }
    with redis_server() as url, pipeline(url, tmp, workers=1, concurrency=2, env=env) as running:
        yield running


def _json(kx: Pipeline, *args: str) -> tuple[int, dict[str, Any], str]:
    proc = kx.cli(*args, "--json")
    lines = proc.stdout.strip().splitlines()
    return proc.returncode, (json.loads(lines[-1]) if lines else {}), proc.stderr


def _connection(kx: Pipeline, allow: str = "admins", terms: bool = True, *extra: str) -> str:
    kx.env["KX_KEY"] = kx.api_key
    args = [
        *ADMIN,
        "connection",
        "add",
        "--name",
        f"c-{allow}",
        "--api-key-env",
        "KX_KEY",
        "--allow",
        allow,
        *extra,
    ]
    if terms:
        args.append("--accept-privacy-terms")
    code, out, err = _json(kx, *args)
    assert code == 0, err
    return str(out["id"])


def _export(kx: Pipeline, connection: str, actor: tuple[str, str] = ADMIN, *extra: str) -> str:
    code, out, err = _json(
        kx,
        *actor,
        "export",
        "add",
        "--connection",
        connection,
        "--list-id",
        LIST_ID,
        "--email-field",
        "email",
        *extra,
    )
    assert code == 0, err
    return str(out["id"])


def test_only_admins_add_or_remove_connections(kx: Pipeline) -> None:
    kx.env["KX_KEY"] = kx.api_key
    code, _, err = _json(
        kx,
        *CONTRIBUTOR,
        "connection",
        "add",
        "--name",
        "x",
        "--api-key-env",
        "KX_KEY",
        "--accept-privacy-terms",
    )
    assert code == 2
    assert "only admins" in err
    connection = _connection(kx)
    code, _, err = _json(kx, *CONTRIBUTOR, "connection", "remove", connection)
    assert (code, "only admins" in err) == (2, True)


def test_the_default_actor_is_a_contributor(kx: Pipeline) -> None:
    env = {k: v for k, v in kx.env.items() if k != "KLAVIYO_EXPORT_ROLE"}
    saved, kx.env = kx.env, env
    try:
        code, _, err = _json(kx, "connection", "add", "--name", "x", "--api-key-env", "KX_KEY")
    finally:
        kx.env = saved
    assert code == 2
    assert "(contributor) may not add connections" in err


def test_no_export_uses_a_connection_before_its_privacy_terms_are_accepted(kx: Pipeline) -> None:
    connection = _connection(kx, "contributors", terms=False)
    code, _, err = _json(
        kx,
        *ADMIN,
        "export",
        "add",
        "--connection",
        connection,
        "--list-id",
        LIST_ID,
        "--email-field",
        "email",
    )
    assert code == 2
    assert "data-privacy terms have not been accepted" in err
    code, _, err = _json(kx, *CONTRIBUTOR, "connection", "accept-terms", connection)
    assert code == 2  # accepting is an admin's act
    code, out, err = _json(kx, *ADMIN, "connection", "accept-terms", connection)
    assert code == 0, err
    assert out["privacy_terms_accepted_by"] == "ada"
    _export(kx, connection, CONTRIBUTOR)


def test_contributors_are_refused_admin_only_connections(kx: Pipeline, tmp_path: Path) -> None:
    admins_only = _connection(kx, "admins")
    code, _, err = _json(
        kx,
        *CONTRIBUTOR,
        "export",
        "add",
        "--connection",
        admins_only,
        "--list-id",
        LIST_ID,
        "--email-field",
        "email",
    )
    assert code == 2
    assert f"no connection '{admins_only}'" in err  # hidden from contributors: not named
    export_id = _export(kx, admins_only)
    segment = tmp_path / "s.csv"
    write_sample(segment, 50)
    code, _, err = _json(kx, *CONTRIBUTOR, "run", export_id, "--source", str(segment))
    assert code == 2
    assert f"no export '{export_id}'" in err  # its connection is hidden, so is it
    code, _, err = _json(kx, *CONTRIBUTOR, "export", "remove", export_id)
    assert code == 2
    assert "only admins" in err


def test_contributors_use_open_connections(kx: Pipeline, tmp_path: Path) -> None:
    export_id = _export(kx, _connection(kx, "contributors"), CONTRIBUTOR)
    segment = tmp_path / "s.csv"
    segment.write_text("email\nopen1@example.com\nopen2@example.com\n")
    code, out, err = _json(kx, *CONTRIBUTOR, "run", export_id, "--source", str(segment), "--wait")
    assert (code, out.get("status")) == (0, "succeeded"), err


def test_over_a_cap_nothing_is_sent(kx: Pipeline, tmp_path: Path) -> None:
    segment = tmp_path / "s.csv"
    makeup = write_sample(segment, 400)
    capped = _export(kx, _connection(kx), ADMIN, "--max-profiles", "100")
    contract = _export(kx, _connection(kx, "admins", True, "--contract-cap", "50"))
    before = len(kx.list_emails(LIST_ID))
    for export_id, cap in ((capped, "cap of 100"), (contract, "contract cap of 50")):
        code, out, _ = _json(kx, *ADMIN, "run", export_id, "--source", str(segment), "--wait")
        assert (code, out["status"]) == (1, "failed")
        assert cap in out["message"]
        assert f"{makeup.valid:,} profiles" in out["message"]
        counts = out["counts"]
        assert counts["imported"] == 0
        assert counts["rows_read"] == counts["rejected"] + counts["failed"] == makeup.rows
    assert len(kx.list_emails(LIST_ID)) == before


def test_runs_never_overlap_and_removal_cancels_the_rest(kx: Pipeline, tmp_path: Path) -> None:
    segment = tmp_path / "big.csv"
    makeup = write_sample(segment, 60_000, seed=2)
    code, out, err = _json(
        kx,
        *ADMIN,
        "export",
        "add",
        "--connection",
        _connection(kx),
        "--list-id",
        OTHER_LIST_ID,
        "--email-field",
        "email",
    )
    export_id = out["id"]
    code, started, err = _json(kx, *ADMIN, "run", export_id, "--source", str(segment))
    assert code == 0, err
    run_id = started["run_id"]

    code, skipped, err = _json(kx, *ADMIN, "run", export_id, "--source", str(segment))
    assert code == 6  # skipped: a run of the export is in progress
    assert f"has run {run_id} in progress: this run is skipped" in err
    assert skipped["error"]["run_in_progress"] == run_id

    kx.wait_for(run_id, lambda s: s["batches"]["done"] >= 1)
    code, removed, err = _json(kx, *ADMIN, "export", "remove", export_id)
    assert code == 0, err
    assert removed["runs_cancelled"] == [run_id]
    final = kx.wait_for(run_id, lambda s: s["finished_at"] is not None, timeout=300)

    assert final["status"] == "cancelled"
    counts = final["counts"]
    assert counts["rows_read"] == makeup.rows
    assert counts["rows_read"] == counts["rejected"] + counts["imported"] + counts["failed"]
    assert 0 < counts["imported"] < makeup.valid, (final["batches"], counts)
    assert final["batches"]["cancelled"] >= 1
    assert len(kx.list_emails(OTHER_LIST_ID)) == counts["imported"]
    report = kx.cli("rejected", run_id, check=True).stdout
    assert "not_sent" in report
    code, _, err = _json(kx, *ADMIN, "run", export_id, "--source", str(segment))
    assert code == 2
    assert "no export" in err


def test_rotating_the_key_keeps_exports_and_refuses_another_account(kx: Pipeline) -> None:
    connection = _connection(kx)
    export_id = _export(kx, connection)
    kx.env["KX_NEW_KEY"] = kx.api_key
    code, out, err = _json(
        kx, *ADMIN, "connection", "rotate-key", connection, "--api-key-env", "KX_NEW_KEY"
    )
    assert code == 0, err
    assert out["key_rotated_at"]
    code, listed, _ = _json(kx, "export", "list")
    assert export_id in {e["id"] for e in listed["exports"]}
    kx.env["KX_OTHER_KEY"] = "pk_" + "1" * 34  # not a key of this sandbox
    code, _, err = _json(
        kx, *ADMIN, "connection", "rotate-key", connection, "--api-key-env", "KX_OTHER_KEY"
    )
    assert code == 2
    assert "401" in err


def test_every_change_and_run_is_audited(kx: Pipeline, tmp_path: Path) -> None:
    connection = _connection(kx, "contributors")
    export_id = _export(kx, connection, CONTRIBUTOR)
    segment = tmp_path / "s.csv"
    segment.write_text("email\naudit@example.com\n")
    _, run, _ = _json(kx, *CONTRIBUTOR, "run", export_id, "--source", str(segment), "--wait")
    _json(kx, *ADMIN, "export", "remove", export_id)
    _, log, _ = _json(kx, "audit", "--limit", "500")
    seen = {(e["action"], e["target"], e["user"], e["role"]) for e in log["entries"]}
    assert ("connection.add", connection, "ada", "admin") in seen
    assert ("export.add", export_id, "carl", "contributor") in seen
    assert ("run.start", run["run_id"], "carl", "contributor") in seen
    assert ("export.remove", export_id, "ada", "admin") in seen
    assert kx.api_key not in str(log)
