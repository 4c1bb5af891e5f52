"""Ask for a run from Python: publish an ``ExportRequest`` to ``kx.requests``.

``klaviyo-export listen`` consumes the queue and starts the run (see
``producer.listen``). Systems in other languages publish the same JSON body
to the same queue; the README documents the contract.

    from producer.publish import publish
    publish({"export_id": "e_1a2b3c4d5e", "requested_by": "crm-nightly"})

The request is checked here first, so a mistake fails in the caller with
the field named instead of landing in the dead-letter queue.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from kombu.connection import Connection
from marshmallow import ValidationError

from core import broker
from core.errors import InvalidRequest
from core.settings import Settings
from schemas import tasks
from schemas.contracts import EXPORT_REQUEST, VERSION, load

__all__ = ["InvalidRequest", "encode", "field_errors", "publish", "validate"]  # the documented API

broker.install()  # on Redis, publish the plain document (what `LRANGE` then shows)


def field_errors(exc: ValidationError) -> dict[str, list[str]]:
    """Marshmallow's messages as field name -> list of messages (``_schema``: the whole)."""
    messages: Any = exc.messages
    if not isinstance(messages, dict):
        messages = {"_schema": messages}
    flat: dict[str, list[str]] = {}
    for name, errors in messages.items():
        items = errors if isinstance(errors, list) else [errors]
        flat[str(name)] = [e if isinstance(e, str) else json.dumps(e) for e in items]
    return flat


def validate(request: Any) -> dict[str, Any]:
    """The request with its defaults filled in, or ``InvalidRequest`` naming the fields."""
    try:
        return load(EXPORT_REQUEST, request)
    except ValidationError as exc:
        raise InvalidRequest(field_errors(exc)) from None


def encode(request: Mapping[str, Any]) -> bytes:
    """The wire form: compact UTF-8 JSON."""
    return json.dumps(dict(request), separators=(",", ":"), ensure_ascii=False).encode()


def publish(request: Mapping[str, Any], *, broker_url: str | None = None) -> None:
    """Validate ``request`` and publish it, persistently, to ``kx.requests``.

    ``v`` may be left out (the current contract version is filled in);
    ``broker_url`` defaults to the configured broker (``CELERY_BROKER_URL``,
    else ``REDIS_URL``). Connection errors are retried a few times, then
    raised (``kombu.exceptions.OperationalError``).
    """
    if not isinstance(request, Mapping):
        raise InvalidRequest({"_schema": ["an export request is a JSON object"]})
    document = validate({"v": VERSION, **request})
    url = broker_url or Settings.from_env().broker_url
    with Connection(url, transport_options={"confirm_publish": True}) as connection:
        tasks.publish_document(connection, tasks.REQUESTS_QUEUE, encode(document))
