"""``demo`` and ``sample``: the whole product on an embedded default, and the
sample segments it exports.

``demo`` runs ``demo.flow.run_demo`` (its own Redis, the sandbox, real
workers; a sample export checked against the sample's make-up) and prints
what it found. Both commands import the ``demo`` package (and ``demo`` the
``sandbox``) only when they run: the production image has neither, and there
they say so in one line (``frontdoors.cli.optional``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from core.errors import InvalidInput
from frontdoors.cli.optional import needs
from frontdoors.cli.output import add_json_flag, emit_json
from frontdoors.cli.waiting import print_status, summarize


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    demo = sub.add_parser(
        "demo", help="export a sample segment to the embedded sandbox, end to end"
    )
    demo.add_argument("--profiles", type=int, default=5000, help="rows in the sample (5000)")
    demo.add_argument("--workers", type=int, default=1, help="worker processes (1)")
    add_json_flag(demo)
    demo.set_defaults(_run=_demo)
    sample = sub.add_parser(
        "sample",
        help="write a sample segment (CSV; .gz compresses) to try exports at real sizes",
        description="Columns email, first_name, plan, score; about 2%% invalid, 1%% missing "
        "and 2%% duplicate emails, and 0.5%% at bounce.example.net (the domain the demo's "
        "sandbox fails). Deterministic for a given --rows and --seed.",
    )
    sample.add_argument("path", metavar="PATH")
    sample.add_argument("--rows", type=int, default=50_000, help="data rows (50000)")
    sample.add_argument("--seed", type=int, default=7)
    add_json_flag(sample)
    sample.set_defaults(_run=_sample)


def _sample(args: argparse.Namespace) -> int:
    with needs("sample"):
        from demo.sample import write_sample
    if args.rows < 0:
        raise InvalidInput("--rows must be 0 or more")
    path = Path(args.path)
    try:
        makeup = write_sample(path, args.rows, seed=args.seed, keep_emails=False)
    except OSError as exc:
        raise InvalidInput(f"cannot write {path}: {exc.strerror or exc}") from None
    expected = makeup.expected_counts()
    if args.json:
        emit_json({"path": str(path.absolute()), "expected": expected})
    else:
        print(
            f"{path}: {makeup.rows:,} rows; a run should read {expected['rows_read']:,}, "
            f"reject {expected['rejected']:,} and submit {expected['submitted']:,}"
        )
    return 0


class _Say:
    """Prints the demo's steps as they happen (nothing with ``--json``)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def services_up(self, redis_url: str, sandbox_url: str) -> None:
        if not self.quiet:
            print(
                f"redis: its own, at {redis_url} (gone afterwards); sandbox Klaviyo: {sandbox_url}"
            )

    def ready(self, connection_id: str, export_id: str, segment: Path, rows: int) -> None:
        if not self.quiet:
            print(
                f"connection {connection_id}, export {export_id}; segment {segment} ({rows:,} rows)"
            )


def _demo(args: argparse.Namespace) -> int:
    with needs("demo"):
        from demo.flow import DEMO_LIST, run_demo
    if args.profiles < 1:
        raise InvalidInput("--profiles must be at least 1")
    result = run_demo(args.profiles, args.workers, _Say(quiet=args.json))
    makeup = result.makeup
    if args.json:
        emit_json(
            {
                **summarize(result.run),
                "expected": result.expected,
                "list_matches": result.list_matches,
                "ok": result.ok,
            }
        )
    else:
        print_status(result.run)
        print(
            f"sample: {makeup.invalid_email} invalid, {makeup.missing_email} missing, "
            f"{makeup.duplicate} duplicate emails; {makeup.klaviyo_fails} the sandbox fails"
        )
        holds = (
            "exactly the valid unique emails" if result.list_matches else "NOT the expected emails"
        )
        print(f"list {DEMO_LIST[0]} holds {len(result.members):,} profiles: {holds}")
        print(
            "counts match the sample"
            if result.counts_match
            else f"MISMATCH: expected {result.expected}"
        )
        print(f"the segment and the worker's log are in {result.workdir}")
    return 0 if result.ok else 1
