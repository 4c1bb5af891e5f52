"""Workers and the listener ride out a Redis restart, with or without its data.

kombu 5.7.0 with Celery 5.7.0: a worker holding a task when Redis went away
exited with ``AttributeError("'NoneType' object has no attribute
'hostname'")`` (see ``core.broker``). Here a real redis-server is
stopped and started again on the same port under real ``celery worker``
processes, a run in progress and ``klaviyo-export listen``; each process
reconnects, says so in one line and carries on.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from celery import Celery
from kombu import Connection, Exchange, Queue

from core import broker
from demo.sample import FAIL_EMAIL_PATTERN, write_sample
from schemas import keys, tasks
from tests.support.pipeline import LIST_ID, Pipeline, pipeline
from tests.support.restartable_redis import RestartableRedis, restartable_redis

CRASH = "Unrecoverable error"
BACK = "broker connection back after"
SLOW_JOBS = {"job_queue_seconds": 2.0, "job_profiles_per_second": 5_000}


@pytest.fixture
def server() -> Iterator[RestartableRedis]:
    with restartable_redis() as started:
        yield started


def _logs(kx: Pipeline) -> list[str]:
    return [(kx.workdir / f"worker{i}.log").read_text() for i in range(len(kx.workers))]


def _wait_for_line(kx: Pipeline, text: str, timeout: float = 60) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        logs = _logs(kx)
        if all(text in log for log in logs) or time.monotonic() > deadline:
            return logs
        time.sleep(0.3)


def _run_waiting(kx: Pipeline, export_id: str, segment: Path) -> subprocess.Popen[str]:
    """``klaviyo-export run EXPORT --source SEGMENT --wait --json``, in the background."""
    command = ["run", export_id, "--source", str(segment), "--wait", "--json"]
    return subprocess.Popen(
        [sys.executable, "-m", "frontdoors.cli.main", *command],
        env=kx.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _start_run(kx: Pipeline, tmp: Path, rows: int, seed: int) -> subprocess.Popen[str]:
    segment = tmp / f"segment-{seed}.csv"
    write_sample(segment, rows, seed=seed)
    return _run_waiting(kx, kx.add_export(kx.add_connection(), LIST_ID), segment)


def _wait_until_uploading(kx: Pipeline, timeout: float = 60) -> None:
    """Until a worker holds an upload (its Klaviyo job is being followed)."""
    deadline = time.monotonic() + timeout
    while "job submitted" not in "".join(_logs(kx)):
        assert time.monotonic() < deadline, "no batch was uploaded"
        time.sleep(0.2)


def test_a_consumer_holding_a_message_survives_the_close_celery_does(
    server: RestartableRedis,
) -> None:
    """The kombu-level cause, as Celery 5.7 meets it: a consumer holds an
    unacknowledged message with a BRPOP in flight on two channels, Redis goes
    away, and the connection is collected, then closed."""
    broker.install()
    queue = Queue("kx.test", Exchange("kx.test", type="direct"), routing_key="kx.test")
    other = Queue("kx.test2", Exchange("kx.test2", type="direct"), routing_key="kx.test2")
    with Connection(server.url) as publisher:
        publisher.Producer().publish(
            {"n": 1}, exchange=queue.exchange, routing_key="kx.test", declare=[queue]
        )
    connection = Connection(server.url)
    held: list[object] = []
    consumer = connection.Consumer(
        [queue], callbacks=[lambda _, m: held.append(m)], prefetch_count=2
    )
    consumer.consume()
    connection.Consumer([other], channel=connection.channel(), callbacks=[]).consume()
    connection.drain_events(timeout=5)
    with pytest.raises(TimeoutError):  # a BRPOP is now in flight
        connection.drain_events(timeout=0.05)
    assert len(held) == 1

    server.stop()
    with contextlib.suppress(Exception):  # Celery ignores whatever collect() raises
        connection.collect(socket_timeout=2)
    # Celery's ignore_errors drops a connection error here; anything else killed the worker.
    with contextlib.suppress(*connection.connection_errors):
        connection.close()


def test_workers_survive_redis_coming_back_empty_and_take_new_runs(
    server: RestartableRedis, tmp_path: Path
) -> None:
    with pipeline(
        server.url, tmp_path, workers=2, **SLOW_JOBS, fail_email=FAIL_EMAIL_PATTERN
    ) as kx:
        run = _start_run(kx, tmp_path, 60_000, seed=3)
        _wait_until_uploading(kx)

        server.restart()

        out, err = run.communicate(timeout=120)
        logs = _wait_for_line(kx, BACK)
        for log, worker in zip(logs, kx.workers, strict=True):
            assert worker.poll() is None, log[-3000:]
            assert CRASH not in log
            assert f"{BACK} " in log
            assert "Redis came back empty" in log
        # The run's records went with Redis: the command says so (exit 5, one JSON line).
        assert run.returncode == 5, err
        last = json.loads(out.strip().splitlines()[-1])
        assert last["error"]["type"] == "unavailable"
        assert "no longer in Redis" in last["error"]["message"]

        # Everything was lost, connection and export too; a new one exports.
        again = _start_run(kx, tmp_path, 2_000, seed=4)
        out, err = again.communicate(timeout=120)
        summary = json.loads(out.strip().splitlines()[-1])
        assert summary["status"] in ("succeeded", "partially_succeeded"), err
        assert summary["batches"]["done"] == summary["batches"]["total"]


def test_with_persistence_the_run_in_progress_completes_exactly(tmp_path: Path) -> None:
    env = {"KLAVIYO_EXPORT_VISIBILITY_TIMEOUT": "30"}  # held messages come back in seconds
    with (
        restartable_redis(appendonly=True) as server,
        pipeline(
            server.url, tmp_path, workers=2, env=env, **SLOW_JOBS, fail_email=FAIL_EMAIL_PATTERN
        ) as kx,
    ):
        segment = tmp_path / "segment.csv"
        makeup = write_sample(segment, 40_000, seed=5)
        export_id = kx.add_export(kx.add_connection(), LIST_ID)
        run = _run_waiting(kx, export_id, segment)
        _wait_until_uploading(kx)

        server.restart()

        out, err = run.communicate(timeout=240)
        summary = json.loads(out.strip().splitlines()[-1])
        assert summary["status"] == "partially_succeeded", (summary["message"], err)
        counts = summary["counts"]
        assert counts["imported"] == makeup.imported
        assert counts["failed"] == makeup.klaviyo_fails
        assert counts["rejected"] == makeup.rejected
        assert sorted(kx.list_emails(LIST_ID)) == sorted(makeup.imported_emails)
        for log, worker in zip(_logs(kx), kx.workers, strict=True):
            assert worker.poll() is None
            assert CRASH not in log
            assert BACK in log
            assert "came back empty" not in log


def test_tasks_of_a_run_that_is_gone_end_with_one_line_each(
    server: RestartableRedis, tmp_path: Path
) -> None:
    with pipeline(server.url, tmp_path, workers=1) as kx:
        app = Celery(broker=server.url, backend=server.url)
        sent = [
            (tasks.UPLOAD_BATCH, ("r_gone000001", 0)),
            (tasks.REMOVE_MEMBERS, ("r_gone000001", 0)),
            (tasks.FINALIZE_RUN, ([], "r_gone000001")),
            (tasks.FINALIZE_REMOVALS, ([], "r_gone000001")),
            (tasks.RUN_FAILED, (None, None, None, "r_gone000001")),
        ]
        for name, args in sent:
            queue = tasks.ROUTES[name]["queue"]
            app.send_task(name, args, queue=queue, exchange=queue, routing_key=queue)
        deadline = time.monotonic() + 60
        while _logs(kx)[0].count("no longer in Redis") < len(sent):
            assert time.monotonic() < deadline, _logs(kx)[0][-3000:]
            time.sleep(0.2)
        log = _logs(kx)[0]
        for name, _ in sent:
            assert f"{name}: run r_gone000001 is no longer in Redis" in log
        assert "Traceback" not in log
        assert "raised unexpected" not in log


def test_the_listener_rides_out_a_redis_restart(server: RestartableRedis, tmp_path: Path) -> None:
    with pipeline(server.url, tmp_path, workers=1) as kx:
        listener = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "frontdoors.cli.main",
                "--as",
                "l:admin",
                "listen",
                "--max-messages",
                "1",
                "--timeout",
                "90",
            ],
            env=kx.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            client = redis.Redis.from_url(server.url)
            deadline = time.monotonic() + 30
            while not client.exists(keys.STORE_MARK):  # it is consuming
                assert time.monotonic() < deadline
                time.sleep(0.2)
            time.sleep(1.0)

            server.restart()

            client = redis.Redis.from_url(server.url)
            client.lpush(tasks.REQUESTS_QUEUE, '{"v": 1, "export_id": "e_after"}')
            _out, err = listener.communicate(timeout=90)
        finally:
            if listener.poll() is None:
                listener.kill()
                listener.communicate()
        assert listener.returncode == 0, err
        assert "broker connection lost (ConnectionError): reconnecting" in err
        assert "broker connection back after" in err
        assert "Redis came back empty" in err
        assert "unknown_export: no export 'e_after'" in err
        assert "Traceback" not in err
        assert client.llen(tasks.DEAD_LETTER_QUEUE) == 1


def test_a_task_that_finds_redis_away_is_tried_again_not_failed(
    server: RestartableRedis, redis_url: str, tmp_path: Path
) -> None:
    """The store on its own Redis, away while a task runs: the task waits for it."""
    env = {"KLAVIYO_EXPORT_STORE_URL": server.url}
    with pipeline(redis_url, tmp_path, workers=1, env=env) as kx:
        server.stop()
        app = Celery(broker=redis_url, backend=redis_url)
        queue = tasks.CONTROL_QUEUE
        app.send_task(
            tasks.FINALIZE_RUN, ([], "r_away000001"), queue=queue, exchange=queue, routing_key=queue
        )
        away = f"{tasks.FINALIZE_RUN} run r_away000001: Redis unreachable (ConnectionError)"
        deadline = time.monotonic() + 60
        while away not in _logs(kx)[0]:
            assert time.monotonic() < deadline, _logs(kx)[0][-3000:]
            time.sleep(0.2)

        server.start()  # back, and empty: the run is gone

        gone = f"{tasks.FINALIZE_RUN}: run r_away000001 is no longer in Redis"
        while gone not in _logs(kx)[0]:
            assert time.monotonic() < deadline, _logs(kx)[0][-3000:]
            time.sleep(0.2)
        log = _logs(kx)[0]
        assert "raised unexpected" not in log
        assert "Traceback" not in log
