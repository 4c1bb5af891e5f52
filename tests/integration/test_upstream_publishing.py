"""Upstream systems ask for runs on the broker; ``klaviyo-export listen`` starts them.

On both brokers (Redis and RabbitMQ): a plain JSON body published the way a
non-Python system would (no kombu, no content type; on Redis a bare
``LPUSH``) starts a run that exports exactly; invalid requests, an unknown
export and a contributor's listener on an admins-only connection land in the
dead-letter queue with the error, each logged once with the queue's length;
``klaviyo-export dead-letters`` shows them readable and ``--purge`` removes
them; ``producer.publish`` round-trips. The listener runs as a subprocess,
as an operator runs it, and stops by itself (``--max-messages``/``--once``).
"""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import amqp
import pytest
import redis
from kombu import Connection

from core.context import Context
from core.settings import Settings
from demo.sample import FAIL_EMAIL_PATTERN, write_sample
from producer.publish import publish
from schemas import tasks
from schemas.contracts import DEAD_LETTER, FINAL_RUN_STATUSES, load
from tests.support.pipeline import LIST_ID, OTHER_LIST_ID, Pipeline, pipeline
from tests.support.rabbitmq import rabbitmq_vhost
from tests.support.services import redis_server


@pytest.fixture(scope="module", params=["redis", "rabbitmq"])
def kx(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    tmp = tmp_path_factory.mktemp(f"upstream-{request.param}")
    with ExitStack() as stack:
        env = {"KLAVIYO_EXPORT_LOG_LEVEL": "INFO"}
        if request.param == "rabbitmq":
            env["CELERY_BROKER_URL"] = stack.enter_context(rabbitmq_vhost())
        url = stack.enter_context(redis_server())
        yield stack.enter_context(
            pipeline(url, tmp, workers=1, env=env, fail_email=FAIL_EMAIL_PATTERN)
        )


@pytest.fixture
def broker(kx: Pipeline) -> str:
    """The broker URL, with the dead-letter queue emptied before each test."""
    dead_letters(kx)
    return Settings.from_env(kx.env).broker_url


# -- what a non-Python publisher does ------------------------------------------------


def _amqp_connection(broker_url: str) -> amqp.Connection:
    """A plain AMQP client's connection (py-amqp), as a non-kombu system opens one."""
    parts = urlsplit(broker_url)
    connection = amqp.Connection(
        f"{parts.hostname}:{parts.port}",
        userid=parts.username,
        password=parts.password,
        virtual_host=parts.path[1:],
    )
    connection.connect()
    return connection


def publish_raw(broker_url: str, body: bytes) -> None:
    """Publish ``body`` as a system in another language would: no kombu, no content type."""
    if broker_url.startswith("amqp://"):
        # What amqplib (Node) or pika would do: declare, bind, publish the bytes.
        connection = _amqp_connection(broker_url)
        try:
            channel = connection.channel()
            name = tasks.REQUESTS_QUEUE
            channel.exchange_declare(name, "direct", durable=True, auto_delete=False)
            channel.queue_declare(name, durable=True, auto_delete=False)
            channel.queue_bind(name, exchange=name, routing_key=name)
            channel.basic_publish(
                amqp.Message(body, delivery_mode=2), exchange=name, routing_key=name
            )
        finally:
            connection.close()
    else:
        # A Redis broker: the document itself, as `redis-cli LPUSH kx.requests '{...}'` does.
        client = redis.Redis.from_url(broker_url)
        try:
            client.lpush(tasks.REQUESTS_QUEUE, body)
        finally:
            client.close()


def push_envelope(broker_url: str, body: bytes) -> None:
    """What the README told Redis publishers before: kombu's envelope, by hand."""
    envelope = {
        "body": body.decode(),
        "content-type": "application/json",
        "content-encoding": "utf-8",
        "headers": {},
        "properties": {
            "delivery_tag": str(uuid.uuid4()),
            "delivery_mode": 2,
            "delivery_info": {
                "exchange": tasks.REQUESTS_QUEUE,
                "routing_key": tasks.REQUESTS_QUEUE,
            },
        },
    }
    client = redis.Redis.from_url(broker_url)
    try:
        client.lpush(tasks.REQUESTS_QUEUE, json.dumps(envelope))
    finally:
        client.close()


def read_dead_letters(kx: Pipeline, *args: str) -> dict[str, Any]:
    """``klaviyo-export dead-letters --json ARGS``, as an operator runs it."""
    code, found = kx.cli_json("dead-letters", *args)
    assert code == 0, found
    return found


def dead_letters(kx: Pipeline) -> list[dict[str, Any]]:
    """Take every letter off the dead-letter queue."""
    return list(read_dead_letters(kx, "--purge")["letters"])


def waiting(broker_url: str, name: str) -> int:
    """Messages ready on queue ``name``."""
    with Connection(broker_url) as connection:
        declared = tasks.document_queue(name)(connection.default_channel).queue_declare()
        return int(declared.message_count)


def listen_logged(kx: Pipeline, *args: str, actor: str = "listener:admin") -> str:
    """Run ``klaviyo-export --as ACTOR listen ARGS``; its log (stderr)."""
    proc = kx.cli("--as", actor, "listen", "--timeout", "60", *args)
    assert proc.returncode == 0, proc.stderr
    assert "@" not in proc.stderr.replace("guest:**@", "").replace(":**@", "")  # no email logged
    return proc.stderr


def listen(kx: Pipeline, *args: str, actor: str = "listener:admin") -> list[dict[str, Any]]:
    """Run ``klaviyo-export --as ACTOR listen --json ARGS``; its outcomes, a dict each."""
    proc = kx.cli("--as", actor, "listen", "--json", "--timeout", "60", *args)
    assert proc.returncode == 0, proc.stderr
    assert "@" not in proc.stderr.replace("guest:**@", "").replace(":**@", "")  # no email logged
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def final_status(kx: Pipeline, run_id: str, timeout: float = 120) -> dict[str, Any]:
    runs = Context.from_env(kx.env).runs
    deadline = time.monotonic() + timeout
    while True:
        status = runs.get(run_id).to_json()
        if status["status"] in FINAL_RUN_STATUSES:
            return status
        assert time.monotonic() < deadline, f"run {run_id} still {status['status']}"
        time.sleep(0.3)


# -- the tests -----------------------------------------------------------------------


def test_a_plain_json_body_from_another_language_starts_an_exact_run(
    kx: Pipeline, broker: str, tmp_path: Path
) -> None:
    segment = tmp_path / "segment.csv"
    makeup = write_sample(segment, 3_000, seed=23)
    export_id = kx.add_export(kx.add_connection(), LIST_ID)
    body = {"v": 1, "export_id": export_id, "source": str(segment), "requested_by": "crm-nightly"}
    publish_raw(broker, json.dumps(body).encode())

    outcomes = listen(kx, "--max-messages", "1")

    assert len(outcomes) == 1
    started = outcomes[0]
    assert (started["outcome"], started["export_id"]) == ("started", export_id)
    assert (started["requested_by"], started["trigger"]) == ("crm-nightly", "upstream")
    status = final_status(kx, started["run_id"])
    counts = status["counts"]
    assert status["status"] == "partially_succeeded"  # the sandbox fails some addresses
    assert counts["rows_read"] == makeup.rows
    assert counts["rejected"] == makeup.rejected
    assert counts["imported"] == makeup.imported
    assert counts["failed"] == makeup.klaviyo_fails
    assert sorted(kx.list_emails(LIST_ID)) == sorted(makeup.imported_emails)
    assert waiting(broker, tasks.REQUESTS_QUEUE) == 0  # acked
    assert dead_letters(kx) == []

    _, log = kx.cli_json("audit", "--limit", "20")
    request = next(e for e in log["entries"] if e["action"] == "run.request")
    assert (request["user"], request["role"], request["target"]) == (
        "listener",
        "admin",
        started["run_id"],
    )
    assert request["detail"]["requested_by"] == "crm-nightly"
    assert request["detail"]["trigger"] == "upstream"


def test_invalid_requests_go_to_the_dead_letter_queue_naming_the_field(
    kx: Pipeline, broker: str
) -> None:
    bad_fields = b'{"v": 1, "export_id": "e_x", "format": "xml", "colour": "red"}'
    not_json = b"export e_x please"
    unknown = b'{"v": 1, "export_id": "e_nosuchexport"}'
    for body in (bad_fields, not_json, unknown):
        publish_raw(broker, body)

    outcomes = listen(kx, "--once")

    assert [o["outcome"] for o in outcomes] == ["dead_lettered"] * 3
    letters = dead_letters(kx)
    assert len(letters) == 3
    by_type = {letter["error"]["type"]: letter for letter in letters}
    assert set(by_type) == {"invalid_request", "invalid_json", "unknown_export"}
    for letter in letters:
        load(DEAD_LETTER, letter)  # the documented format
        assert letter["received_at"].endswith("Z")

    invalid = by_type["invalid_request"]
    assert set(invalid["error"]["fields"]) == {"format", "colour"}
    assert invalid["error"]["fields"]["colour"] == ["Unknown field."]
    assert "format" in invalid["error"]["message"]
    assert invalid["message"] == json.loads(bad_fields)  # the original, as JSON
    assert by_type["invalid_json"]["message"] == not_json.decode()  # the original, as text
    assert by_type["unknown_export"]["error"]["fields"] == {
        "export_id": ["no export 'e_nosuchexport'"]
    }
    assert waiting(broker, tasks.REQUESTS_QUEUE) == 0


def test_a_contributors_listener_may_not_run_an_admins_only_export(
    kx: Pipeline, broker: str, tmp_path: Path
) -> None:
    segment = tmp_path / "segment.jsonl"
    segment.write_text('{"email": "someone@example.org"}\n')
    export_id = kx.add_export(kx.add_connection(), LIST_ID)  # connections default to admins only
    publish({"export_id": export_id, "source": str(segment)}, broker_url=broker)

    outcomes = listen(kx, "--max-messages", "1", actor="bot:contributor")

    assert [(o["outcome"], o["error"]["type"]) for o in outcomes] == [
        ("dead_lettered", "forbidden")
    ]
    (letter,) = dead_letters(kx)
    assert letter["error"]["type"] == "forbidden"
    assert "admins only" in letter["error"]["message"]
    assert letter["message"]["export_id"] == export_id
    _, runs = kx.cli_json("runs", "--export", export_id)
    assert runs["runs"] == []


def test_python_publish_round_trip_runs_the_bound_segment(
    kx: Pipeline, broker: str, tmp_path: Path
) -> None:
    segment = tmp_path / "bound.jsonl"
    emails = [f"bound{i}@example.org" for i in range(40)]
    segment.write_text("".join(json.dumps({"email": e}) + "\n" for e in emails))
    connection_id = kx.add_connection()
    export_id = kx.add_export(connection_id, OTHER_LIST_ID, "--segment", str(segment))

    publish({"export_id": export_id, "requested_by": "pytest"}, broker_url=broker)
    outcomes = listen(kx, "--max-messages", "1")

    assert [o["outcome"] for o in outcomes] == ["started"]
    status = final_status(kx, outcomes[0]["run_id"])
    assert status["status"] == "succeeded"
    assert status["counts"]["imported"] == len(emails)
    assert sorted(kx.list_emails(OTHER_LIST_ID)) == sorted(emails)


def test_sigterm_stops_an_idle_listener(kx: Pipeline, broker: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "frontdoors.cli.main", "--as", "l:admin", "listen"],
        env=kx.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 30
        seen = ""
        while "listening on kx.requests at" not in seen:  # the log line from its consume loop
            assert time.monotonic() < deadline, seen
            ready, _, _ = select.select([proc.stderr], [], [], 1.0)
            if ready:
                seen += proc.stderr.readline()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_dead_letters_are_logged_once_counted_and_kept_until_purged(
    kx: Pipeline, broker: str
) -> None:
    first = b'{"v": 1, "export_id": "e_nosuchexport"}'
    second = b'{"v": 1, "export_id": "e_x", "colour": "red"}'
    for body in (first, second):
        publish_raw(broker, body)

    log = listen_logged(kx, "--once")

    sent = [line for line in log.splitlines() if "sent to kx.requests.dead" in line]
    assert len(sent) == 2, log  # each dead letter once
    assert "(1 waiting): unknown_export" in sent[0]
    assert "(2 waiting): invalid_request" in sent[1]

    for _ in range(2):  # reading takes nothing away
        found = read_dead_letters(kx)
        assert (found["count"], found["purged"]) == (2, False)
        assert [letter["message"] for letter in found["letters"]] == [
            json.loads(first),
            json.loads(second),
        ]
    text = kx.cli("dead-letters", check=True).stdout
    assert "unknown_export: no export 'e_nosuchexport'" in text
    assert "2 dead letter(s) on kx.requests.dead (kept; --purge removes them)" in text
    refused = kx.cli("--as", "someone:contributor", "dead-letters", "--purge")
    assert refused.returncode == 2
    assert "may not purge the dead-letter queue: only admins may" in refused.stderr

    assert read_dead_letters(kx, "--purge")["count"] == 2
    assert read_dead_letters(kx)["count"] == 0
    assert "0 dead letter(s) on kx.requests.dead" in listen_logged(kx, "--once")


def raw_dead_letters(broker_url: str) -> list[bytes]:
    """The dead-letter queue's items as the broker holds them, left in place."""
    if not broker_url.startswith("amqp://"):
        client = redis.Redis.from_url(broker_url)
        try:
            return list(
                reversed(client.lrange(tasks.DEAD_LETTER_QUEUE, 0, -1))
            )  # what LRANGE shows
        finally:
            client.close()
    connection = _amqp_connection(broker_url)
    try:
        channel = connection.channel()
        bodies = []
        while (message := channel.basic_get(tasks.DEAD_LETTER_QUEUE)) is not None:
            body = message.body
            bodies.append(body if isinstance(body, bytes) else body.encode())
        return bodies  # unacknowledged: back on the queue when the connection closes
    finally:
        connection.close()


def test_the_dead_letter_queue_holds_readable_json(kx: Pipeline, broker: str) -> None:
    """A plain body, and on Redis also the envelope the README once told publishers to push."""
    publish_raw(broker, b'{"v": 1, "export_id": "e_nosuchexport"}')
    if broker.startswith("amqp://"):
        publish_raw(broker, b'{"v": 1, "export_id": "e_nosuchexport", "requested_by": "old"}')
    else:
        push_envelope(broker, b'{"v": 1, "export_id": "e_nosuchexport", "requested_by": "old"}')

    outcomes = listen(kx, "--max-messages", "2")

    assert [(o["outcome"], o["error"]["type"]) for o in outcomes] == [
        ("dead_lettered", "unknown_export")
    ] * 2
    letters = [load(DEAD_LETTER, json.loads(item)) for item in raw_dead_letters(broker)]
    assert [letter["message"] for letter in letters] == [
        {"v": 1, "export_id": "e_nosuchexport"},
        {"v": 1, "export_id": "e_nosuchexport", "requested_by": "old"},
    ]
    assert len(dead_letters(kx)) == 2
