"""A segment goes in, the Klaviyo list comes out, and every row is accounted for.

Real Redis, the sandbox over HTTP, two real ``celery worker`` processes, and
the ``klaviyo-export`` command as a user runs it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from core.context import Context
from core.records import ExportSpec
from demo.sample import FAIL_EMAIL_PATTERN, write_sample
from tests.support.pipeline import LIST_ID, Pipeline, pipeline
from tests.support.services import redis_server


@pytest.fixture(scope="module")
def kx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    tmp = tmp_path_factory.mktemp("e2e")
    with redis_server() as url, pipeline(url, tmp, fail_email=FAIL_EMAIL_PATTERN) as running:
        yield running


def test_segment_of_25000_rows_is_exported_exactly(kx: Pipeline, tmp_path: Path) -> None:
    segment = tmp_path / "segment.csv.gz"
    makeup = write_sample(segment, 25_000, seed=11)
    assert makeup.invalid_email
    assert makeup.missing_email
    assert makeup.duplicate
    assert makeup.klaviyo_fails
    export_id = kx.add_export(kx.add_connection(), LIST_ID, "--property", "first_name")

    code, summary = kx.cli_json("run", export_id, "--source", str(segment), "--wait")

    counts = summary["counts"]
    assert summary["status"] == "partially_succeeded"
    assert code == 1  # --wait exits non-zero unless the run succeeded
    assert counts["rows_read"] == makeup.rows == 25_000
    assert counts["rejected_by_reason"] == {
        "invalid_email": makeup.invalid_email,
        "missing_email": makeup.missing_email,
        "duplicate": makeup.duplicate,
    }
    assert counts["rejected"] == makeup.rejected
    assert counts["submitted"] == makeup.valid
    assert counts["imported"] == makeup.imported
    assert counts["failed"] == makeup.klaviyo_fails
    assert counts["rows_read"] == counts["rejected"] + counts["imported"] + counts["failed"]
    assert summary["batches"]["total"] == summary["batches"]["done"] == 3

    assert sorted(kx.list_emails(LIST_ID)) == sorted(makeup.imported_emails)

    report = kx.cli("rejected", summary["run_id"], check=True).stdout
    rows = list(csv.DictReader(io.StringIO(report)))
    assert len(rows) == makeup.rejected + makeup.klaviyo_fails
    assert len({r["row"] for r in rows}) == len(rows)  # each bad row once, by its number
    stages = {(r["stage"], r["code"]) for r in rows}
    assert ("checks", "duplicate") in stages
    assert ("checks", "invalid_email") in stages
    klaviyo_rows = [r for r in rows if r["stage"] == "klaviyo"]
    assert len(klaviyo_rows) == makeup.klaviyo_fails
    assert all(r["row"] and r["reason"] for r in klaviyo_rows)


def test_clean_segment_succeeds_and_status_reports_it(kx: Pipeline, tmp_path: Path) -> None:
    segment = tmp_path / "clean.jsonl"
    segment.write_text("".join(f'{{"email": "clean{i}@example.org"}}\n' for i in range(50)))
    export_id = kx.add_export(kx.add_connection(), "TeSt02")

    code, summary = kx.cli_json("run", export_id, "--source", str(segment), "--wait")

    assert (code, summary["status"]) == (0, "succeeded")
    assert summary["counts"]["imported"] == 50
    code, status = kx.cli_json("status", summary["run_id"])
    assert status["status"] == "succeeded"
    assert status["counts"] == summary["counts"]
    code, listed = kx.cli_json("runs", "--export", export_id)
    assert [r["run_id"] for r in listed["runs"]] == [summary["run_id"]]


def test_saving_an_export_does_not_run_it(kx: Pipeline) -> None:
    export_id = kx.add_export(kx.add_connection())
    _, listed = kx.cli_json("runs", "--export", export_id)
    assert listed["runs"] == []


def test_export_for_an_unknown_list_is_refused_when_saved(kx: Pipeline) -> None:
    connection = kx.add_connection()
    proc = kx.cli(
        "export", "add", "--connection", connection, "--list-id", "NoSuch", "--email-field", "email"
    )
    assert proc.returncode == 2
    assert "--list-id" in proc.stderr
    assert "NoSuch" in proc.stderr


def test_unknown_list_fails_the_run_fast(kx: Pipeline, tmp_path: Path) -> None:
    ctx = Context.from_env(kx.env)
    connection = kx.add_connection()
    export = ctx.store.add_export(
        ExportSpec(name="gone", connection_id=connection, list_id="GoNe99", email_field="email"),
        created_by="t",
    )
    segment = tmp_path / "s.csv"
    write_sample(segment, 100)

    code, summary = kx.cli_json("run", export.id, "--source", str(segment), "--wait")

    assert (code, summary["status"]) == (1, "failed")
    assert "list GoNe99 does not exist" in summary["message"]
    assert summary["counts"]["submitted"] == 0


def test_bad_api_key_is_refused_and_fails_a_run_fast(kx: Pipeline, tmp_path: Path) -> None:
    kx.env["KX_BAD_KEY"] = "pk_" + "0" * 34
    proc = kx.cli("connection", "add", "--name", "bad", "--api-key-env", "KX_BAD_KEY")
    assert proc.returncode == 2
    assert "401" in proc.stderr
    assert kx.env["KX_BAD_KEY"] not in proc.stderr + proc.stdout

    ctx = Context.from_env(kx.env)
    bad = ctx.store.add_connection(
        name="bad",
        api_key=kx.env["KX_BAD_KEY"],
        allow="admins",
        created_by="t",
        account_id=None,
        verified_via=None,
        accepted_terms=True,
    )
    export = ctx.store.add_export(
        ExportSpec(name="x", connection_id=bad.id, list_id=LIST_ID, email_field="email"),
        created_by="t",
    )
    segment = tmp_path / "s.csv"
    write_sample(segment, 100)
    code, summary = kx.cli_json("run", export.id, "--source", str(segment), "--wait")
    assert (code, summary["status"]) == (1, "failed")
    assert "refused the connection's API key (401" in summary["message"]


def test_dry_run_prints_the_plan_and_sends_nothing(kx: Pipeline, tmp_path: Path) -> None:
    segment = tmp_path / "plan.csv"
    makeup = write_sample(segment, 3000, seed=4)
    export_id = kx.add_export(kx.add_connection(), LIST_ID)
    imports_before = kx.stats()["requests"]["by_operation"].get("bulk_import_profiles", 0)

    code, plan = kx.cli_json("run", export_id, "--source", str(segment), "--dry-run")

    assert code == 0
    assert (plan["rows_read"], plan["adds"], plan["rejected"]) == (
        makeup.rows,
        makeup.valid,
        makeup.rejected,
    )
    assert plan["calls"]["bulk_import_profiles"] == plan["batches"] == 1
    assert kx.stats()["requests"]["by_operation"].get("bulk_import_profiles", 0) == imports_before
    _, listed = kx.cli_json("runs", "--export", export_id)
    assert listed["runs"] == []
    text = kx.cli("run", export_id, "--source", str(segment), "--dry-run", check=True).stdout
    assert "nothing sent" in text
    assert "expected duration" in text


def test_resume_sends_again_only_what_did_not_succeed(kx: Pipeline, tmp_path: Path) -> None:
    segment = tmp_path / "resume.csv"
    makeup = write_sample(segment, 25_000, seed=21)
    export_id = kx.add_export(kx.add_connection(), "TeSt02")
    code, first = kx.cli_json("run", export_id, "--source", str(segment), "--wait")
    assert first["status"] == "partially_succeeded"
    assert first["counts"]["failed"] == makeup.klaviyo_fails
    imports_before = kx.stats()["requests"]["by_operation"]["bulk_import_profiles"]

    set_fail = requests.put(
        f"{kx.sandbox.base_url}/_sandbox/fail-email", json={"pattern": None}, timeout=10
    )  # Klaviyo's problem is over
    set_fail.raise_for_status()
    code, resumed = kx.cli_json("resume", first["run_id"], "--wait")

    assert (code, resumed["status"], resumed["attempt"]) == (0, "succeeded", 2)
    counts = resumed["counts"]
    assert counts["imported"] == makeup.valid
    assert counts["failed"] == 0
    assert counts["rows_read"] == counts["rejected"] + counts["imported"]
    resent = kx.stats()["requests"]["by_operation"]["bulk_import_profiles"] - imports_before
    assert resent == first["batches"]["partially_succeeded"] + first["batches"]["failed"]
    report = kx.cli("rejected", first["run_id"], check=True).stdout
    assert ",klaviyo," not in report  # the failed rows left the report
    again = kx.cli("resume", first["run_id"])
    assert again.returncode == 2
    assert "only failed, partially succeeded or rejected runs resume" in again.stderr
