"""``listen``: start the runs upstream systems and schedules request on the broker."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from klaviyo_export.commands.output import emit_json
from klaviyo_export.context import Context
from klaviyo_export.errors import InvalidInput
from schemas.tasks import DEAD_LETTER_QUEUE, REQUESTS_QUEUE

if TYPE_CHECKING:
    from producer.listen import Outcome

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
    listen.add_argument("--json", action="store_true", help="print a JSON object per request")
    listen.set_defaults(_run=_listen)


def _listen(args: argparse.Namespace) -> int:
    from producer.listen import ONCE_IDLE_SECONDS, Limits, Listener

    if args.max_messages is not None and args.max_messages < 1:
        raise InvalidInput("--max-messages must be 1 or more")
    if args.timeout is not None and args.timeout <= 0:
        raise InvalidInput("--timeout must be a positive number of seconds")
    idle = args.timeout
    if args.once:
        idle = ONCE_IDLE_SECONDS if idle is None else min(idle, ONCE_IDLE_SECONDS)

    def show(outcome: Outcome) -> None:
        if args.json:
            emit_json(outcome.public())
        else:
            print(outcome)
        sys.stdout.flush()

    listener = Listener(
        Context.from_env(),
        args.actor,
        Limits(max_messages=args.max_messages, idle_seconds=idle),
        on_outcome=show,
    )
    if not args.json:
        print(
            f"listening on {REQUESTS_QUEUE} as {args.actor} (Ctrl-C or SIGTERM stops)",
            file=sys.stderr,
        )
    listener.serve()
    return 0
