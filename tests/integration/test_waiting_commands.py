"""The commands that wait (``run --wait``, ``resume --wait``, ``status --watch``) end
when the run ends, when it needs a decision, or at ``--timeout``, each with its
documented exit code; a skipped or refused run still answers ``--json``.

Real Redis, real workers, the sandbox over HTTP, the command as a user runs it.
Bulk import jobs in this sandbox wait 2 s in Klaviyo's queue, so a run is
reliably still going when the tests look at it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.pipeline import OTHER_LIST_ID, Pipeline, pipeline
from tests.support.services import redis_server


@pytest.fixture(scope="module")
def kx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    tmp = tmp_path_factory.mktemp("waiting")
    with redis_server() as url, pipeline(url, tmp, job_queue_seconds=2.0) as running:
        yield running


@pytest.fixture(scope="module")
def connection(kx: Pipeline) -> str:
    return kx.add_connection()


def _segment(path: Path, emails: list[str]) -> str:
    path.write_text("email,plan\n" + "".join(f"{e},pro\n" for e in emails))
    return str(path)


def _last_json(proc: subprocess.CompletedProcess[str]) -> dict[str, object]:
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr
    document: dict[str, object] = json.loads(lines[-1])
    return document


def test_run_wait_returns_at_the_brake_with_the_commands_to_decide(
    kx: Pipeline, connection: str, tmp_path: Path
) -> None:
    export_id = kx.add_export(connection, OTHER_LIST_ID, "--mode", "mirror")
    everyone = [f"brake{i}@example.com" for i in range(50)]
    first = kx.cli("run", export_id, "--source", _segment(tmp_path / "1.csv", everyone), "--wait")
    assert first.returncode == 0, first.stderr

    # Half the members leave: over the 20% brake. --wait must not wait forever.
    held = kx.cli(
        "run", export_id, "--source", _segment(tmp_path / "2.csv", everyone[:25]), "--wait"
    )

    assert held.returncode == 3, held.stderr
    run_id = held.stdout.splitlines()[0]
    assert f"klaviyo-export approve {run_id}" in held.stdout
    assert f"klaviyo-export reject {run_id}" in held.stdout
    assert "25 of 50 members (50%) would be removed" in held.stdout
    watched = kx.cli("status", run_id, "--watch", "--json")
    assert watched.returncode == 3
    decision = _last_json(watched)["decision"]
    assert isinstance(decision, dict)
    assert decision["reject"] == f"klaviyo-export reject {run_id}"

    rejected = kx.cli("reject", run_id, "--json")
    assert rejected.returncode == 0, rejected.stderr
    assert _last_json(rejected)["status"] == "rejected"
    after = kx.cli("status", run_id, "--watch")
    assert after.returncode == 1  # as run --wait: the run ended, not succeeded
    assert ": rejected" in after.stdout


def test_timeout_stops_waiting_and_the_run_goes_on(
    kx: Pipeline, connection: str, tmp_path: Path
) -> None:
    export_id = kx.add_export(connection)
    source = _segment(tmp_path / "slow.csv", [f"slow{i}@example.com" for i in range(30)])

    proc = kx.cli("run", export_id, "--source", source, "--wait", "--timeout", "0.5", "--json")

    assert proc.returncode == 4, proc.stderr
    out = _last_json(proc)
    assert out["timed_out"] is True
    assert out["status"] == "running"
    final = kx.cli("status", str(out["run_id"]), "--watch", "--timeout", "120", "--json")
    assert final.returncode == 0, final.stderr
    assert _last_json(final)["status"] == "succeeded"


def test_a_skipped_run_says_why_in_json_with_its_own_exit_code(
    kx: Pipeline, connection: str, tmp_path: Path
) -> None:
    export_id = kx.add_export(connection)
    source = _segment(tmp_path / "busy.csv", [f"busy{i}@example.com" for i in range(10)])
    code, first = kx.cli_json("run", export_id, "--source", source)
    assert code == 0

    second = kx.cli("--json", "run", export_id, "--source", source)  # global flag up front

    assert second.returncode == 6
    error = _last_json(second)["error"]
    assert isinstance(error, dict)
    assert (error["type"], error["run_in_progress"]) == ("skipped", first["run_id"])
    assert second.stderr.count("\n") == 1
    assert "in progress" in second.stderr
    done = kx.cli("status", str(first["run_id"]), "--watch", "--timeout", "120")
    assert done.returncode == 0


def test_a_refused_run_answers_json_too(kx: Pipeline, connection: str, tmp_path: Path) -> None:
    export_id = kx.add_export(connection)
    kx.cli("export", "disable", export_id, check=True)
    source = _segment(tmp_path / "off.csv", ["off@example.com"])

    hidden = kx.cli("run", export_id, "--source", source, "--json", "--as", "ann:contributor")
    disabled = kx.cli("run", export_id, "--source", source, "--json")

    assert (hidden.returncode, disabled.returncode) == (2, 2)
    error = _last_json(hidden)["error"]  # an admin-only connection's export: not found
    assert isinstance(error, dict)
    assert (error["type"], error["message"]) == ("not_found", f"no export {export_id!r}")
    error = _last_json(disabled)["error"]
    assert isinstance(error, dict)
    assert "disabled" in str(error["message"])


def test_rejected_lists_rows_as_json(kx: Pipeline, connection: str, tmp_path: Path) -> None:
    export_id = kx.add_export(connection)
    source = tmp_path / "bad.csv"
    source.write_text("email,plan\nok@example.com,pro\nnot-an-email,pro\n,pro\n")
    code, out = kx.cli_json("run", export_id, "--source", str(source), "--wait")
    assert code == 0

    proc = kx.cli("rejected", str(out["run_id"]), "--json")

    assert proc.returncode == 0, proc.stderr
    rows = _last_json(proc)["rows"]
    assert isinstance(rows, list)
    assert [(r["row"], r["stage"], r["code"]) for r in rows] == [
        (2, "checks", "invalid_email"),
        (3, "checks", "missing_email"),
    ]


def test_a_bound_segment_is_stored_absolute(kx: Pipeline, connection: str, tmp_path: Path) -> None:
    (tmp_path / "seg.csv").write_text("email\nx@example.com\n")
    proc = subprocess.run(
        [sys.executable, "-m", "frontdoors.cli.main", "export", "add", "--connection", connection,
         "--list-id", OTHER_LIST_ID, "--email-field", "email", "--segment", "seg.csv", "--json"],
        env=kx.env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert _last_json(proc)["segment"] == str(tmp_path / "seg.csv")
