"""Once Klaviyo has a batch's job, the task's follow-ups travel on ``kx.polls``.

A retry goes to the back of its queue: on ``kx.uploads`` the first jobs'
polls waited behind every batch not yet sent. Here the workers consume only
``kx.uploads`` and ``kx.control``: the job is submitted, its poll sits in
``kx.polls`` and the run cannot end; a worker on ``kx.polls`` then ends it.
"""

from __future__ import annotations

import time
from pathlib import Path

import redis

from demo.services import celery_workers
from schemas import tasks
from tests.support.pipeline import pipeline
from tests.support.services import redis_server


def test_a_submitted_job_is_polled_from_the_polls_queue(tmp_path: Path) -> None:
    segment = tmp_path / "segment.jsonl"
    segment.write_text("".join(f'{{"email": "poll{i}@example.org"}}\n' for i in range(30)))
    with (
        redis_server() as url,
        pipeline(url, tmp_path, workers=1, queues=[tasks.UPLOADS_QUEUE, tasks.CONTROL_QUEUE]) as kx,
    ):
        broker = redis.Redis.from_url(url)
        export_id = kx.add_export(kx.add_connection())
        code, started = kx.cli_json("run", export_id, "--source", str(segment))
        assert code == 0
        run_id = started["run_id"]

        deadline = time.monotonic() + 30
        while broker.llen(tasks.POLLS_QUEUE) == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1)  # had the poll gone to kx.uploads, it would be back by now
        assert broker.llen(tasks.POLLS_QUEUE) == 1
        assert broker.llen(tasks.UPLOADS_QUEUE) == 0
        operations = kx.stats()["requests"]["by_operation"]
        assert operations["bulk_import_profiles"] == 1
        assert operations.get("get_bulk_import_profiles_job", 0) == 0
        assert kx.wait_for(run_id, lambda s: False, timeout=0)["status"] == "running"

        with celery_workers(kx.env, count=1, queues=[tasks.POLLS_QUEUE]):
            status = kx.wait_for(run_id, lambda s: s["status"] == "succeeded", timeout=60)
        assert status["status"] == "succeeded"
        assert status["counts"]["imported"] == 30
        assert broker.llen(tasks.POLLS_QUEUE) == 0
        assert kx.stats()["requests"]["by_operation"]["get_bulk_import_profiles_job"] >= 1
        assert sorted(kx.list_emails()) == sorted(f"poll{i}@example.org" for i in range(30))
