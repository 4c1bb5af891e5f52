"""A user never sees a traceback: each failure of the command is one line on
stderr and a documented exit code; the global flags work anywhere on the line.

The command runs as a subprocess, as a user runs it, against a real Redis.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import redis
import requests

from core.context import Context
from core.settings import Settings
from demo.services import free_port

COMMAND = [sys.executable, "-m", "frontdoors.cli.main"]


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _one_line(stderr: str) -> str:
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def test_an_unreachable_redis_is_one_line_without_its_password() -> None:
    url = f"redis://:hunter2-secret@127.0.0.1:{free_port()}/0"

    proc = _cli("runs", REDIS_URL=url)

    assert proc.returncode == 5
    line = _one_line(proc.stderr)
    assert line.startswith("klaviyo-export: error: cannot reach Redis at redis://127.0.0.1:")
    assert "hunter2" not in proc.stderr + proc.stdout


def test_a_malformed_setting_names_the_variable_and_the_range(redis_url: str) -> None:
    for value, problem in (("abc", "is not a whole number"), ("20000", "is out of range")):
        proc = _cli("runs", REDIS_URL=redis_url, KLAVIYO_EXPORT_BATCH_PROFILES=value)
        assert proc.returncode == 2
        line = _one_line(proc.stderr)
        assert f"KLAVIYO_EXPORT_BATCH_PROFILES='{value}' {problem}: allowed 1 to 10000" in line


def test_a_closed_output_pipe_ends_quietly(real_redis: redis.Redis, redis_url: str) -> None:
    lifecycle = Context.build(Settings.from_env({}), real_redis).lifecycle
    for _ in range(3000):
        lifecycle.create("e_many", "s.csv", "ann", "c_1", "L1")
    reader = subprocess.Popen(
        [*COMMAND, "--as", "ann:admin", "runs", "--limit", "3000"],  # a contributor sees none
        env={**os.environ, "REDIS_URL": redis_url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert reader.stdout is not None
    assert reader.stderr is not None
    reader.stdout.readline()
    reader.stdout.close()  # `| head -1`
    code = reader.wait(timeout=60)
    stderr = reader.stderr.read().decode()
    assert (code, stderr) == (141, "")


def test_global_flags_work_before_and_after_the_subcommand(
    real_redis: redis.Redis, redis_url: str
) -> None:
    for args in (("--json", "runs"), ("runs", "--json"), ("--as", "ann:admin", "runs", "--json")):
        proc = _cli(*args, REDIS_URL=redis_url)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout) == {"runs": []}
    refused = _cli("runs", "--as", "nobody", REDIS_URL=redis_url)
    assert refused.returncode == 2
    assert "--as takes USER:ROLE" in _one_line(refused.stderr)


def test_timeout_goes_with_a_wait(redis_url: str) -> None:
    proc = _cli("status", "r_x", "--timeout", "5", REDIS_URL=redis_url)
    assert proc.returncode == 2
    assert "--timeout goes with --watch" in _one_line(proc.stderr)


def test_the_sandbox_logs_each_request_at_debug() -> None:
    port = free_port()
    server = subprocess.Popen(
        [*COMMAND, "sandbox", "--port", str(port), "--api-key", "pk_" + "a" * 34,
         "--log-level", "DEBUG"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/_sandbox/health", timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "the sandbox did not start"
                time.sleep(0.1)
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=20)
    assert "GET /_sandbox/health 200" in stderr


def test_a_bad_log_level_and_a_usage_error_are_one_line_and_json(redis_url: str) -> None:
    proc = _cli("runs", "--json", REDIS_URL=redis_url, KLAVIYO_EXPORT_LOG_LEVEL="loud")
    assert proc.returncode == 2
    assert "KLAVIYO_EXPORT_LOG_LEVEL='loud' is not a log level" in _one_line(proc.stderr)
    assert json.loads(proc.stdout)["error"]["type"] == "configuration"
    usage = _cli("status", "r_x", "--watch", "--timeout", "-1", "--json", REDIS_URL=redis_url)
    assert usage.returncode == 2
    assert json.loads(usage.stdout)["error"]["type"] == "usage"
