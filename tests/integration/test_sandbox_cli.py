"""``python -m sandbox`` as a real subprocess, and its ``--help``."""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from sandbox.cli import add_arguments, config_from_args, run
from tests.support.services import free_port

ROOT = Path(__file__).resolve().parents[2]
FLAGS = [
    "--host",
    "--port",
    "--api-key",
    "--list",
    "--job-queue-seconds",
    "--job-profiles-per-second",
    "--fail-email",
    "--rate-limit-scale",
    "--fault-rate",
    "--latency-ms",
    "--seed",
    "--log-level",
]


def sandbox_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "sandbox", *args]


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def test_help_documents_every_flag_with_its_default() -> None:
    result = subprocess.run(
        sandbox_command("--help"),
        cwd=ROOT,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for flag in FLAGS:
        assert flag in text, flag
    assert text.count("(default:") >= len(FLAGS) - 1


def test_subprocess_serves_and_stops_on_sigterm() -> None:
    port = free_port()
    secret = "pk_cli0000000000000000000000000000000"
    process = subprocess.Popen(
        sandbox_command(
            "--port", str(port), "--api-key", secret, "--list", "Y6nRLr:Newsletter",
            "--log-level", "DEBUG",
        ),
        cwd=ROOT,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        first_line = process.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+)", first_line)
        assert match, first_line
        base = match.group(1)
        assert base.endswith(f":{port}")
        assert requests.get(f"{base}/_sandbox/health", timeout=5).json() == {"ok": True}
        headers = {"Authorization": f"Klaviyo-API-Key {secret}", "revision": "2026-07-15"}
        answer = requests.get(f"{base}/api/lists/Y6nRLr", headers=headers, timeout=5)
        assert answer.json()["data"]["attributes"]["name"] == "Newsletter"
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=15)
    assert process.returncode == 0
    assert secret not in first_line + stdout + stderr
    assert "GET /api/lists/Y6nRLr 200" in stderr


def parse(*args: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(args))


def test_flags_become_a_config() -> None:
    args = parse(
        "--api-key", "pk_a", "--api-key", "pk_b:lists:read,profiles:write", "--list", "Y6nRLr",
        "--job-queue-seconds", "0.5", "--job-profiles-per-second", "100", "--fail-email", "^x",
        "--rate-limit-scale", "0", "--fault-rate", "0.1", "--latency-ms", "5", "--seed", "3",
    )  # fmt: skip
    config = config_from_args(args)
    assert config.api_keys == {"pk_a": None, "pk_b": frozenset({"lists:read", "profiles:write"})}
    assert config.lists == {"Y6nRLr": "Y6nRLr"}
    assert (config.job_queue_seconds, config.job_profiles_per_second) == (0.5, 100.0)
    assert (config.fail_email, config.rate_limit_scale, config.fault_rate) == ("^x", 0.0, 0.1)
    assert (config.latency_ms, config.seed) == (5.0, 3)


def test_bad_flags_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("--api-key", "pk:nonsense")
    with pytest.raises(SystemExit):
        parse("--list", "Y6nRLr")  # no --api-key
    assert run(parse("--api-key", "pk", "--fault-rate", "3")) == 2
    assert "fault_rate" in capsys.readouterr().err
