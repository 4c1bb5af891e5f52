"""The ``klaviyo-export`` command: one entry point, one module per group of commands.

Each module in ``klaviyo_export.commands`` has ``register(subparsers)`` and
sets ``_run`` on the parsers it adds. Errors the user can fix are printed as
one line naming what is wrong (exit 2); no traceback, no secret.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from klaviyo_client import KlaviyoError
from klaviyo_export import __version__
from klaviyo_export.actors import Actor
from klaviyo_export.commands.output import fail
from klaviyo_export.errors import ExportError

COMMAND_MODULES = (
    "klaviyo_export.commands.config",
    "klaviyo_export.commands.runs",
    "klaviyo_export.commands.demo",
    "klaviyo_export.commands.sandbox",
    "klaviyo_export.commands.listen",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="klaviyo-export",
        description="Export customer segments into Klaviyo lists.",
        epilog="Configuration comes from the environment: REDIS_URL, KLAVIYO_BASE_URL, "
        "KLAVIYO_EXPORT_SECRET_KEY (see README).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--as",
        dest="acting_as",
        metavar="USER:ROLE",
        help="act as USER with ROLE (admin or contributor); default: KLAVIYO_EXPORT_USER "
        "and KLAVIYO_EXPORT_ROLE, else the login name as a contributor",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=os.environ.get("KLAVIYO_EXPORT_LOG_LEVEL", "WARNING").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    args = build_parser().parse_args(argv)
    try:
        args.actor = Actor.parse(args.acting_as) if args.acting_as else Actor.from_env()
        return int(args._run(args))
    except (ExportError, KlaviyoError) as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
