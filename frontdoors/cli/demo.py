"""``demo``: the whole product on an embedded default, no Klaviyo account needed.

Starts its own Redis (never the user's), the sandbox and a real Celery worker, adds a
connection and an export, writes a sample segment with invalid, missing and
duplicate emails and a few the sandbox will fail, exports it, prints the run
summary, and checks that the counts and the list match the sample exactly.
"""

from __future__ import annotations

import argparse
import os
import secrets
import stat
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from core import operations
from core.actors import Actor
from core.context import Context
from core.errors import InvalidInput
from core.secrets import generate_key
from demo.sample import FAIL_EMAIL_PATTERN, write_sample
from demo.services import celery_workers, embedded_redis
from frontdoors.cli.output import add_json_flag, emit_json
from frontdoors.cli.waiting import print_status, summarize
from schemas.contracts import FINAL_RUN_STATUSES

DEMO_LIST = ("DeMo01", "Demo newsletter")
DEMO_ADMIN = Actor("demo", "admin")


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


def _secret_key(workdir: Path) -> str:
    """The demo's own Fernet key, in a file only its owner can read."""
    path = workdir / "secret.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w") as handle:
        handle.write(generate_key())
    return path.read_text().strip()


SERVICE_VARIABLES = (
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "CELERY_RESULT_BACKEND",
    "KLAVIYO_EXPORT_STORE_URL",
    "KLAVIYO_EXPORT_SECRET_KEY",
)


def _without_services(env: Mapping[str, str]) -> dict[str, str]:
    """The environment minus every pointer to the user's own Redis, broker or key
    (and their ``_FILE`` forms): the demo's workers must use the demo's."""
    return {k: v for k, v in env.items() if k not in _SERVICE_NAMES}


_SERVICE_NAMES = frozenset({*SERVICE_VARIABLES, *(f"{name}_FILE" for name in SERVICE_VARIABLES)})


def _demo(args: argparse.Namespace) -> int:
    from sandbox import SandboxConfig, SandboxServer

    if args.profiles < 1:
        raise InvalidInput("--profiles must be at least 1")
    # This process too: Celery reads CELERY_BROKER_URL (and others) from the
    # environment itself, over the broker its app is given.
    for name in _SERVICE_NAMES:
        os.environ.pop(name, None)
    workdir = Path(tempfile.mkdtemp(prefix="klaviyo-export-demo-"))
    api_key = "pk_" + secrets.token_hex(17)
    config = SandboxConfig(
        api_keys={api_key: None}, lists=dict([DEMO_LIST]), fail_email=FAIL_EMAIL_PATTERN
    )
    say = (lambda *_: None) if args.json else print
    with embedded_redis() as redis_url, SandboxServer(config, port=0) as sandbox:
        say(
            f"redis: its own, at {redis_url} (gone afterwards); sandbox Klaviyo: {sandbox.base_url}"
        )
        env = {
            **_without_services(os.environ),
            "REDIS_URL": redis_url,
            "KLAVIYO_BASE_URL": sandbox.base_url,
            "KLAVIYO_EXPORT_SECRET_KEY": _secret_key(workdir),
        }
        ctx = Context.from_env(env)
        with celery_workers(env, count=args.workers, log_dir=workdir):
            connection = operations.add_connection(
                ctx,
                DEMO_ADMIN,
                name="Demo account",
                api_key=api_key,
                allow="contributors",
                accept_privacy_terms=True,
            )
            export = operations.add_export(
                ctx,
                DEMO_ADMIN,
                connection_id=connection.id,
                list_id=DEMO_LIST[0],
                email_field="email",
                name="Demo export",
                properties={"first_name": "first_name", "plan": "plan"},
            )
            segment = workdir / "segment.csv"
            makeup = write_sample(segment, args.profiles)
            say(
                f"connection {connection.id}, export {export.id}; segment {segment} "
                f"({makeup.rows:,} rows)"
            )
            from producer.runner import RunRequest, start_run

            started = time.monotonic()
            run_id = start_run(ctx, RunRequest(export.id, str(segment), DEMO_ADMIN))
            status = ctx.runs.status(run_id)
            while status["status"] not in FINAL_RUN_STATUSES:
                if time.monotonic() - started > 600:
                    break
                time.sleep(0.2)
                status = ctx.runs.status(run_id)
            members = sandbox.list_emails(DEMO_LIST[0])
    expected = makeup.expected_counts()
    actual = {name: status["counts"][name] for name in expected}
    list_ok = sorted(members) == sorted(makeup.imported_emails)
    ok = actual == expected and list_ok and status["status"] in FINAL_RUN_STATUSES
    if args.json:
        emit_json({**summarize(status), "expected": expected, "list_matches": list_ok, "ok": ok})
    else:
        print_status(status)
        print(
            f"sample: {makeup.invalid_email} invalid, {makeup.missing_email} missing, "
            f"{makeup.duplicate} duplicate emails; {makeup.klaviyo_fails} the sandbox fails"
        )
        print(
            f"list {DEMO_LIST[0]} holds {len(members):,} profiles: "
            f"{'exactly the valid unique emails' if list_ok else 'NOT the expected emails'}"
        )
        print("counts match the sample" if actual == expected else f"MISMATCH: expected {expected}")
        print(f"the segment and the worker's log are in {workdir}")
    return 0 if ok else 1
