"""``python -m sandbox ...``: the sandbox without the main CLI."""

from __future__ import annotations

import argparse

from sandbox.cli import add_arguments, run


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox", description="Run a local Klaviyo API sandbox."
    )
    add_arguments(parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
