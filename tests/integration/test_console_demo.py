"""`make console` (``klaviyo-export demo --serve``): the console and the API on the
demo's embedded default, usable with what it prints, and gone after Ctrl-C.

The command runs as a user runs it, whatever the environment points at: the
test signs in with the printed passwords, opens the dashboard, reads the
exports with the printed token, starts a run with the printed ``curl`` line
and follows it to its end. After SIGINT the command exits 0 and leaves no
process, no Redis and no work folder behind, and the user's own Redis as it was.
"""

from __future__ import annotations

import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import requests

from bench.procstat import descendants
from demo.sample import write_sample
from tests.support.services import free_port

PROFILES = 2000
START_TIMEOUT_S = 120.0
LAST_LINE = "Ctrl-C stops the server and every service it started"


@dataclass
class Printed:
    """What the command printed before it served."""

    lines: list[str]

    def find(self, pattern: str) -> str:
        for line in self.lines:
            match = re.search(pattern, line)
            if match:
                return match.group(1)
        pytest.fail(f"no line matches {pattern!r} in:\n" + "\n".join(self.lines))

    def password(self, user: str) -> str:
        return self.find(rf"sign in as {user} \(\w+\), password (\S+)")

    @property
    def url(self) -> str:
        return self.find(r"^console: (http://\S+?)/ ")


@dataclass
class Demo:
    proc: subprocess.Popen[str]
    printed: Printed
    pids: list[int]  # every process it started, seen while it served


def _reader(stream: Iterator[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


@pytest.fixture
def demo(real_redis: redis.Redis, redis_url: str, tmp_path: Path) -> Iterator[Demo]:
    """The command on a free port, with the user's Redis in every variable it
    must ignore; stopped (SIGINT, then SIGKILL of its group) whatever happens."""
    real_redis.set("users-own-key", "1")
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
        "KLAVIYO_EXPORT_STORE_URL": redis_url,
        "TMPDIR": str(tmp_path),  # its work folder and its Redis's land here
    }
    command = [sys.executable, "-m", "frontdoors.cli.main", "demo", "--serve"]
    command += ["--port", str(free_port()), "--profiles", str(PROFILES)]
    proc = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # the test can stop it, and what it left, as one group
    )
    assert proc.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while LAST_LINE not in seen:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"not serving after {START_TIMEOUT_S} s:\n" + "\n".join(seen))
            if line is None:
                pytest.fail(f"exited {proc.wait()} before serving:\n" + "\n".join(seen))
            seen.append(line)
        yield Demo(proc, Printed(seen), pids=descendants(proc.pid))
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _signed_in(base: str, user: str, password: str) -> requests.Session:
    browser = requests.Session()
    answer = browser.post(
        f"{base}/signin", data={"user": user, "password": password, "next": "/"}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    assert answer.url == f"{base}/", "signing in leads to the dashboard"
    assert "kx_session" in browser.cookies
    return browser


def _run_with_the_printed_curl(demo: Demo) -> str:
    """The printed line, run as printed (by curl when there is one)."""
    line = demo.printed.find(r"^\s+(curl -sS -X POST .*)$")
    words = shlex.split(line)
    if shutil.which("curl"):
        done = subprocess.run(words, capture_output=True, text=True, timeout=60, check=True)
        body = done.stdout
    else:
        auth = words[words.index("-H") + 1].split(": ", 1)
        answer = requests.post(words[-1], headers=dict([auth]), timeout=60)
        assert answer.status_code == 202, answer.text
        body = answer.text
    run_id = re.search(r'"run_id":\s*"(r_\w+)"', body)
    assert run_id, body
    return run_id.group(1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1] != "Z"


def test_the_console_demo_serves_what_it_prints_and_leaves_nothing(
    demo: Demo, real_redis: redis.Redis, tmp_path: Path
) -> None:
    base = demo.printed.url
    export_id = demo.printed.find(r"start a run of export (e_\w+):")
    token = demo.printed.find(r"^API token \(admin\): (kxt_\S+)$")
    demo_redis = demo.printed.find(r"redis: its own, at (redis://\S+?) ")
    workdir = Path(demo.printed.find(r"segment (/\S+) \(")).parent
    assert workdir.is_dir()
    assert len(demo.pids) >= 3, "redis, a worker and beat, at least"

    admin = _signed_in(base, "admin", demo.printed.password("admin"))
    dashboard = admin.get(f"{base}/", timeout=30)
    assert dashboard.status_code == 200
    assert "Demo account" in dashboard.text
    assert f"/exports/{export_id}" in dashboard.text
    contributor = _signed_in(base, "contributor", demo.printed.password("contributor"))
    assert "Demo account" in contributor.get(f"{base}/", timeout=30).text, "allowed to them"

    bearer = {"Authorization": f"Bearer {token}"}
    exports = requests.get(f"{base}/api/v1/exports", headers=bearer, timeout=30)
    assert exports.status_code == 200, exports.text
    assert export_id in exports.text
    assert requests.get(f"{base}/api/v1/exports", timeout=30).status_code == 401

    run_id = _run_with_the_printed_curl(demo)
    deadline = time.monotonic() + 120
    while True:
        run = requests.get(f"{base}/api/v1/runs/{run_id}", headers=bearer, timeout=30).json()
        if run["finished_at"] is not None or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    expected = write_sample(tmp_path / "same.csv", PROFILES, keep_emails=False).expected_counts()
    assert run["status"] == "partially_succeeded", run  # the sample has rows Klaviyo fails
    assert {name: run["counts"][name] for name in expected} == expected

    demo.proc.send_signal(signal.SIGINT)
    assert demo.proc.wait(timeout=90) == 0
    assert [pid for pid in demo.pids if _alive(pid)] == [], "a process outlived the demo"
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(demo_redis, socket_connect_timeout=2).ping()
    assert not workdir.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name != "same.csv"] == []
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base}/healthz", timeout=5)
    assert [k.decode() for k in real_redis.keys("*")] == ["users-own-key"]
