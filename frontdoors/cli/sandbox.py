"""``sandbox``: serve a local Klaviyo (see the ``sandbox`` package)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from sandbox.cli import add_arguments, run

    summary = "run a local Klaviyo (the sandbox) for tests and demos"
    parser = sub.add_parser("sandbox", help=summary, description=summary)
    add_arguments(parser)
    parser.set_defaults(_run=run)
