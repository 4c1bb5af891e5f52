"""Every call any process makes to Klaviyo goes to the Klaviyo the connection's
key was verified against, under the shared rate limit and retry policy.

- A worker whose own KLAVIYO_BASE_URL names another (dead) local port still
  sends the connection's work to the sandbox the connection was added with.
- ``reconcile`` pages a 20,000-member list (200 pages, far past Klaviyo's
  burst of 75 a second) through the limiter: no 429, exact counts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from demo.services import free_port
from tests.support.pipeline import LIST_ID, Pipeline, pipeline
from tests.support.services import redis_server

MEMBERS = 20_000


@pytest.fixture(scope="module")
def kx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    tmp = tmp_path_factory.mktemp("addressed")
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with redis_server() as url, pipeline(url, tmp, env={"KLAVIYO_BASE_URL": nowhere}) as running:
        running.env["KLAVIYO_BASE_URL"] = running.sandbox.base_url  # the CLI's, not the workers'
        yield running


def test_workers_send_to_the_klaviyo_the_connection_was_verified_with(
    kx: Pipeline, tmp_path: Path
) -> None:
    connection = kx.add_connection()
    _, listed = kx.cli_json("connection", "list")
    (record,) = [c for c in listed["connections"] if c["id"] == connection]
    assert record["base_url"] == kx.sandbox.base_url
    segment = tmp_path / "members.csv"
    segment.write_text("email\n" + "".join(f"m{i}@example.com\n" for i in range(MEMBERS)))
    export_id = kx.add_export(connection)

    code, run = kx.cli_json("run", export_id, "--source", str(segment), "--wait")

    assert (code, run["status"], run["counts"]["imported"]) == (0, "succeeded", MEMBERS)
    assert len(kx.list_emails(LIST_ID)) == MEMBERS

    # The same list, 20,000 members, compared page by page under Klaviyo's limits.
    proc = kx.cli("reconcile", export_id, "--json")

    assert proc.returncode == 0, proc.stderr
    drift = json.loads(proc.stdout.splitlines()[-1])
    assert (drift["list_members"], drift["exported"]) == (MEMBERS, MEMBERS)
    assert (drift["added_by_hand"], drift["missing"]) == (0, 0)
    stats = kx.stats()
    assert stats["throttled"] == 0
    assert stats["requests"]["by_operation"]["get_profiles_for_list"] == MEMBERS // 100
