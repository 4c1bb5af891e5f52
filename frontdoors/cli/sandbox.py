"""``sandbox``: serve a local Klaviyo (see the ``sandbox`` package).

Its flags are the sandbox's own, so the package is imported when the parser
is built; where it is not installed (the production image), the command is
still there and says so in one line (``frontdoors.cli.optional``).
"""

from __future__ import annotations

import argparse

from frontdoors.cli.optional import absent_package, register_absent

SUMMARY = "run a local Klaviyo (the sandbox) for tests and demos"


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    try:
        from sandbox.cli import add_arguments, run
    except ImportError as exc:
        package = absent_package(exc)
        if package is None:
            raise
        register_absent(sub, "sandbox", package, SUMMARY)
        return
    parser = sub.add_parser("sandbox", help=SUMMARY, description=SUMMARY)
    add_arguments(parser)
    parser.set_defaults(_run=run)
