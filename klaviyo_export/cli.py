"""The ``klaviyo-export`` command: one entry point, one subcommand per job.

Each subcommand lives with the package that owns it and contributes two
functions, ``add_arguments(parser)`` and ``run(args) -> int``; this module only
wires them together, so that ``--help`` works everywhere.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Protocol, cast

from klaviyo_export import __version__


class Command(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...
    def run(self, args: argparse.Namespace) -> int: ...


COMMANDS: dict[str, tuple[str, str]] = {
    # name: (module that implements it, one-line summary)
    "sandbox": ("sandbox.cli", "run a local Klaviyo (the sandbox) for tests and demos"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="klaviyo-export",
        description="Export customer segments into Klaviyo lists.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, summary) in COMMANDS.items():
        command = cast(Command, importlib.import_module(module))
        child = sub.add_parser(name, help=summary, description=summary)
        command.add_arguments(child)
        child.set_defaults(_run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
