"""The whole pipeline with RabbitMQ as the broker (Redis keeps results and state)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from demo.sample import FAIL_EMAIL_PATTERN, write_sample
from tests.support.pipeline import LIST_ID, Pipeline, pipeline
from tests.support.rabbitmq import rabbitmq_vhost
from tests.support.services import redis_server


@pytest.fixture(scope="module")
def kx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    tmp = tmp_path_factory.mktemp("amqp")
    with (
        rabbitmq_vhost() as broker,
        redis_server() as url,
        pipeline(url, tmp, env={"CELERY_BROKER_URL": broker}, fail_email=FAIL_EMAIL_PATTERN) as kx,
    ):
        yield kx


def test_export_over_rabbitmq_is_exact(kx: Pipeline, tmp_path: Path) -> None:
    segment = tmp_path / "segment.csv"
    makeup = write_sample(segment, 25_000, seed=13)
    export_id = kx.add_export(kx.add_connection(), LIST_ID)

    code, summary = kx.cli_json("run", export_id, "--source", str(segment), "--wait")

    counts = summary["counts"]
    assert (code, summary["status"]) == (1, "partially_succeeded")
    assert counts["rows_read"] == makeup.rows
    assert counts["rejected"] == makeup.rejected
    assert counts["imported"] == makeup.imported
    assert counts["failed"] == makeup.klaviyo_fails
    assert sorted(kx.list_emails(LIST_ID)) == sorted(makeup.imported_emails)
    worker_log = (kx.workdir / "worker0.log").read_text()
    assert "amqp://guest:**@127.0.0.1:5672/kx-test-" in worker_log  # really on RabbitMQ
