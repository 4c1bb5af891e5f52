"""The services of docker-compose.yml, run for real without Docker.

Each test takes a service's command and healthcheck from the compose file,
changes only what a container changes (Redis is a private redis-server on a
free loopback port instead of ``redis``, a secret's file is a temporary file
instead of ``/run/secrets/...``, ``$HOSTNAME`` is this machine's host name,
ports are free loopback ports) and runs them: Redis caps its memory and
refuses writes rather than evict; worker and beat pass their healthchecks
while they run and fail them once stopped; the API server passes its
healthcheck, refuses a call without a token and answers one with a token
issued on the same Redis; Flower reads its password from the secret's file
and shows it on no command line; the listener consumes ``kx.requests``; the
demo exports its sample to the sandbox.

Klaviyo itself is never called: a base URL of ``https://a.klaviyo.com`` is
replaced by a refused loopback address.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import redis
import requests

from core.secrets import generate_key
from demo.services import redis_binary
from klaviyo_client.constants import DEFAULT_BASE_URL
from producer.publish import publish
from schemas import tasks
from tests.support import compose
from tests.support.services import free_port, missing_service, redis_server

COMPOSE = compose.load()
SERVICES = compose.services(COMPOSE)
NOWHERE = "http://127.0.0.1:9"  # stands in for Klaviyo: refused, and on loopback
VENV_BIN = str(Path(sys.executable).parent)
_SCRUBBED = ("FLOWER_", "KLAVIYO_", "CELERY_", "REDIS_")


def host_env() -> dict[str, str]:
    """This machine's environment, with the virtual environment's programs first
    (the image has them on its PATH)."""
    return {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


@pytest.fixture(scope="module")
def broker() -> Iterator[str]:
    """A private redis-server: these tests run workers that consume every queue."""
    with redis_server() as url:
        yield url


def stand_in(secret: str) -> str:
    return generate_key() if "key" in secret else f"admin:{secrets.token_hex(16)}"


def local_env(name: str, redis_url: str, tmp: Path) -> tuple[dict[str, str], dict[str, str]]:
    """The service's environment as its container has it, on this machine;
    also returns each granted secret's stand-in value."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED)}
    service_env = compose.environment(SERVICES[name])
    files = compose.secret_files(SERVICES[name])
    values = {}
    for variable, value in list(service_env.items()):
        if value in files:
            secret = files[value]
            values[secret] = stand_in(secret)
            local = tmp / f"{name}-{secret}"
            local.write_text(values[secret] + "\n", encoding="utf-8")
            local.chmod(0o400)
            service_env[variable] = str(local)
    service_env["REDIS_URL"] = redis_url
    if service_env.get("KLAVIYO_BASE_URL") == DEFAULT_BASE_URL:
        service_env["KLAVIYO_BASE_URL"] = NOWHERE
    env |= service_env
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["HOSTNAME"] = socket.gethostname()  # what Docker sets: the container's host name
    return env, values


@contextmanager
def running(
    words: list[str], env: dict[str, str], log: Path, cwd: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``words`` in its own process group; SIGTERM it (then SIGKILL) at the end."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            words, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def healthcheck(name: str, env: dict[str, str], replace: dict[str, str] | None = None) -> list[str]:
    """The service's healthcheck as the container runs it (``CMD`` or ``sh -c``)."""
    kind, *rest = (str(w) for w in SERVICES[name]["healthcheck"]["test"])
    words = [compose.interpolate(w) for w in rest]
    for old, new in (replace or {}).items():
        words = [w.replace(old, new) for w in words]
    return ["sh", "-c", words[0]] if kind == "CMD-SHELL" else words


def check(words: list[str], env: dict[str, str]) -> int:
    return subprocess.run(words, env=env, capture_output=True, timeout=120).returncode


def wait_until(
    done: Callable[[], bool], what: str, procs: list[subprocess.Popen[bytes]], logs: list[Path]
) -> None:
    """Wait for ``done`` while every process runs; fail naming ``what`` otherwise."""
    deadline = time.monotonic() + 180
    while not done():
        for proc, log in zip(procs, logs, strict=True):
            if proc.poll() is not None:
                pytest.fail(f"{what}: {proc.args!r} exited {proc.returncode}:\n{log.read_text()}")
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}:\n" + "\n".join(p.read_text() for p in logs))
        time.sleep(0.5)


def command_of(name: str) -> list[str]:
    """The service's ``command``, interpolated, as one word list (``sh -c`` kept whole)."""
    command = SERVICES[name]["command"]
    assert isinstance(command, list)
    return [compose.interpolate(str(w)) for w in command]


def swap(words: list[str], old: str, new: str) -> list[str]:
    assert any(old in w for w in words), f"{old!r} is not in {words!r}"
    return [w.replace(old, new) for w in words]


# -- Redis -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cap", "expected"), [(None, 1024**3), ("4mb", 4 * 1024**2)], ids=["default", "override"]
)
def test_redis_caps_its_memory_and_refuses_writes_rather_than_evict(
    cap: str | None, expected: int, tmp_path: Path
) -> None:
    binary = redis_binary()
    if binary is None:
        missing_service("no redis-server binary")
    (args,) = compose.commands(SERVICES["redis"], env={"REDIS_MAXMEMORY": cap} if cap else None)
    port = free_port()
    local = ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path), "--save", ""]
    log = tmp_path / "redis.log"
    with running([str(binary), *args[1:], *local], host_env(), log) as proc:
        client = redis.Redis(port=port)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        wait_until(answers, "redis-server", [proc], [log])
        assert int(str(client.config_get("maxmemory")["maxmemory"])) == expected
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        assert client.config_get("appendonly")["appendonly"] == "yes"
        program, *ping = healthcheck("redis", {})
        if shutil.which(program) is None:
            missing_service(f"no {program} binary")
        assert check([program, "-p", str(port), *ping], host_env()) == 0
        if cap is None:
            return
        written: list[str] = []
        with pytest.raises(redis.ResponseError, match="maxmemory"):
            fill(client, written)
        assert client.dbsize() == len(written), "a key was evicted"
        client.close()


def fill(client: redis.Redis, written: list[str]) -> None:
    """Write 64 KiB values, noting each key Redis took, until it refuses one."""
    for n in range(10_000):
        client.set(f"batch:{n}", b"x" * 65536)
        written.append(f"batch:{n}")
    pytest.fail("Redis took 640 MB past a 4 MB cap")


# -- Worker and beat -------------------------------------------------------------------------

READY_MARKERS = (" ready.", "beat pidbox: Connected")  # what worker and beat log when up


def test_worker_and_beat_pass_their_healthchecks_while_they_run_and_fail_them_after(
    broker: str, tmp_path: Path
) -> None:
    envs = {name: local_env(name, broker, tmp_path)[0] for name in ("worker", "beat")}
    checks = {name: healthcheck(name, envs[name]) for name in envs}
    logs = [tmp_path / "worker.log", tmp_path / "beat.log"]
    with ExitStack() as stack:
        procs = [
            stack.enter_context(running(command_of(name), envs[name], log, cwd=tmp_path))
            for name, log in zip(envs, logs, strict=True)
        ]
        # Each failed check costs its whole --timeout: check once the logs say ready.
        for name, log, marker in zip(envs, logs, READY_MARKERS, strict=True):

            def started(log: Path = log, marker: str = marker) -> bool:
                return marker in log.read_text()

            def healthy(name: str = name) -> bool:
                return check(checks[name], envs[name]) == 0

            wait_until(started, f"{name} started", procs, logs)
            wait_until(healthy, f"{name} healthy", procs, logs)
    stopped = {
        name: subprocess.Popen(checks[name], env=envs[name], stdout=subprocess.DEVNULL)
        for name in envs
    }
    for name, proc in stopped.items():
        assert proc.wait(timeout=120) != 0, f"{name}'s healthcheck passes with {name} stopped"


# -- The API ---------------------------------------------------------------------------------


def test_the_api_serves_with_its_secret_file_and_passes_its_healthcheck_while_it_runs(
    broker: str, tmp_path: Path
) -> None:
    env, _ = local_env("api", broker, tmp_path)
    port = free_port()
    words = swap(command_of("api"), "0.0.0.0", "127.0.0.1")
    words[words.index("--port") + 1] = str(port)
    ready = healthcheck("api", env, {":8080/": f":{port}/"})
    log = tmp_path / "api.log"
    add_token = "klaviyo-export --as ops:admin token add --name compose --role contributor --json"
    issued = subprocess.run(
        add_token.split(),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    token = json.loads(issued.stdout.strip().splitlines()[-1])["token"]
    with running(words, env, log) as proc:
        wait_until(lambda: check(ready, env) == 0, "the API healthy", [proc], [log])
        url = f"http://127.0.0.1:{port}/api/v1/exports"
        refused = requests.get(url, timeout=30)
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        answer = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert answer.status_code == 200, answer.text
    assert check(ready, env) != 0, "the healthcheck passes with the server stopped"
    assert token not in log.read_text()


# -- Flower ----------------------------------------------------------------------------------


def _flower(port: int) -> list[str]:
    words = swap(command_of("flower"), "--address=0.0.0.0", "--address=127.0.0.1")
    return swap(words, "--port=5555", f"--port={port}")


def _command_lines() -> Iterator[tuple[int, str]]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                yield int(entry.name), (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue  # gone, or not ours to read


def test_flower_takes_its_password_from_the_secret_file_and_shows_it_on_no_command_line(
    broker: str, tmp_path: Path
) -> None:
    env, values = local_env("flower", broker, tmp_path)
    user, password = values["flower_basic_auth"].split(":", 1)
    port = free_port()
    log = tmp_path / "flower.log"
    ready = healthcheck("flower", env, {":5555/": f":{port}/"})
    with running(_flower(port), env, log) as proc:
        wait_until(lambda: check(ready, env) == 0, "flower healthy", [proc], [log])
        url = f"http://127.0.0.1:{port}/api/workers"
        assert requests.get(url, timeout=30).status_code == 401
        assert requests.get(url, auth=(user, "wrong"), timeout=30).status_code == 401
        assert requests.get(url, auth=(user, password), timeout=30).status_code == 200
        shown = [pid for pid, line in _command_lines() if password in line]
        assert shown == [], "the password is on a command line"
        assert "flower" in (Path("/proc") / str(proc.pid) / "cmdline").read_text()
    assert password not in log.read_text()


def test_flower_refuses_an_empty_password_file(broker: str, tmp_path: Path) -> None:
    env, _ = local_env("flower", broker, tmp_path)
    Path(env["FLOWER_BASIC_AUTH_FILE"]).chmod(0o600)
    Path(env["FLOWER_BASIC_AUTH_FILE"]).write_text("\n", encoding="utf-8")
    proc = subprocess.run(_flower(free_port()), env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 64
    (line,) = proc.stderr.strip().splitlines()
    assert env["FLOWER_BASIC_AUTH_FILE"] in line
    assert "Traceback" not in line


# -- The listener ----------------------------------------------------------------------------


def test_the_listen_service_consumes_the_requests_queue(broker: str, tmp_path: Path) -> None:
    env, _ = local_env("listen", broker, tmp_path)
    log = tmp_path / "listen.log"
    with running(command_of("listen"), env, log) as proc:
        wait_until(lambda: "listening on" in log.read_text(), "the listener", [proc], [log])
        assert f"listening on {tasks.REQUESTS_QUEUE} as requests (admin)" in log.read_text()
        publish({"export_id": "e_0000000000", "requested_by": "compose"}, broker_url=broker)
        # The refusal is the listener's to say: the request was taken and judged.
        wait_until(lambda: "unknown_export" in log.read_text(), "the request", [proc], [log])
    assert redis.Redis.from_url(broker).llen(tasks.REQUESTS_QUEUE) == 0


# -- The demo --------------------------------------------------------------------------------


def test_the_demo_exports_its_sample_to_the_sandbox(broker: str, tmp_path: Path) -> None:
    """sandbox, worker and demo-export as the demo profile runs them; the
    worker's own KLAVIYO_BASE_URL leads nowhere, so the run reaches the
    sandbox only through the URL its connection recorded."""
    port = free_port()
    sandbox = swap(command_of("sandbox"), "0.0.0.0", "127.0.0.1")
    sandbox[sandbox.index("--port") + 1] = str(port)
    worker_env, _ = local_env("worker", broker, tmp_path)
    demo_env, _ = local_env("demo-export", broker, tmp_path)
    demo_env["KLAVIYO_BASE_URL"] = f"http://127.0.0.1:{port}"
    # Share the worker's secret key, as the one Compose secret does.
    demo_env["KLAVIYO_EXPORT_SECRET_KEY_FILE"] = worker_env["KLAVIYO_EXPORT_SECRET_KEY_FILE"]
    demo = swap(command_of("demo-export"), "/tmp/segment.csv", str(tmp_path / "segment.csv"))
    logs = [tmp_path / "sandbox.log", tmp_path / "worker.log"]
    with (
        running(sandbox, host_env(), logs[0]) as sandbox_proc,
        running(command_of("worker"), worker_env, logs[1], cwd=tmp_path) as worker_proc,
    ):
        procs = [sandbox_proc, worker_proc]
        ready = healthcheck("sandbox", {}, {":8025/": f":{port}/"})
        wait_until(lambda: check(ready, host_env()) == 0, "the sandbox", procs, logs)
        worker_ready = healthcheck("worker", worker_env)
        wait_until(lambda: check(worker_ready, worker_env) == 0, "the worker", procs, logs)
        run = subprocess.run(demo, env=demo_env, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, f"{run.stdout}\n{run.stderr}"
        answer = requests.get(f"http://127.0.0.1:{port}/_sandbox/lists/DeMo01", timeout=30)
        assert answer.json()["emails"], "the sandbox's list is still empty"
