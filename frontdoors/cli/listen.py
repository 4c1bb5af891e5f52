"""``listen`` and ``dead-letters``: the request queue upstream systems and schedules use.

``listen`` logs one line per request (``--json`` also prints it as a JSON
object on stdout, for scripts); ``dead-letters`` reads, and with ``--purge``
removes, what the listener refused, on Redis and RabbitMQ alike.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import TYPE_CHECKING, Any

from core.actors import require_admin
from core.errors import InvalidInput
from core.settings import Settings
from frontdoors.cli.output import emit_json
from schemas.tasks import DEAD_LETTER_QUEUE, REQUESTS_QUEUE

if TYPE_CHECKING:
    from producer.intake import Outcome

    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    SubParsers = argparse._SubParsersAction


def register(sub: SubParsers) -> None:
    helptext = (
        f"consume export requests from the broker queue {REQUESTS_QUEUE} and start their runs "
        f"as the acting user; refused requests go to {DEAD_LETTER_QUEUE} with the error"
    )
    listen = sub.add_parser("listen", help=helptext, description=helptext)
    listen.add_argument(
        "--once", action="store_true", help="handle the requests waiting now, then exit"
    )
    listen.add_argument(
        "--max-messages", type=int, metavar="N", help="exit after handling N requests"
    )
    listen.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        help="exit after S seconds without a request (default: run until SIGTERM/SIGINT)",
    )
    listen.add_argument(
        "--json", action="store_true", help="also print a JSON object per request on stdout"
    )
    listen.set_defaults(_run=_listen)

    helptext = (
        f"print the requests the listener refused ({DEAD_LETTER_QUEUE}), oldest first, "
        "each with its error; --purge also removes them (admins)"
    )
    letters = sub.add_parser("dead-letters", help=helptext, description=helptext)
    letters.add_argument(
        "--purge", action="store_true", help="remove the letters printed (admins only)"
    )
    letters.add_argument("--json", action="store_true", help="print one JSON object")
    letters.set_defaults(_run=_dead_letters)


def _listen(args: argparse.Namespace) -> int:
    from core.context import Context
    from producer.listen import ONCE_IDLE_SECONDS, Limits, Listener

    if args.max_messages is not None and args.max_messages < 1:
        raise InvalidInput("--max-messages must be 1 or more")
    if args.timeout is not None and args.timeout <= 0:
        raise InvalidInput("--timeout must be a positive number of seconds")
    idle = args.timeout
    if args.once:
        idle = ONCE_IDLE_SECONDS if idle is None else min(idle, ONCE_IDLE_SECONDS)
    as_json = bool(getattr(args, "json", False))

    def show(outcome: Outcome) -> None:
        emit_json(outcome.public())
        sys.stdout.flush()

    # The listener's own log is its report, one line per request: show it at
    # INFO even when the rest of the log is quieter.
    listener_log = logging.getLogger("producer.listen")
    if listener_log.getEffectiveLevel() > logging.INFO:
        listener_log.setLevel(logging.INFO)
    listener = Listener(
        Context.from_env(),
        args.actor,
        Limits(max_messages=args.max_messages, idle_seconds=idle),
        on_outcome=show if as_json else None,
    )
    if not as_json:
        print(
            f"listening on {REQUESTS_QUEUE} as {args.actor} (Ctrl-C or SIGTERM stops)",
            file=sys.stderr,
        )
    listener.serve()
    return 0


def _dead_letters(args: argparse.Namespace) -> int:
    from core import dead_letters

    if args.purge:
        require_admin(args.actor, "purge the dead-letter queue")
    found = dead_letters.read(Settings.from_env().broker_url, purge=args.purge)
    if getattr(args, "json", False):
        emit_json(found.public())
        return 0
    for letter in found.letters:
        print(_describe(letter))
    where = f"on {found.queue}"
    if found.purged:
        print(f"{found.count} dead letter(s) removed from {found.queue}")
    elif found.count:
        print(f"{found.count} dead letter(s) {where} (kept; --purge removes them)")
    else:
        print(f"no dead letters {where}")
    return 0


def _describe(letter: Any) -> str:
    """Two lines for a person: when and why, then the original message."""
    if not isinstance(letter, dict) or not isinstance(letter.get("error"), dict):
        return f"? not a dead letter of this listener: {json.dumps(letter, ensure_ascii=False)}"
    error = letter["error"]
    message = json.dumps(letter.get("message"), ensure_ascii=False)
    return (
        f"{letter.get('received_at', '?')}  {error.get('type', '?')}: "
        f"{error.get('message', '')}\n    message: {message}"
    )
