"""The ``klaviyo-export`` command: one entry point, one module per group of commands.

Each module in ``frontdoors.cli`` has ``register(subparsers)`` and
sets ``_run`` on the parsers it adds. The global flags (``--as``, ``--json``)
are accepted anywhere on the line. Every error is one line on stderr naming
what is wrong, with an exit code, as ``frontdoors.cli.output.ANSWERS`` has it:
no traceback, no secret (``KLAVIYO_EXPORT_DEBUG=1`` shows the traceback of an
internal error, for a bug report).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Iterator, Sequence
from typing import NoReturn

from core import __version__
from core.actors import Actor
from core.errors import ConfigurationError
from core.settings import log_level
from frontdoors.cli.output import answer, emit_json

COMMAND_MODULES = (
    "frontdoors.cli.config",
    "frontdoors.cli.runs",
    "frontdoors.cli.demo",
    "frontdoors.cli.sandbox",
    "frontdoors.cli.listen",
    "frontdoors.cli.access",
    "frontdoors.cli.serve",
)
AS_HELP = (
    "act as USER with ROLE (admin or contributor); default: KLAVIYO_EXPORT_USER "
    "and KLAVIYO_EXPORT_ROLE, else the login name as a contributor"
)
JSON_HELP = "print one JSON object (the last line) for scripts; errors too"


class _Parser(argparse.ArgumentParser):
    """argparse, whose usage errors also answer ``--json`` with a JSON object."""

    json_errors = False

    def error(self, message: str) -> NoReturn:
        if self.json_errors:
            emit_json({"error": {"type": "usage", "message": message}, "exit_code": 2})
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="klaviyo-export",
        description="Export customer segments into Klaviyo lists.",
        epilog="Configuration comes from the environment: REDIS_URL, KLAVIYO_BASE_URL, "
        "KLAVIYO_EXPORT_SECRET_KEY (see README). Exit codes: 0 done, 1 the run did not "
        "succeed, 2 refused, 3 the run awaits approval, 4 timed out, 5 a service is "
        "unreachable, 6 skipped (a run is in progress), 70 internal error.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--as", dest="acting_as", metavar="USER:ROLE", help=AS_HELP)
    parser.add_argument("--json", action="store_true", help=JSON_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    for leaf in _leaves(parser):
        _accept_global_flags(leaf)
    return parser


def _leaves(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """Every parser below ``parser`` that has no subcommands of its own."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):  # aliases repeat
                if any(isinstance(a, argparse._SubParsersAction) for a in child._actions):
                    yield from _leaves(child)
                else:
                    yield child


def _accept_global_flags(leaf: argparse.ArgumentParser) -> None:
    """``--as`` and ``--json`` after the subcommand too.

    A subcommand's parser copies every attribute it has into the namespace,
    defaults included, so here their default is SUPPRESS: a flag given before
    the subcommand is not reset by the subcommand's default.
    """
    options = {opt: action for action in leaf._actions for opt in action.option_strings}
    if "--json" in options:
        options["--json"].default = argparse.SUPPRESS
    else:
        leaf.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=JSON_HELP)
    if "--as" not in options:
        leaf.add_argument(
            "--as",
            dest="acting_as",
            metavar="USER:ROLE",
            default=argparse.SUPPRESS,
            help=AS_HELP,
        )


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    _Parser.json_errors = "--json" in words
    try:
        level = log_level()
    except ConfigurationError as exc:
        return answer(exc, as_json=_Parser.json_errors)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(words)
    try:
        args.actor = Actor.parse(args.acting_as) if args.acting_as else Actor.from_env()
        return int(args._run(args))
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - each is answered in one line
        return answer(exc, as_json=bool(getattr(args, "json", False)))


if __name__ == "__main__":
    sys.exit(main())
