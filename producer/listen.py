"""``klaviyo-export listen``: consume ``kx.requests`` and start the runs requested.

The listener takes one message at a time (prefetch 1), has
``producer.intake.handle`` start its run, and acks it once the run has
started (its batches are queued). A request that cannot be honoured is
published to ``kx.requests.dead`` wrapped with the error, then acked; the log
line says how many letters wait there (``klaviyo-export dead-letters`` reads
them). If Redis (the store) cannot be reached, the request is put back on the
queue and the listener waits before the next.

On Redis a request is a plain JSON list item or a kombu envelope: see
``core.broker``, which this module installs. A lost broker
connection (Redis or RabbitMQ restarting) is one log line, and one more when
it is back; the listener reconnects by itself and carries on.

Each outcome is logged once (``on_outcome`` lets ``listen --json`` print it
for scripts too). SIGTERM or SIGINT stops the listener after the request in
hand. Logs name export and run ids, never a profile, email or key.
"""

from __future__ import annotations

import logging
import signal
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import Any, Final

import redis
from kombu.connection import Connection
from kombu.exceptions import OperationalError
from kombu.mixins import ConsumerProducerMixin

from core import audit, broker, dead_letters
from core.actors import Actor
from core.context import Context
from core.errors import ConfigurationError, Refused
from producer.intake import Outcome, dead_letter, export_id_of, handle
from schemas import tasks

log = logging.getLogger(__name__)
broker.install()  # plain JSON requests on Redis, and a close that survives a restart

STORE_RETRY_SECONDS: Final = 5.0
"""How long to wait before the next message after the store could not be reached."""
ONCE_IDLE_SECONDS: Final = 2.0
"""``--once``: the queue counts as drained after this long without a message."""
CONNECT_RETRIES: Final = 3


@dataclass
class Limits:
    """When the listener stops by itself (none: it runs until signalled)."""

    max_messages: int | None = None
    idle_seconds: float | None = None  # stop after this long without a message


class Listener(ConsumerProducerMixin):
    """Consumes ``kx.requests`` on the configured broker (Redis or RabbitMQ)."""

    def __init__(
        self,
        ctx: Context,
        actor: Actor,
        limits: Limits | None = None,
        on_outcome: Callable[[Outcome], None] | None = None,
    ) -> None:
        self.ctx = ctx
        self.actor = actor
        self.limits = limits or Limits()
        self.on_outcome = on_outcome or (lambda outcome: None)
        self.connection = Connection(
            ctx.settings.broker_url,
            transport_options={
                "visibility_timeout": ctx.settings.visibility_timeout,
                "confirm_publish": True,
            },
        )
        self.handled = 0
        self._last_activity = time.monotonic()
        self._lost_at: float | None = None
        self._store = broker.StoreMark(ctx.redis)
        self.should_stop = False

    # -- kombu hooks ---------------------------------------------------------------

    def get_consumers(self, consumer: Any, channel: Any) -> list[Any]:
        return [
            consumer(
                queues=[tasks.document_queue(tasks.REQUESTS_QUEUE)],
                on_message=self.on_message,
                prefetch_count=1,
                accept=["json", "application/json", "application/data", "text/plain"],
            )
        ]

    def on_connection_revived(self) -> None:
        self._last_activity = time.monotonic()  # idle time counts from (re)connecting
        emptied = self._store_emptied()
        if self._lost_at is None:
            return
        away = time.monotonic() - self._lost_at
        self._lost_at = None
        gone = "; Redis came back empty: the runs in progress are gone" if emptied else ""
        log.warning("broker connection back after %.0f s: listening again%s", away, gone)

    def on_connection_error(self, exc: Exception, interval: float) -> None:
        # kombu logs every attempt with a traceback; the loss was said once already.
        log.debug("broker still away (%s): next try in %.0f s", type(exc).__name__, interval)

    def on_consume_ready(self, connection: Any, channel: Any, consumers: Any, **_: Any) -> None:
        log.info(
            "listening on %s at %s; %s",
            tasks.REQUESTS_QUEUE,
            connection.as_uri(),
            self._waiting_phrase(connection),
        )

    def on_iteration(self) -> None:
        idle = self.limits.idle_seconds
        if idle is not None and time.monotonic() - self._last_activity >= idle:
            log.info("no request for %.0f s: stopping", idle)
            self.should_stop = True

    def on_message(self, message: Any) -> None:
        received_at = datetime.now(UTC)
        self._last_activity = time.monotonic()
        body = message.body
        refused: Refused | None = None
        try:
            outcome = handle(self.ctx, self.actor, body)
        except Refused as exc:
            refused = exc
        except (redis.RedisError, OperationalError, ConfigurationError) as exc:
            log.error(  # noqa: TRY400 - the type says enough; no message, no traceback
                "request not handled (%s): put back on %s; next in %.0f s",
                type(exc).__name__,
                tasks.REQUESTS_QUEUE,
                STORE_RETRY_SECONDS,
            )
            message.requeue()
            self.on_outcome(Outcome("requeued", detail=type(exc).__name__))
            self._pause(STORE_RETRY_SECONDS)
            return
        except Exception as exc:  # noqa: BLE001 - a bug: dead-letter it rather than loop on it
            place = traceback.extract_tb(exc.__traceback__)[-1]
            log.error(  # noqa: TRY400 - the message could carry data: type and place only
                "request failed: %s at %s:%s", type(exc).__name__, place.filename, place.lineno
            )
            refused = Refused("internal_error", f"the listener failed: {type(exc).__name__}")
        if refused is not None:
            # If this publish fails, the message stays unacked and comes back.
            outcome = self._dead_letter(refused, body, received_at)
        message.ack()
        self.handled += 1
        self._log(outcome)
        self.on_outcome(outcome)
        if self.limits.max_messages is not None and self.handled >= self.limits.max_messages:
            self.should_stop = True

    # -- running -------------------------------------------------------------------

    def run(self, _tokens: int = 1, **kwargs: Any) -> None:
        """Consume until stopped; a lost broker connection is one line, then a reconnect."""
        errors = self.connection.connection_errors + self.connection.channel_errors
        while not self.should_stop:
            try:
                for _ in self.consume(limit=None, **kwargs):
                    pass
            except errors as exc:
                if self._lost_at is None:
                    self._lost_at = time.monotonic()
                    log.warning("broker connection lost (%s): reconnecting", type(exc).__name__)
                self._pause(1.0)

    def serve(self) -> int:
        """Consume until a limit is reached or a signal arrives; returns messages handled."""
        try:
            with self.connection.clone() as probe:
                probe.ensure_connection(max_retries=CONNECT_RETRIES)
        except Exception as exc:  # noqa: BLE001 - kombu's OperationalError or the transport's
            raise ConfigurationError(
                f"cannot reach the broker at {self.connection.as_uri()}: {type(exc).__name__}"
            ) from None
        self._store_emptied()  # the mark the next reconnection compares with
        with _stop_on_signals(self):
            while not self.should_stop:
                try:
                    self.run()  # reconnects by itself after connection errors
                except Exception as exc:  # noqa: BLE001 - see below
                    # Our handler catches everything, so this came from the transport.
                    log.error(  # noqa: TRY400 - type only: it could carry a message's data
                        "the broker failed (%s): consuming again in 1 s", type(exc).__name__
                    )
                    self._pause(1.0)
        return self.handled

    def _dead_letter(self, exc: Refused, body: Any, received_at: datetime) -> Outcome:
        connection = self.producer_connection
        tasks.publish_document(
            connection, tasks.DEAD_LETTER_QUEUE, dead_letter(exc, body, received_at)
        )
        try:
            audit.record(
                self.ctx.redis,
                self.actor,
                "request.refused",
                export_id_of(body) or "-",
                error=exc.kind,
                queue=tasks.DEAD_LETTER_QUEUE,
            )
        except redis.RedisError as err:  # the dead letter is what counts
            log.warning("refused request not audited: %s", type(err).__name__)
        error = {"type": exc.kind, "message": exc.message, "fields": exc.fields}
        return Outcome(
            "dead_lettered",
            export_id=export_id_of(body),
            error=error,
            dead_letters=self._waiting(connection),
        )

    def _waiting(self, connection: Any) -> int | None:
        try:
            return dead_letters.waiting(connection)
        except (*connection.connection_errors, *connection.channel_errors):
            return None  # the letter is sent; its count can wait for the next one

    def _waiting_phrase(self, connection: Any) -> str:
        count = self._waiting(connection)
        if count is None:
            return "dead letters: unknown"
        return f"{count} dead letter(s) on {tasks.DEAD_LETTER_QUEUE} (klaviyo-export dead-letters)"

    def _store_emptied(self) -> bool:
        try:
            return self._store.check()
        except redis.RedisError:
            return False  # the store is away too: the requests will say so

    def _log(self, outcome: Outcome) -> None:
        if outcome.outcome == "dead_lettered":
            log.warning("%s", outcome)
        else:
            log.info("%s", outcome)

    def _pause(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.should_stop and time.monotonic() < deadline:
            time.sleep(0.2)


@contextmanager
def _stop_on_signals(listener: Listener) -> Iterator[None]:
    """SIGTERM/SIGINT: finish the request in hand, then stop."""

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("%s: stopping after the request in hand", signal.Signals(signum).name)
        listener.should_stop = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
