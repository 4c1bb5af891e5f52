"""``klaviyo-export sandbox``: run the sandbox until SIGINT or SIGTERM.

The main CLI wires :func:`add_arguments` and :func:`run` into its
``sandbox`` sub-command; ``python -m sandbox`` does the same on its own. On
start one line is printed with the URL to point clients at. Every flag is
documented by ``--help`` with its default; their meaning is in
:mod:`sandbox.config`.

Keys given with ``--api-key`` are visible to other local users in the process
list; that is acceptable for made-up sandbox keys, and nothing the sandbox
prints or logs contains them.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from sandbox.config import SandboxConfig, parse_api_key, parse_list
from sandbox.server import SandboxServer


def _api_key(text: str) -> tuple[str, frozenset[str] | None]:
    try:
        return parse_api_key(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _list(text: str) -> tuple[str, str]:
    try:
        return parse_list(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every sandbox flag to ``parser``."""
    defaults = SandboxConfig(api_keys={"placeholder": None})
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)")
    add(
        "--port",
        type=int,
        default=8025,
        help="port to listen on, 0 for any free one (default: %(default)s)",
    )
    add(
        "--api-key",
        dest="api_keys",
        metavar="KEY[:SCOPES]",
        type=_api_key,
        action="append",
        required=True,
        help="accepted private key, repeatable; each is its own account. KEY alone has every "
        "scope, KEY:lists:read,profiles:write only those (default: none, at least one required)",
    )
    add(
        "--list",
        dest="lists",
        metavar="ID[:NAME]",
        type=_list,
        action="append",
        default=[],
        help="list that exists at start in every account, repeatable (default: none)",
    )
    add(
        "--job-queue-seconds",
        type=float,
        default=defaults.job_queue_seconds,
        help="seconds a bulk import job stays queued (default: %(default)s)",
    )
    add(
        "--job-profiles-per-second",
        type=float,
        default=defaults.job_profiles_per_second,
        help="bulk import processing speed (default: %(default)s)",
    )
    add(
        "--fail-email",
        metavar="REGEX",
        default=None,
        help="import rows whose email matches REGEX fail, for tests (default: none)",
    )
    add(
        "--rate-limit-scale",
        type=float,
        default=defaults.rate_limit_scale,
        help="multiplies every rate limit from the spec; 0 turns limiting off "
        "(default: %(default)s)",
    )
    add(
        "--fault-rate",
        type=float,
        default=defaults.fault_rate,
        help="share of /api/ answers replaced by 500, 502, 503 or a dropped connection "
        "(default: %(default)s)",
    )
    add(
        "--latency-ms",
        type=float,
        default=defaults.latency_ms,
        help="milliseconds added to every /api/ answer (default: %(default)s)",
    )
    add(
        "--seed",
        type=int,
        default=None,
        help="seed for repeatable faults and ids (default: random)",
    )
    add(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="DEBUG logs one line per request (default: %(default)s)",
    )


def config_from_args(args: argparse.Namespace) -> SandboxConfig:
    """The validated configuration the parsed flags describe."""
    return SandboxConfig(
        api_keys=dict(args.api_keys or []),
        lists=dict(args.lists or []),
        job_queue_seconds=args.job_queue_seconds,
        job_profiles_per_second=args.job_profiles_per_second,
        fail_email=args.fail_email,
        rate_limit_scale=args.rate_limit_scale,
        fault_rate=args.fault_rate,
        latency_ms=args.latency_ms,
        seed=args.seed,
    )


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM; 0 on a clean stop, 2 on bad options, 1 if it cannot bind."""
    # force: under `klaviyo-export sandbox` the command has configured logging
    # already, and a plain basicConfig would leave --log-level without effect.
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        force=True,
    )
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return 2
    try:
        server = SandboxServer(config, host=args.host, port=args.port)
    except OSError as exc:
        print(f"sandbox: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, on_signal)
    try:
        with server:
            accounts = ", ".join(sorted(server.app.store.accounts))
            print(
                f"Klaviyo sandbox listening on {server.base_url} (accounts: {accounts})", flush=True
            )
            while not stop.wait(0.5):
                pass
    except KeyboardInterrupt:
        pass
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0
