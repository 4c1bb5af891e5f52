"""The whole product for end-to-end tests: real Redis, the sandbox over HTTP,
real ``celery worker`` processes, and the ``klaviyo-export`` command run as a
user runs it.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from core.context import Context
from core.secrets import generate_key
from demo.services import celery_beat, celery_workers
from sandbox import SandboxConfig, SandboxServer
from schemas import tasks

LIST_ID = "TeSt01"
OTHER_LIST_ID = "TeSt02"


@dataclass
class Pipeline:
    env: dict[str, str]
    api_key: str
    sandbox: SandboxServer
    workdir: Path
    workers: list[subprocess.Popen[bytes]]

    def cli(
        self, *args: str, stdin: str | None = None, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run ``klaviyo-export ARGS`` as a subprocess, as a user would."""
        proc = subprocess.run(
            [sys.executable, "-m", "frontdoors.cli.main", *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"klaviyo-export {' '.join(args)} exited {proc.returncode}:\n"
                f"{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def cli_json(self, *args: str) -> tuple[int, dict[str, Any]]:
        proc = self.cli(*args, "--json")
        lines = proc.stdout.strip().splitlines()
        assert lines, f"no output; stderr: {proc.stderr}"
        return proc.returncode, json.loads(lines[-1])

    def add_connection(self, api_key: str | None = None) -> str:
        env_name = "KX_TEST_KEY"
        self.env[env_name] = api_key or self.api_key
        _, out = self.cli_json(
            "connection",
            "add",
            "--name",
            "Test",
            "--api-key-env",
            env_name,
            "--accept-privacy-terms",
        )
        return str(out["id"])

    def add_export(self, connection_id: str, list_id: str = LIST_ID, *extra: str) -> str:
        _, out = self.cli_json(
            "export",
            "add",
            "--connection",
            connection_id,
            "--list-id",
            list_id,
            "--email-field",
            "email",
            *extra,
        )
        return str(out["id"])

    def list_emails(self, list_id: str = LIST_ID) -> list[str]:
        answer = requests.get(f"{self.sandbox.base_url}/_sandbox/lists/{list_id}", timeout=30)
        answer.raise_for_status()
        return list(answer.json()["emails"])

    def wait_for(
        self, run_id: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 300
    ) -> dict[str, Any]:
        """Poll the run's status until ``predicate`` holds (or ``timeout`` passes)."""
        runs = Context.from_env(self.env).runs
        deadline = time.monotonic() + timeout
        while True:
            status = runs.get(run_id).to_json()
            if predicate(status) or time.monotonic() > deadline:
                return status
            time.sleep(0.2)

    def stats(self) -> dict[str, Any]:
        answer = requests.get(f"{self.sandbox.base_url}/_sandbox/stats", timeout=30)
        answer.raise_for_status()
        return dict(answer.json())


@contextmanager
def pipeline(
    redis_url: str,
    tmp: Path,
    workers: int = 2,
    concurrency: int = 2,
    env: dict[str, str] | None = None,
    loglevel: str = "info",
    beat: bool = False,
    queues: Sequence[str] = tasks.WORKER_QUEUES,
    **sandbox_options: Any,
) -> Iterator[Pipeline]:
    api_key = "pk_" + secrets.token_hex(17)
    config = SandboxConfig(
        api_keys={api_key: None},
        lists={LIST_ID: "Test list", OTHER_LIST_ID: "Other list"},
        **sandbox_options,
    )
    with SandboxServer(config, port=0) as sandbox:
        full_env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "KLAVIYO_BASE_URL": sandbox.base_url,
            "KLAVIYO_EXPORT_SECRET_KEY": generate_key(),
            "KLAVIYO_EXPORT_USER": "tester",
            "KLAVIYO_EXPORT_ROLE": "admin",
            **(env or {}),
        }
        with (
            celery_workers(
                full_env,
                count=workers,
                concurrency=concurrency,
                log_dir=tmp,
                loglevel=loglevel,
                queues=queues,
            ) as procs,
            celery_beat(full_env, tmp) if beat else nullcontext(),
        ):
            yield Pipeline(
                env=full_env, api_key=api_key, sandbox=sandbox, workdir=tmp, workers=procs
            )
