"""The console on the embedded default: everything ``klaviyo-export serve`` needs, set up.

``klaviyo-export demo --serve`` (``frontdoors.cli.demo``) enters
:func:`console_demo` and serves the HTTP app inside it; the demo package may
not import the front doors, so the serving is the command's and the rest is
here. Inside the block run the demo's own Redis (never the user's), the sandbox,
real workers and beat (the watchdog), and the process environment points at
them, because the server builds its ``Context`` from the environment and
Celery in this process reads its broker from there too. Set up: a connection
contributors may use (terms accepted), an export bound to a sample segment in
a work folder that is also the only source root, the console users ``admin``
and ``contributor`` with generated passwords, and an admin API token.

Leaving the block stops every service, puts the environment back and deletes
the work folder: the Redis that knew the passwords and the token is gone, and
so is everything else. Ctrl-C during that teardown is ignored, so that a second
one cannot leave workers running.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from core import credentials
from core.context import Context
from demo.flow import (
    DEMO_ADMIN,
    DEMO_LIST,
    Steps,
    add_destination,
    new_secret_key,
    without_services,
)
from demo.sample import FAIL_EMAIL_PATTERN, write_sample
from demo.services import celery_beat, celery_workers, embedded_redis
from sandbox import SandboxConfig, SandboxServer

CONSOLE_PROFILES: Final = 50_000
CONSOLE_USERS: Final = ("admin", "contributor")  # each user's name is their role


@dataclass(frozen=True)
class ConsoleSetup:
    """What the console demo set up; the secrets stay out of its ``repr``."""

    redis_url: str
    sandbox_url: str
    workdir: Path
    connection_id: str
    export_id: str
    segment: Path
    rows: int
    token_id: str
    passwords: dict[str, str] = field(repr=False)  # console user -> password
    token: str = field(repr=False)  # the admin token's secret


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """The process environment without the user's services and with ``values``;
    as it was afterwards."""
    dropped = set(os.environ) - set(without_services(os.environ))
    saved = {name: os.environ.get(name) for name in {*dropped, *values}}
    for name in dropped:
        del os.environ[name]
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def _ignoring_interrupts() -> Iterator[None]:
    """SIGINT ignored (main thread only: elsewhere signals cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _set_up(
    ctx: Context, sandbox: SandboxServer, redis_url: str, workdir: Path, profiles: int, steps: Steps
) -> ConsoleSetup:
    """The connection, the bound export, the users and the token."""
    (api_key,) = sandbox.config.api_keys
    segment = workdir / "segment.csv"
    makeup = write_sample(segment, profiles, keep_emails=False)
    connection, export = add_destination(ctx, api_key, segment)
    steps.ready(connection.id, export.id, segment, makeup.rows)
    passwords = {name: secrets.token_urlsafe(12) for name in CONSOLE_USERS}
    for name, password in passwords.items():
        credentials.set_password(ctx.redis, DEMO_ADMIN, name, password, role=name)
    token, secret = credentials.issue_token(
        ctx.redis, DEMO_ADMIN, name="demo console", role="admin", user="admin"
    )
    return ConsoleSetup(
        redis_url=redis_url,
        sandbox_url=sandbox.base_url,
        workdir=workdir,
        connection_id=connection.id,
        export_id=export.id,
        segment=segment,
        rows=makeup.rows,
        token_id=token.id,
        passwords=passwords,
        token=secret,
    )


@contextmanager
def console_demo(
    steps: Steps, profiles: int = CONSOLE_PROFILES, workers: int = 1
) -> Iterator[ConsoleSetup]:
    """Redis, sandbox, ``workers`` workers and beat, set up for the console; all
    stopped and removed when the block ends."""
    workdir = Path(tempfile.mkdtemp(prefix="klaviyo-export-console-"))
    api_key = "pk_" + secrets.token_hex(17)
    config = SandboxConfig(
        api_keys={api_key: None}, lists=dict([DEMO_LIST]), fail_email=FAIL_EMAIL_PATTERN
    )
    stack = ExitStack()
    try:
        redis_url = stack.enter_context(embedded_redis())
        sandbox = stack.enter_context(SandboxServer(config, port=0))
        steps.services_up(redis_url, sandbox.base_url)
        env = {
            "REDIS_URL": redis_url,
            "KLAVIYO_BASE_URL": sandbox.base_url,
            "KLAVIYO_EXPORT_SECRET_KEY": new_secret_key(workdir),
            # Runs asked for over HTTP may read segments here, and nowhere else.
            "KLAVIYO_EXPORT_SOURCE_ROOTS": str(workdir.resolve()),
            # No 3 a.m. refresh: nothing here consumes the requests it would queue.
            "KLAVIYO_EXPORT_REFRESH_CRON": "",
        }
        stack.enter_context(_environment(env))
        service_env = dict(os.environ)
        stack.enter_context(celery_workers(service_env, count=workers, log_dir=workdir))
        stack.enter_context(celery_beat(service_env, workdir))
        ctx = Context.from_env(service_env)
        stack.callback(ctx.redis.close)
        yield _set_up(ctx, sandbox, redis_url, workdir, profiles, steps)
    finally:
        with _ignoring_interrupts():
            stack.close()
            shutil.rmtree(workdir, ignore_errors=True)
