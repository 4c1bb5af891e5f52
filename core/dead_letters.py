"""Read (and purge) the dead-letter queue on either broker: ``klaviyo-export dead-letters``.

Nothing consumes ``kx.requests.dead``: an operator reads it. Each letter is
returned as the document the listener wrote (``schemas.contracts.DeadLetter``),
whatever form it travelled in (a plain JSON list item on Redis, a kombu
envelope with a base64 body from an older publisher, an AMQP message body).

- Redis: the list is read with ``LRANGE`` (reading takes nothing away); a
  purge reads and deletes in one transaction, so a letter that arrives
  meanwhile is either shown and removed or kept.
- RabbitMQ (any other kombu transport): every message is taken unacknowledged,
  then acknowledged (purge) or handed back in order (read).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

import redis
from kombu.connection import Connection

from core.broker import document
from schemas import tasks

REDIS_SCHEMES: Final = frozenset({"redis", "rediss", "unix"})
KOMBU_PRIORITY_SEPARATOR: Final = "\x06\x16"  # kombu's Redis list name for a priority
KOMBU_PRIORITY_STEPS: Final = (3, 6, 9)


@dataclass
class DeadLetters:
    """What ``read`` found: the letters, oldest first, and whether they were removed."""

    queue: str = tasks.DEAD_LETTER_QUEUE
    letters: list[Any] = field(default_factory=list)
    purged: bool = False

    @property
    def count(self) -> int:
        return len(self.letters)

    def public(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "count": self.count,
            "purged": self.purged,
            "letters": self.letters,
        }


def parse(raw: bytes) -> Any:
    """A letter as JSON if it parses, else as text (a letter someone else pushed)."""
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        return raw.decode("utf-8", errors="replace")


def read(broker_url: str, *, purge: bool = False) -> DeadLetters:
    """Every letter on the dead-letter queue; with ``purge``, removed as read."""
    if urlsplit(broker_url).scheme in REDIS_SCHEMES:
        return _read_redis(broker_url, purge)
    return _read_kombu(broker_url, purge)


def _redis_lists() -> list[str]:
    name = tasks.DEAD_LETTER_QUEUE
    return [name] + [f"{name}{KOMBU_PRIORITY_SEPARATOR}{step}" for step in KOMBU_PRIORITY_STEPS]


def _read_redis(broker_url: str, purge: bool) -> DeadLetters:
    client = redis.Redis.from_url(broker_url)
    try:
        with client.pipeline(transaction=True) as pipe:
            lists = _redis_lists()
            for name in lists:
                pipe.lrange(name, 0, -1)
            if purge:
                pipe.delete(*lists)
            replies = pipe.execute()
    finally:
        client.close()
    letters: list[Any] = []
    for items in replies[: len(_redis_lists())]:
        # kombu pushes on the left and takes from the right: the oldest is last.
        letters.extend(parse(document(item)) for item in reversed(items))
    return DeadLetters(letters=letters, purged=purge)


def _read_kombu(broker_url: str, purge: bool) -> DeadLetters:
    found = DeadLetters(purged=purge)
    with Connection(broker_url) as connection:
        queue = tasks.document_queue(tasks.DEAD_LETTER_QUEUE)(connection.default_channel)
        queue.declare()
        taken = []
        while (message := queue.get(no_ack=False, accept=None)) is not None:
            taken.append(message)
            body = message.body
            found.letters.append(parse(body if isinstance(body, bytes) else str(body).encode()))
        for message in taken:
            if purge:
                message.ack()
            else:
                message.requeue()
    return found


def waiting(connection: Connection) -> int:
    """How many letters wait on the dead-letter queue (declares it, as the listener does)."""
    declared = tasks.document_queue(tasks.DEAD_LETTER_QUEUE)(connection.default_channel)
    return int(declared.queue_declare().message_count)
