"""``python -m sandbox ...``: the sandbox without the main CLI."""

from __future__ import annotations

import argparse
import gc

from sandbox.cli import add_arguments, run

# Young-generation size for the cyclic collector in a sandbox process. Every
# profile a bulk import creates is a tuple that stays tracked until the next
# young collection, and a parsed 10,000-profile body is 20,000 tracked dicts
# that every young and middle collection walks while they are young: with
# CPython's default of 700, collections cost about 2 us of the 12-15 us a
# profile costs (micro-benchmark); with 20,000 about half of that. The sandbox
# keeps no cycles; the few garbage ones (tracebacks) are just found later.
GC_YOUNG_THRESHOLD = 20_000


def main() -> int:
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)
    parser = argparse.ArgumentParser(
        prog="python -m sandbox", description="Run a local Klaviyo API sandbox."
    )
    add_arguments(parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
