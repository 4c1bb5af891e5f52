"""An export with a schedule runs by itself: beat ticks, the tick requests, listen runs.

Real Redis, the sandbox, a real ``celery worker`` and ``celery beat``, and
``klaviyo-export listen`` as a subprocess. The export's own schedule is
``* * * * *``; the system refresh is switched off, so the run can only come
from the export's schedule. Beat ticks on the minute: the run starts within
about 60 s, ends a few seconds later.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.context import Context
from tests.support.pipeline import LIST_ID, pipeline
from tests.support.services import redis_server

LISTEN = ("--as", "scheduler:admin", "listen", "--json", "--max-messages", "1", "--timeout", "150")
DEADLINE_SECONDS = 100  # the next minute boundary, plus a run of 30 profiles, with room


@pytest.mark.slow
def test_an_export_with_a_schedule_runs_by_itself(tmp_path: Path) -> None:
    segment = tmp_path / "segment.jsonl"
    emails = [f"scheduled{i}@example.org" for i in range(30)]
    segment.write_text("".join(json.dumps({"email": e}) + "\n" for e in emails))

    with (
        redis_server() as url,
        pipeline(
            url, tmp_path, workers=1, beat=True, env={"KLAVIYO_EXPORT_REFRESH_CRON": ""}
        ) as kx,
    ):
        export_id = kx.add_export(
            kx.add_connection(), LIST_ID, "--segment", str(segment), "--schedule", "* * * * *"
        )
        with (tmp_path / "listen.log").open("wb") as log:
            listener = subprocess.Popen(
                [sys.executable, "-m", "frontdoors.cli.main", *LISTEN],
                env=kx.env,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
            try:
                runs = Context.from_env(kx.env).runs
                deadline = time.monotonic() + DEADLINE_SECONDS
                finished = None
                while finished is None:
                    assert time.monotonic() < deadline, "no scheduled run finished in time"
                    recent = runs.recent(export_id, 5)
                    if recent and recent[0].final:
                        finished = recent[0].to_json()
                    else:
                        time.sleep(1.0)
                out, _ = listener.communicate(timeout=30)
            finally:
                if listener.poll() is None:
                    listener.kill()
                    listener.wait()

        assert listener.returncode == 0
        (outcome,) = [json.loads(line) for line in out.splitlines() if line.strip()]
        assert outcome["outcome"] == "started"
        assert (outcome["trigger"], outcome["requested_by"]) == ("schedule", "schedule")
        assert outcome["run_id"] == finished["run_id"]
        assert finished["status"] == "succeeded"
        assert finished["counts"]["imported"] == len(emails)
        assert sorted(kx.list_emails(LIST_ID)) == sorted(emails)

        _, log_entries = kx.cli_json("audit", "--limit", "20")
        start = next(
            e
            for e in log_entries["entries"]
            if e["action"] == "run.start" and e["target"] == finished["run_id"]
        )
        assert start["detail"]["trigger"] == "schedule"
        assert start["detail"]["source"] == str(segment)  # the export's bound segment
