"""``demo`` and ``sample``: the whole product on an embedded default, and the
sample segments it exports.

``demo`` runs ``demo.flow.run_demo`` (its own Redis, the sandbox, real
workers; a sample export checked against the sample's make-up) and prints
what it found. ``demo --serve`` is the console on that default instead: it
enters ``demo.console.console_demo`` (the same services, a bound export,
console users and a token) and serves the HTTP app inside it until Ctrl-C,
which stops the server and every service. The serving is here because the
demo package may not import the front doors. Both commands import the
``demo`` package (and ``demo`` the ``sandbox``) only when they run: the
production image has neither, and there they say so in one line
(``frontdoors.cli.optional``).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from core.context import Context
from core.errors import InvalidInput
from frontdoors.cli.optional import needs
from frontdoors.cli.output import add_json_flag, emit_json
from frontdoors.cli.waiting import print_status, summarize

if TYPE_CHECKING:
    from demo.console import ConsoleSetup


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    demo = sub.add_parser(
        "demo", help="export a sample segment to the embedded sandbox, end to end"
    )
    demo.add_argument(
        "--profiles", type=int, default=None, help="rows in the sample (5000; 50000 with --serve)"
    )
    demo.add_argument("--workers", type=int, default=1, help="worker processes (1)")
    demo.add_argument(
        "--serve",
        action="store_true",
        help="instead: serve the console and API on the demo's services until Ctrl-C",
    )
    demo.add_argument("--host", default="127.0.0.1", help="with --serve (127.0.0.1)")
    demo.add_argument("--port", type=int, default=8080, help="with --serve (8080)")
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
    if args.serve:
        return _serve(args)
    with needs("demo"):
        from demo.flow import DEMO_LIST, run_demo
    profiles = 5000 if args.profiles is None else args.profiles
    if profiles < 1:
        raise InvalidInput("--profiles must be at least 1")
    result = run_demo(profiles, args.workers, _Say(quiet=args.json))
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


def _listening(host: str, port: int) -> socket.socket:
    """Bound and listening before any service starts: a port in use is said at
    once, and the URL printed answers as soon as it is printed."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        raise InvalidInput(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds: every service the demo started is stopped


def _serve(args: argparse.Namespace) -> int:
    with needs("demo"):
        from demo.console import CONSOLE_PROFILES, console_demo
    import uvicorn

    from frontdoors.http.app import create_app

    profiles = CONSOLE_PROFILES if args.profiles is None else args.profiles
    if profiles < 1:
        raise InvalidInput("--profiles must be at least 1")
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        with (
            _listening(args.host, args.port) as listener,
            console_demo(_Say(quiet=args.json), profiles, args.workers) as setup,
        ):
            host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
            host = f"[{host}]" if ":" in host else host
            _print_console(setup, f"http://{host}:{listener.getsockname()[1]}", args.json)
            app = create_app(Context.from_env(), reader_processes=True)
            server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
            with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how it ends
                server.run(sockets=[listener])
    finally:
        signal.signal(signal.SIGTERM, previous)
    if not args.json:
        print("stopped: the server, the workers, beat, the sandbox and redis are gone")
    return 0


def _print_console(setup: ConsoleSetup, base: str, as_json: bool) -> None:
    auth = f'-H "Authorization: Bearer {setup.token}"'
    start = f"curl -sS -X POST {auth} {base}/api/v1/exports/{setup.export_id}/runs"
    if as_json:
        shown = {"url": f"{base}/", "users": setup.passwords, "token": setup.token}
        emit_json(shown | {"export_id": setup.export_id, "start_run": start})
    else:
        print(f"console: {base}/  (API: {base}/api/v1/docs)")
        for name, password in setup.passwords.items():
            print(f"  sign in as {name} ({name}), password {password}")
        print(f"API token (admin): {setup.token}")
        print(f"start a run of export {setup.export_id}:\n  {start}")
        print(f"follow it: curl -sS {auth} {base}/api/v1/runs/RUN_ID")
        print("Ctrl-C stops the server and every service it started")
    sys.stdout.flush()  # a pipe (a test, a log) sees it now, not when the server stops
