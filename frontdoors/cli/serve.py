"""``serve``: the HTTP API and the web console, on uvicorn.

uvicorn builds the app in each worker process from the environment
(``frontdoors.http.app:app_from_env``, a factory), so that ``--workers N``
starts N processes with a Redis pool each and nothing shared between them
but Redis. The settings are checked here first, and the address is tried
before uvicorn starts, so that a wrong variable or a port already taken is
one line and exit 2, as every other command's refusal is.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import socket
from typing import Final

from core.settings import Settings, log_level
from frontdoors.cli.output import Exit, fail

APP: Final = "frontdoors.http.app:app_from_env"
LEVELS: Final = ("critical", "error", "warning", "info", "debug")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    helptext = "serve the HTTP API (/api/v1) and the web console (/) with uvicorn"
    serve = sub.add_parser("serve", help=helptext, description=helptext)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=_port, default=8080, help="port to listen on (8080)")
    serve.add_argument(
        "--workers", type=_workers, default=1, metavar="N", help="server processes (1)"
    )
    serve.add_argument(
        "--log-level",
        choices=LEVELS,
        help="default: KLAVIYO_EXPORT_LOG_LEVEL, or info when it is not set",
    )
    serve.add_argument(
        "--access-log",
        action="store_true",
        help="log every request (off by default: an orchestrator polling a run's status "
        "many times a second would fill the log, and cost the server a share of its time)",
    )
    serve.add_argument(
        "--forwarded-allow-ips",
        metavar="IPS",
        default=None,
        help="behind a reverse proxy: the proxies (comma-separated, or *) whose "
        "X-Forwarded-Proto and X-Forwarded-For are trusted, so that the console sees https "
        "and sets its cookie Secure (default: 127.0.0.1); the proxy must pass the Host header",
    )
    serve.set_defaults(_run=_serve)


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {value!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be 1..65535, not {port}")
    return port


def _workers(value: str) -> int:
    try:
        count = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not 1 <= count <= 64:
        raise argparse.ArgumentTypeError(f"must be 1..64, not {count}")
    return count


def address_problem(host: str, port: int) -> str | None:
    """Why the server could not listen on ``host:port``, or None when it can."""
    try:
        family, kind, proto, _, where = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        return f"cannot listen on {host!r}: {exc.strerror}"
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(where)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} on {host} is taken: stop what listens there, or use --port"
            return f"cannot listen on {host}:{port}: {exc.strerror}"
    return None


def _serve(args: argparse.Namespace) -> int:
    import uvicorn  # here: every other command starts without loading the server

    Settings.from_env()  # a ConfigurationError is one line, before anything starts
    configured = log_level() if os.environ.get("KLAVIYO_EXPORT_LOG_LEVEL") else "INFO"
    level = args.log_level or configured.lower()
    problem = address_problem(args.host, args.port)
    if problem is not None:
        return fail(problem, Exit.ERROR, as_json=bool(getattr(args, "json", False)))
    logging.getLogger().setLevel(level.upper())
    uvicorn.run(
        APP,
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=level,
        access_log=args.access_log,
        forwarded_allow_ips=args.forwarded_allow_ips,
        server_header=False,
    )
    return 0
