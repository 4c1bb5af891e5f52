"""docker-compose.yml and the Dockerfile, checked by reading them.

No Docker engine runs here, so these tests hold the compose file to what the
package really has: every ``klaviyo-export`` command parses with the real
parser, every ``celery -A worker`` command is a real Celery sub-command of
the importable app, the settings parse, the services are wired to each other,
the workers scale, Redis persists, and no secret is written in the file.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from cryptography.fernet import Fernet
from flower.options import default_options as flower_options

from klaviyo_export.cli import build_parser
from klaviyo_export.settings import Settings
from schemas import tasks
from worker.config import MAX_TASK_SECONDS

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
APP_IMAGE = "klaviyo-export:local"
SANDBOX_KEY_VAR = "KLAVIYO_SANDBOX_KEY"
PLACEHOLDER = "placeholder"
SERVICES = {"redis", "sandbox", "worker", "beat", "flower", "demo-export"}

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR:+alt}, $VAR, and $$.
_INTERPOLATION = re.compile(
    r"\$\$|\$\{(?P<name>\w+)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}|\$(?P<bare>\w+)"
)
_SHELL_OPERATORS = "();<>|&\n"


def interpolate(text: str) -> str:
    """What Compose makes of ``text`` when no variable is set: defaults are
    used, required variables get a placeholder, ``$$`` is a literal ``$``."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        op = match.group("op")
        if op in {":-", "-"}:
            return match.group("arg")
        if op in {":+", "+"}:
            return ""
        return PLACEHOLDER

    return _INTERPOLATION.sub(substitute, text)


def _load() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


COMPOSE = _load()


def services() -> dict[str, dict[str, Any]]:
    return dict(COMPOSE["services"])


def environment(service: dict[str, Any], raw: bool = False) -> dict[str, str]:
    """A service's environment (map or KEY=VALUE list), interpolated unless raw."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {k: str(v) if raw else interpolate(str(v)) for k, v in env.items()}


def _shell_commands(script: str) -> Iterator[list[str]]:
    """Split a shell script into its simple commands (a word list each)."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=_SHELL_OPERATORS)
    lexer.whitespace = " \t\r"
    lexer.whitespace_split = True
    words: list[str] = []
    for token in lexer:
        if set(token) <= set(_SHELL_OPERATORS) or token in {"{", "}"}:
            if words:
                yield words
            words = []
        elif words or not re.fullmatch(r"\w+=.*", token):  # skip leading VAR=value
            words.append(token)
    if words:
        yield words


def commands(service: dict[str, Any], raw: bool = False) -> list[list[str]]:
    """The programs a service's ``command`` runs, each with its arguments;
    interpolated as Compose would, unless ``raw``."""
    command = service.get("command")
    if command is None:
        return []
    words = shlex.split(command) if isinstance(command, str) else [str(w) for w in command]
    if not raw:
        words = [interpolate(w) for w in words]
    if words[0] in {"sh", "bash"} and len(words) > 2 and re.fullmatch(r"-\w*c\w*", words[1]):
        return list(_shell_commands(words[2]))
    return [words]


def invocations(program: str) -> list[tuple[str, list[str]]]:
    return [
        (name, words[1:])
        for name, service in services().items()
        for words in commands(service)
        if words[0] == program
    ]


def parse_cli(args: list[str]) -> argparse.Namespace:
    try:
        return build_parser().parse_args(args)
    except SystemExit as exc:
        pytest.fail(f"`klaviyo-export {shlex.join(args)}` does not parse (exit {exc.code})")


def option(args: list[str], *names: str) -> str | None:
    """The value of ``--name value`` or ``--name=value`` in ``args``."""
    for i, word in enumerate(args):
        flag, eq, value = word.partition("=")
        if flag in names:
            return value if eq else args[i + 1]
    return None


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration)
    assert parts, f"not a Compose duration: {duration!r}"
    return sum(float(n) * units[u] for n, u in parts)


def test_the_stack_has_every_service() -> None:
    assert set(services()) >= SERVICES


@pytest.mark.parametrize(
    ("service", "args"),
    invocations("klaviyo-export"),
    ids=lambda v: v if isinstance(v, str) else " ".join(w for w in v[:2] if w[0] != "-"),
)
def test_klaviyo_export_commands_parse(service: str, args: list[str]) -> None:
    namespace = parse_cli(args)
    assert callable(namespace._run)


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
    assert demo_env["KLAVIYO_BASE_URL"] == f"http://sandbox:{sandbox.port}"
    depends = services()["demo-export"]["depends_on"]
    assert depends["sandbox"]["condition"] == "service_healthy"
    assert "worker" in depends


@pytest.mark.parametrize(
    ("service", "args"), invocations("celery"), ids=lambda v: v if isinstance(v, str) else v[2]
)
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


def test_workers_beat_and_flower_run_from_the_app() -> None:
    ran = {service: args[2] for service, args in invocations("celery")}
    assert ran == {"worker": "worker", "beat": "beat", "flower": "flower"}


def test_workers_consume_every_queue_tasks_are_routed_to() -> None:
    (args,) = [a for s, a in invocations("celery") if s == "worker"]
    queues = set((option(args, "-Q", "--queues") or "").split(","))
    routed = {route["queue"] for route in tasks.ROUTES.values()}
    assert queues == set(tasks.WORKER_QUEUES) >= routed | {tasks.POLLS_QUEUE}


def test_the_worker_service_scales() -> None:
    worker = services()["worker"]
    assert "container_name" not in worker
    assert "hostname" not in worker, "replicas would share one Celery node name"
    for args in commands(worker):
        assert option(args, "-n", "--hostname") is None
    for port in worker.get("ports", []):
        published = port.get("published") if isinstance(port, dict) else str(port).count(":")
        assert not published, f"a fixed host port stops --scale: {port}"
    assert worker.get("deploy", {}).get("replicas") is None


def test_a_stopping_worker_may_finish_its_running_task() -> None:
    grace = seconds(str(services()["worker"].get("stop_grace_period", "10s")))
    assert grace >= MAX_TASK_SECONDS


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


def test_app_services_take_their_settings_from_the_environment() -> None:
    for name, service in services().items():
        if service.get("image") != APP_IMAGE or name == "sandbox":
            continue
        env = environment(service)
        settings = Settings.from_env(env)
        for url in (settings.broker_url, settings.result_backend, settings.store_url):
            assert urlsplit(url).hostname == "redis", f"{name}: {url}"
        assert urlsplit(env["KLAVIYO_BASE_URL"]).hostname in services()
    for name in ("worker", "demo-export"):
        raw = environment(services()[name], raw=True)["KLAVIYO_EXPORT_SECRET_KEY"]
        assert re.fullmatch(r"\$\{KLAVIYO_EXPORT_SECRET_KEY:\?[^}]+\}", raw), (
            f"{name}: the Fernet key must be required from the environment, without a default"
        )


def test_dependencies_exist_and_healthy_ones_have_healthchecks() -> None:
    for name, service in services().items():
        depends = service.get("depends_on") or {}
        for target in depends:
            assert target in services(), f"{name} depends on unknown {target}"
            if isinstance(depends, dict) and depends[target]["condition"] == "service_healthy":
                assert "healthcheck" in services()[target], f"{target} has no healthcheck"


def test_flower_asks_for_a_password_and_stays_on_loopback() -> None:
    flower = services()["flower"]
    raw = environment(flower, raw=True)
    for variable in raw:
        if variable.startswith("FLOWER_"):
            # Flower ignores FLOWER_* variables that name none of its options.
            assert variable.removeprefix("FLOWER_").lower() in flower_options, variable
    (args,) = [a for s, a in invocations("celery") if s == "flower"]
    assert "FLOWER_BASIC_AUTH" in raw or option(args, "--basic-auth") is not None
    for port in flower.get("ports", []):
        assert str(port).startswith("127.0.0.1:"), "/metrics and /healthcheck need no password"


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


def _only_interpolation(value: str) -> re.Match[str] | None:
    match = _INTERPOLATION.fullmatch(value.strip())
    return match if match and match.group(0) != "$$" else None


def _sandbox_default(match: re.Match[str]) -> bool:
    return match.group("name") == SANDBOX_KEY_VAR


def find_secrets(compose: dict[str, Any]) -> list[str]:
    """What in ``compose`` looks like a secret written into the file."""
    found = []
    for text in _strings(compose):
        literal = _INTERPOLATION.sub("", text)
        defaults = [m for m in _INTERPOLATION.finditer(text) if m.group("op") in {":-", "-"}]
        for what, pattern in _LITERAL_SECRETS.items():
            if pattern.search(literal) or any(pattern.search(m.group("arg")) for m in defaults):
                found.append(f"{what}: {text!r}")
        if "pk_" in literal:
            found.append(f"a Klaviyo key outside ${{{SANDBOX_KEY_VAR}:-...}}: {text!r}")
        for m in defaults:
            arg = m.group("arg")
            if "pk_" in arg and (not _sandbox_default(m) or re.search(r"pk_[0-9a-fA-F]{30,}", arg)):
                found.append(f"a real-looking Klaviyo key as a default: {text!r}")
    for name, service in compose.get("services", {}).items():
        for variable, value in environment(service, raw=True).items():
            if _SECRET_NAME.search(variable):
                match = _only_interpolation(value)
                if not match or (match.group("op") in {":-", "-"} and not _sandbox_default(match)):
                    found.append(f"{name}: {variable} is not taken from the environment")
        for words in commands(service, raw=True):
            for i, word in enumerate(words):
                flag, eq, value = word.partition("=")
                if flag in _SECRET_FLAGS:
                    value = value if eq else words[i + 1]
                    match = _only_interpolation(value)
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


def test_the_image_installs_the_package_with_flower() -> None:
    dockerfile = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim\b", dockerfile, re.MULTILINE)
    installs = re.findall(r"pip install[^\n]*?\.\[([\w,-]+)\]", dockerfile)
    assert any("monitoring" in extras.split(",") for extras in installs), installs
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    monitoring = project["project"]["optional-dependencies"]["monitoring"]
    assert any(requirement.startswith("flower") for requirement in monitoring)


def test_the_image_copies_every_package_the_build_includes() -> None:
    copied = set(re.findall(r"^COPY\s+(.+?)\s+\S+$", DOCKERFILE.read_text(), re.MULTILINE))
    sources = {word for line in copied for word in line.split()}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages | {"pyproject.toml", project["project"]["readme"]} <= sources
    assert not {".", ".env", ".venv"} & sources
