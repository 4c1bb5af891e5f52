"""The demo, end to end, on an embedded default: no Klaviyo account, no Redis of the user's.

Starts its own Redis (never the user's), the sandbox and real Celery workers,
adds a connection and an export, writes a sample segment with invalid, missing
and duplicate emails and a few the sandbox will fail, exports it, waits for the
run, and compares the counts and the list with the sample. ``klaviyo-export
demo`` (``frontdoors.cli.demo``) calls :func:`run_demo` and prints what it says.
"""

from __future__ import annotations

import os
import secrets
import stat
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final, Protocol

from core import operations
from core.actors import Actor
from core.context import Context
from core.records import Connection, Export, ExportSpec
from core.run_record import Run
from core.secrets import generate_key
from demo.sample import FAIL_EMAIL_PATTERN, SampleMakeup, write_sample
from demo.services import celery_workers, embedded_redis
from producer.runner import RunRequest, start_run
from sandbox import SandboxConfig, SandboxServer

DEMO_LIST: Final = ("DeMo01", "Demo newsletter")
DEMO_ADMIN: Final = Actor("demo", "admin")
RUN_TIMEOUT_S: Final = 600.0

SERVICE_VARIABLES: Final = (
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "CELERY_RESULT_BACKEND",
    "KLAVIYO_EXPORT_STORE_URL",
    "KLAVIYO_EXPORT_SECRET_KEY",
)
_SERVICE_NAMES: Final = frozenset(
    {*SERVICE_VARIABLES, *(f"{name}_FILE" for name in SERVICE_VARIABLES)}
)


class Steps(Protocol):
    """Told of the demo's progress as it goes (the command prints it)."""

    def services_up(self, redis_url: str, sandbox_url: str) -> None: ...

    def ready(self, connection_id: str, export_id: str, segment: Path, rows: int) -> None: ...


@dataclass(frozen=True)
class DemoResult:
    run: Run  # False ``run.final``: it had not ended after RUN_TIMEOUT_S
    makeup: SampleMakeup
    members: list[str]  # the demo list's emails in the sandbox, afterwards
    workdir: Path  # the segment and the workers' logs

    @property
    def expected(self) -> dict[str, int]:
        return self.makeup.expected_counts()

    @property
    def counts_match(self) -> bool:
        counts = asdict(self.run.counts)
        return {name: counts[name] for name in self.expected} == self.expected

    @property
    def list_matches(self) -> bool:
        return sorted(self.members) == sorted(self.makeup.imported_emails)

    @property
    def ok(self) -> bool:
        return self.counts_match and self.list_matches and self.run.final


def without_services(env: Mapping[str, str]) -> dict[str, str]:
    """The environment minus every pointer to the user's own Redis, broker or key
    (and their ``_FILE`` forms): the demo's workers must use the demo's."""
    return {k: v for k, v in env.items() if k not in _SERVICE_NAMES}


def add_destination(
    ctx: Context, api_key: str, segment: Path | None = None
) -> tuple[Connection, Export]:
    """The demo's connection (allowed to contributors, terms accepted) and its
    export to the demo list, bound to ``segment`` when one is given."""
    connection = operations.add_connection(
        ctx,
        DEMO_ADMIN,
        name="Demo account",
        api_key=api_key,
        allow="contributors",
        accept_privacy_terms=True,
    )
    spec = ExportSpec(
        connection_id=connection.id,
        list_id=DEMO_LIST[0],
        email_field="email",
        name="Demo export",
        properties={"first_name": "first_name", "plan": "plan"},
        segment=None if segment is None else str(segment),
    )
    return connection, operations.add_export(ctx, DEMO_ADMIN, spec)


def new_secret_key(workdir: Path) -> str:
    """A new Fernet key for the demo, also kept in a file only its owner can read."""
    path = workdir / "secret.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w") as handle:
        handle.write(generate_key())
    return path.read_text().strip()


def run_demo(profiles: int, workers: int, steps: Steps) -> DemoResult:
    """Export a sample of ``profiles`` rows to a sandbox through ``workers`` workers."""
    # This process too: Celery reads CELERY_BROKER_URL (and others) from the
    # environment itself, over the broker its app is given.
    for name in _SERVICE_NAMES:
        os.environ.pop(name, None)
    workdir = Path(tempfile.mkdtemp(prefix="klaviyo-export-demo-"))
    api_key = "pk_" + secrets.token_hex(17)
    config = SandboxConfig(
        api_keys={api_key: None}, lists=dict([DEMO_LIST]), fail_email=FAIL_EMAIL_PATTERN
    )
    with embedded_redis() as redis_url, SandboxServer(config, port=0) as sandbox:
        steps.services_up(redis_url, sandbox.base_url)
        env = {
            **without_services(os.environ),
            "REDIS_URL": redis_url,
            "KLAVIYO_BASE_URL": sandbox.base_url,
            "KLAVIYO_EXPORT_SECRET_KEY": new_secret_key(workdir),
        }
        ctx = Context.from_env(env)
        with celery_workers(env, count=workers, log_dir=workdir):
            connection, export = add_destination(ctx, api_key)
            segment = workdir / "segment.csv"
            makeup = write_sample(segment, profiles)
            steps.ready(connection.id, export.id, segment, makeup.rows)
            started = time.monotonic()
            run_id = start_run(ctx, RunRequest(export.id, str(segment), DEMO_ADMIN))
            run = ctx.runs.get(run_id)
            while not run.final and time.monotonic() - started <= RUN_TIMEOUT_S:
                time.sleep(0.2)
                run = ctx.runs.get(run_id)
            members = sandbox.list_emails(DEMO_LIST[0])
    return DemoResult(run, makeup, members, workdir)
