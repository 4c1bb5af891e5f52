"""What the listener does with one message, short of starting a real run."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import fakeredis
import pytest

from core import audit, broker
from core.actors import Actor
from core.context import Context
from core.errors import InvalidRequest, Refused
from core.records import ExportSpec
from producer.intake import Outcome, dead_letter, decode_body, handle
from producer.publish import encode, publish, validate
from schemas import keys
from schemas.contracts import DEAD_LETTER, load
from schemas.tasks import REQUESTS_QUEUE

ADMIN = Actor("listener", "admin")
CONTRIBUTOR = Actor("listener", "contributor")


@pytest.fixture
def ctx(make_context: Callable[..., Context]) -> Context:
    return make_context(KLAVIYO_BASE_URL="http://127.0.0.1:9")  # a call to it fails at once


def _export(ctx: Context, allow: str = "contributors", **options: Any) -> str:
    connection = ctx.store.add_connection(
        name="c",
        api_key="pk_test",
        allow=allow,
        created_by="t",
        account_id=None,
        verified_via=None,
        accepted_terms=True,
    )
    spec = ExportSpec(
        name="e", connection_id=connection.id, list_id="L1", email_field="email", **options
    )
    return ctx.store.add_export(spec, created_by="t").id


def _refused(ctx: Context, body: Any, actor: Actor = ADMIN) -> Refused:
    with pytest.raises(Refused) as caught:
        handle(ctx, actor, body)
    return caught.value


@pytest.mark.parametrize("body", [b"not json", b"\xff\xfe", b"", "{", None])
def test_a_body_that_is_not_json_is_refused(ctx: Context, body: Any) -> None:
    assert _refused(ctx, body).kind == "invalid_json"


def test_a_body_in_any_form_of_json_is_read(ctx: Context) -> None:
    document = {"v": 1, "export_id": "e_1"}
    for body in (json.dumps(document), json.dumps(document).encode(), document):
        assert decode_body(body) == document


def test_schema_errors_name_each_field(ctx: Context) -> None:
    refused = _refused(ctx, b'{"v": 2, "export_id": "", "format": "xml", "colour": "red"}')
    assert refused.kind == "invalid_request"
    assert set(refused.fields) == {"v", "export_id", "format", "colour"}
    assert refused.fields["colour"] == ["Unknown field."]
    assert "format" in refused.message


def test_a_json_array_is_not_a_request(ctx: Context) -> None:
    refused = _refused(ctx, b"[1, 2]")
    assert (refused.kind, list(refused.fields)) == ("invalid_request", ["_schema"])


def test_an_unknown_export_is_refused_naming_the_field(ctx: Context) -> None:
    refused = _refused(ctx, b'{"v": 1, "export_id": "e_nope"}')
    assert refused.kind == "unknown_export"
    assert list(refused.fields) == ["export_id"]


def test_a_contributor_may_not_run_an_admins_only_export(ctx: Context) -> None:
    export_id = _export(ctx, allow="admins", segment="/s.csv")
    refused = _refused(ctx, json.dumps({"v": 1, "export_id": export_id}), CONTRIBUTOR)
    assert refused.kind == "forbidden"
    assert "admins only" in refused.message


def test_a_disabled_export_is_refused(ctx: Context) -> None:
    export_id = _export(ctx, segment="/s.csv", enabled=False)
    assert _refused(ctx, json.dumps({"v": 1, "export_id": export_id})).kind == "export_disabled"


def test_no_source_and_no_bound_segment_is_refused(ctx: Context) -> None:
    export_id = _export(ctx)
    refused = _refused(ctx, json.dumps({"v": 1, "export_id": export_id}))
    assert (refused.kind, list(refused.fields)) == ("no_source", ["source"])


def test_a_request_while_a_run_is_in_progress_is_skipped_and_audited(ctx: Context) -> None:
    export_id = _export(ctx, segment="/s.csv")
    ctx.redis.set(keys.export_lock(export_id), "r_running")

    outcome = handle(
        ctx, ADMIN, json.dumps({"v": 1, "export_id": export_id, "requested_by": "crm"})
    )

    assert (outcome.outcome, outcome.run_id) == ("skipped", None)
    assert "r_running" in outcome.detail
    entry = audit.recent(ctx.redis, 1)[0]
    assert (entry["action"], entry["target"]) == ("run.skipped", export_id)
    assert entry["detail"] == {"requested_by": "crm", "trigger": "upstream"}
    assert ctx.runs.recent(export_id, 10) == []  # nothing recorded for the skipped run


def test_a_dead_letter_carries_the_error_and_the_original(ctx: Context) -> None:
    at = datetime(2026, 1, 5, 3, 0, 1, 500000, tzinfo=UTC)
    refused = Refused("invalid_request", "bad", {"format": ["Must be one of: csv, jsonl."]})

    parsed = json.loads(dead_letter(refused, b'{"v":1,"format":"xml"}', at))
    as_text = json.loads(dead_letter(Refused("invalid_json", "no"), b"oops \xff", at))

    assert load(DEAD_LETTER, parsed) == {
        "v": 1,
        "error": {
            "type": "invalid_request",
            "message": "bad",
            "field_errors": {"format": ["Must be one of: csv, jsonl."]},
        },
        "message": {"v": 1, "format": "xml"},
        "received_at": "2026-01-05T03:00:01.500Z",
    }
    assert as_text["message"] == "oops \ufffd"


def test_publish_refuses_a_bad_request_before_touching_the_broker() -> None:
    with pytest.raises(InvalidRequest) as caught:
        publish({"export_id": "e_1", "format": "xml", "colour": 1}, broker_url="redis://0.0.0.0:1")
    assert set(caught.value.fields) == {"format", "colour"}
    assert "format: Must be one of: csv, jsonl." in str(caught.value)


def test_a_published_request_has_every_default_filled_in() -> None:
    document = validate({"v": 1, "export_id": "e_1"})
    assert json.loads(encode(document)) == {
        "v": 1,
        "export_id": "e_1",
        "source": None,
        "format": None,
        "requested_by": "upstream",
        "trigger": "upstream",
    }


# -- plain documents on a Redis broker (core.broker) -------------------------


@pytest.mark.parametrize(
    "raw",
    [b'{"v": 1, "export_id": "e_1"}', b"[1, 2]", b"export e_1 please", b"\xff\xfe", b'"text"'],
)
def test_a_plain_list_item_is_wrapped_with_its_bytes_intact(raw: bytes) -> None:
    wrapped = broker.read_item(REQUESTS_QUEUE, raw)

    assert broker.is_envelope(wrapped)
    info = wrapped["properties"]["delivery_info"]
    assert (info["exchange"], info["routing_key"]) == (REQUESTS_QUEUE, REQUESTS_QUEUE)
    assert broker.document(wrapped) == raw
    assert broker.document(raw) == raw


def test_each_wrapped_item_has_its_own_delivery_tag() -> None:
    tags = {broker.read_item(REQUESTS_QUEUE, b"{}")["properties"]["delivery_tag"] for _ in range(3)}
    assert len(tags) == 3


def test_a_kombu_envelope_is_read_as_kombu_wrote_it() -> None:
    body = json.dumps({"v": 1, "export_id": "e_1"}).encode()
    envelope = broker.envelope(REQUESTS_QUEUE, body)
    raw = json.dumps(envelope).encode()

    assert broker.read_item(REQUESTS_QUEUE, raw) == envelope
    assert broker.document(raw) == body
    text_body = {**envelope, "body": body.decode(), "properties": {"delivery_tag": "t"}}
    assert broker.document(text_body) == body  # an envelope without base64


def test_a_request_document_is_never_taken_for_an_envelope() -> None:
    assert not broker.is_envelope({"v": 1, "export_id": "e_1", "properties": {}, "body": 1})
    assert not broker.is_envelope(["body", "properties"])


def test_the_store_mark_tells_a_store_that_came_back_empty() -> None:
    client = fakeredis.FakeRedis()
    mark = broker.StoreMark(client)

    assert mark.check() is False  # the first look sets the mark
    assert mark.check() is False
    client.flushall()
    assert mark.check() is True
    assert mark.check() is False


def test_a_dead_letter_outcome_says_how_many_wait() -> None:
    error = {"type": "unknown_export", "message": "no export 'e_1'", "fields": {}}
    outcome = Outcome("dead_lettered", export_id="e_1", error=error, dead_letters=3)

    assert str(outcome) == "sent to kx.requests.dead (3 waiting): unknown_export: no export 'e_1'"
    assert outcome.public()["dead_letters"] == 3
