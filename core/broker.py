"""Our Redis channel for kombu: plain JSON documents, and a close that survives a Redis restart.

Installed by ``install()`` as the channel of kombu's own Redis transport, so
URLs keep their ``redis://`` scheme everywhere kombu, Celery and Flower print
or parse them (a transport class of our own would put its import path there).
The workers (``worker.celery_app``) and the ``klaviyo-export`` command install
it; publishing and consuming work the same without it, except for the two
faults below.

**Plain documents on the document queues** (``kx.requests``,
``kx.requests.dead``). A system without kombu pushes the request document
itself: ``redis-cli LPUSH kx.requests '{"v": 1, ...}'``. kombu 5.7 expects its
envelope in every list item and fails on anything else: ``KeyError:
'properties'`` for a JSON object (kombu counts ``KeyError`` as a connection
error, so the consumer said "Connection to broker lost") or a JSON decoding
error for text, and either way the item had already been popped: lost. Here
an item that is not kombu's envelope is wrapped in one as it is read (the body
is the item, byte for byte), so it goes through kombu's acknowledgement
emulation like any message: at least once. kombu publishing to a document
queue pushes the document itself too, so both lists hold what the README
shows; an envelope (an old publisher, or a message restored after a consumer
died) is read as before.

**A Redis restart** (kombu 5.7.0 with Celery 5.7.0). A worker holding an
unacknowledged message (a task running) with a ``BRPOP`` in flight exited
with ``CRITICAL Unrecoverable error: AttributeError("'NoneType' object has no
attribute 'hostname'")`` when Redis went away. Celery's
``Consumer.on_connection_error_after_connected`` calls ``collect()`` and then
``close()`` on the broken connection. In ``collect()``, ``Channel.close()``
first reads the pending ``BRPOP`` reply, which raises a connection error
before the channel is marked closed; kombu swallows it, gives up closing the
other channels at the first one that raises, and detaches the transport from
its connection (``transport.client = None``). ``close()`` then closes the
default channel again; to restore its unacknowledged messages it builds a new
Redis pool from ``transport.client.hostname``: ``AttributeError``, which no
one treats as a connection error, and the worker stops. Here the pending reply
is read and its connection error dropped (the connection is gone either way),
so the channel closes in one go; and a pool asked for once the transport is
detached raises a connection error, which kombu and Celery recover from. The
unacknowledged messages of a channel closed while Redis is down are not
restored by the worker; Redis gives them back after the visibility timeout if
it kept its data.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable
from queue import Empty
from typing import Any, Final

import redis
from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import bytes_to_str

from schemas import keys, tasks

DOCUMENT_QUEUES: Final = frozenset({tasks.REQUESTS_QUEUE, tasks.DEAD_LETTER_QUEUE})


def is_envelope(item: Any) -> bool:
    """Whether a decoded list item is kombu's envelope (a request document never
    is: ``body`` and ``properties`` are not fields of the contract)."""
    properties = item.get("properties") if isinstance(item, dict) else None
    return isinstance(properties, dict) and "delivery_tag" in properties and "body" in item


def envelope(queue: str, raw: bytes) -> dict[str, Any]:
    """kombu's envelope around a plain list item: the body is ``raw`` exactly
    (base64 in the envelope, bytes again once kombu decodes it)."""
    return {
        "body": base64.b64encode(raw).decode("ascii"),
        "content-encoding": "utf-8",
        "content-type": tasks.JSON_CONTENT_TYPE,
        "headers": {},
        "properties": {
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
            "delivery_mode": 2,
            "delivery_info": {"exchange": queue, "routing_key": queue},
            "priority": 0,
        },
    }


def read_item(queue: str, raw: bytes) -> dict[str, Any]:
    """A list item of a document queue as kombu's envelope, whatever it holds."""
    try:
        item = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        return envelope(queue, raw)
    return item if is_envelope(item) else envelope(queue, raw)


def document(item: Any) -> bytes:
    """The document a list item carries: an envelope's body, else the item."""
    if isinstance(item, bytes | bytearray):
        try:
            decoded = json.loads(item)
        except (UnicodeDecodeError, ValueError):
            return bytes(item)
        if not is_envelope(decoded):
            return bytes(item)
        item = decoded
    if not is_envelope(item):
        return json.dumps(item).encode()
    body = item["body"]
    raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    if item["properties"].get("body_encoding") == "base64":
        try:
            return base64.b64decode(raw, validate=True)
        except binascii.Error:
            return raw
    return raw


class Channel(kombu_redis.Channel):
    """kombu's Redis channel, with the two fixes of this module."""

    def close(self) -> None:
        if self._in_poll and not self.closed:
            try:
                self._brpop_read()
            except Empty:
                pass
            except self.connection_errors:
                pass  # the connection is gone: so is the reply
        super().close()

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection.client is None:
            raise redis.exceptions.ConnectionError("the broker connection is closed")
        params: dict[str, Any] = super()._connparams(asynchronous=asynchronous)
        return params

    def _create_client(self, asynchronous: bool = False) -> Any:
        client = super()._create_client(asynchronous=asynchronous)
        client.set_response_callback("BRPOP", self._reading_documents(client))
        return client

    def _reading_documents(self, client: Any) -> Callable[..., Any]:
        """A BRPOP reply parser that hands kombu an envelope for a plain document."""
        previous = client.response_callbacks.get("BRPOP")

        def parse(response: Any, **options: Any) -> Any:
            reply = previous(response, **options) if previous else response
            if not reply:
                return reply
            key, item = reply
            queue = bytes_to_str(key).rsplit(self.sep, 1)[0]
            if queue in DOCUMENT_QUEUES:
                item = json.dumps(read_item(queue, item))
            return (key, item)

        return parse

    def _get(self, queue: str, timeout: Any = None) -> Any:
        if queue not in DOCUMENT_QUEUES:
            return super()._get(queue)
        with self.conn_or_acquire() as client:
            for priority in self.priority_steps:
                item = client.rpop(self._q_for_pri(queue, priority))
                if item:
                    return read_item(queue, item)
        raise Empty()

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        if queue not in DOCUMENT_QUEUES:
            super()._put(queue, message, **kwargs)
            return
        body = self.decode_body(message["body"], message["properties"].get("body_encoding"))
        raw = body.encode() if isinstance(body, str) else bytes(body)
        batch = kwargs.pop("_publish_batch", None)
        if batch is not None:
            batch.add("lpush", queue, raw)
            return
        with self.conn_or_acquire() as client:
            client.lpush(queue, raw)


def install() -> None:
    """Make kombu's Redis transport use our channel in this process (idempotent)."""
    kombu_redis.Transport.Channel = Channel


class StoreMark:
    """Tells, after the broker connection came back, whether Redis came back empty.

    The first ``check()`` sets a token in the store (if none is there) and
    remembers it; a later ``check()`` that finds no token, or another one,
    means the store was emptied in between (and sets a new one).
    """

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.token: bytes | None = None

    def check(self) -> bool:
        """True when the store lost its data since the last check."""
        candidate = uuid.uuid4().hex.encode()
        self.client.set(keys.STORE_MARK, candidate, nx=True)
        current: Any = self.client.get(keys.STORE_MARK)
        emptied = self.token is not None and current != self.token
        self.token = current
        return emptied
