"""Commands whose packages the production image leaves out.

The production image (the Dockerfile's ``app`` stage) carries no ``sandbox``
and no ``demo``: they are a fake Klaviyo and its walkthrough, not the product.
The commands that need them (``sandbox``, ``demo``, ``sample``) import them
only when they run, inside :func:`needs`, so that the rest of the command line
works without them and these say, in one line (exit 2), what is missing
instead of a traceback.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final

from core.errors import ConfigurationError

OPTIONAL_PACKAGES: Final = frozenset({"sandbox", "demo"})


def missing(command: str, package: str) -> ConfigurationError:
    return ConfigurationError(
        f"`klaviyo-export {command}` needs the {package!r} package, which is not installed "
        "here (the production image leaves out the sandbox and the demo: use the demo image)"
    )


def absent_package(exc: ImportError) -> str | None:
    """The optional package whose absence ``exc`` reports, if that is what it reports."""
    package = (exc.name or "").partition(".")[0]
    return package if package in OPTIONAL_PACKAGES else None


@contextmanager
def needs(command: str) -> Iterator[None]:
    """Turn the ImportError of an optional package into the one-line refusal;
    any other ImportError is a fault and stays one."""
    try:
        yield
    except ImportError as exc:
        package = absent_package(exc)
        if package is None:
            raise
        raise missing(command, package) from None


def register_absent(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    command: str,
    package: str,
    summary: str,
) -> None:
    """Register ``command`` when ``package``, which defines its flags, is absent.

    It takes any arguments, so that every form of the command (``sandbox
    --port 8025 ...`` too) gets the one line naming what is missing rather
    than argparse's complaint about flags it was never told of.
    """
    parser = sub.add_parser(command, help=f"{summary} (not installed here)", description=summary)

    def parse_known_args(
        args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        namespace = namespace or argparse.Namespace()
        namespace.json = "--json" in (args or ())
        namespace._run = refuse
        return namespace, []

    def refuse(_args: Any) -> int:
        raise missing(command, package)

    # The sub-command action hands this parser every word after the command.
    setattr(parser, "parse_known_args", parse_known_args)  # noqa: B010
