"""A run whose every batch Klaviyo failed (imported 0) resumes on real Redis, and
the export is free to run again afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.pipeline import Pipeline, pipeline
from tests.support.services import redis_server


@pytest.fixture(scope="module")
def kx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    tmp = tmp_path_factory.mktemp("resume-failed")
    with redis_server() as url, pipeline(url, tmp, fail_email=r"@example\.com$") as running:
        yield running


def test_a_wholly_failed_run_resumes_and_releases_its_lock(kx: Pipeline, tmp_path: Path) -> None:
    segment = tmp_path / "all-fail.csv"
    segment.write_text("email\n" + "".join(f"u{i}@example.com\n" for i in range(2500)))
    export_id = kx.add_export(kx.add_connection())
    code, first = kx.cli_json("run", export_id, "--source", str(segment), "--wait")
    assert (code, first["status"]) == (1, "failed")
    assert (first["counts"]["imported"], first["counts"]["failed"]) == (0, 2500)

    requests.put(
        f"{kx.sandbox.base_url}/_sandbox/fail-email", json={"pattern": None}, timeout=10
    ).raise_for_status()
    code, resumed = kx.cli_json("resume", first["run_id"], "--wait")

    assert (code, resumed["status"], resumed["attempt"]) == (0, "succeeded", 2)
    assert (resumed["counts"]["imported"], resumed["counts"]["failed"]) == (2500, 0)
    assert len(kx.list_emails()) == 2500
    code, again = kx.cli_json("run", export_id, "--source", str(segment), "--wait")
    assert (code, again["status"]) == (0, "succeeded")  # not skipped as "in progress"
    assert again["counts"]["unchanged"] == 2500
