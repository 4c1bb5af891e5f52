"""docker-compose.yml read as Compose reads it, for tests that run without Docker.

Interpolation follows Compose's rules (``${VAR:-default}``, ``${VAR:?error}``,
``$$`` for a literal ``$``); a service's ``command`` and ``healthcheck`` are
split into the programs they run, shell scripts included, so that tests can
parse each one with the real ``klaviyo-export`` parser or run it for real.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
APP_IMAGE = "klaviyo-export:local"  # the Dockerfile's app stage: the product
DEMO_IMAGE = "klaviyo-export:demo"  # its demo stage: the app, the sandbox and the demo
SECRETS_DIR = "/run/secrets/"
PLACEHOLDER = "placeholder"

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR:+alt}, $VAR, and $$.
INTERPOLATION = re.compile(
    r"\$\$|\$\{(?P<name>\w+)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}|\$(?P<bare>\w+)"
)
_SHELL_OPERATORS = "();<>|&\n"
_SHELL_FUNCTION = re.compile(r"(?m)^\s*(\w+)\s*\(\)\s*\{")


def load(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path} is not a mapping"
    return data


def interpolate(text: str, env: Mapping[str, str] | None = None) -> str:
    """What Compose makes of ``text`` with ``env`` set (default: nothing set):
    defaults apply to unset variables, required ones get a placeholder, ``$$``
    is a literal ``$``."""
    env = env or {}

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("name") or match.group("bare")
        op, arg = match.group("op"), match.group("arg")
        value = env.get(name)
        if op and op.startswith(":") and not value:
            value = None  # the colon forms treat an empty variable as unset
        if op in {":+", "+"}:
            return arg if value is not None else ""
        if value is not None:
            return value
        if op in {":-", "-"}:
            return str(arg)
        return PLACEHOLDER

    return INTERPOLATION.sub(substitute, text)


def only_interpolation(value: str) -> re.Match[str] | None:
    """The match if ``value`` is nothing but one ``${...}``."""
    match = INTERPOLATION.fullmatch(value.strip())
    return match if match and match.group(0) != "$$" else None


def services(compose: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(compose["services"])


def environment(
    service: Mapping[str, Any], raw: bool = False, env: Mapping[str, str] | None = None
) -> dict[str, str]:
    """A service's environment (map or KEY=VALUE list), interpolated unless raw."""
    variables = service.get("environment") or {}
    if isinstance(variables, list):
        variables = dict(item.partition("=")[::2] for item in variables)
    return {k: str(v) if raw else interpolate(str(v), env) for k, v in variables.items()}


def shell_commands(script: str) -> Iterator[list[str]]:
    """Split a shell script into its simple commands (a word list each).

    Leading ``VAR=value`` assignments and ``exec`` are dropped, a redirection's
    target is no command, and ``$(...)`` runs its own command.
    """
    lexer = shlex.shlex(script, posix=True, punctuation_chars=_SHELL_OPERATORS)
    lexer.whitespace = " \t\r"
    lexer.whitespace_split = True
    words: list[str] = []
    redirect = False
    for token in lexer:
        if redirect:
            redirect = False
        elif set(token) <= set(_SHELL_OPERATORS) and set(token) & set("<>"):
            redirect = True  # `>&2`, `< file`: the next word is its target
        elif set(token) <= set(_SHELL_OPERATORS) or token in {"{", "}"}:
            if words:
                yield words
            words = []
        elif words or not (re.fullmatch(r"\w+=.*", token) or token == "exec"):
            words.append(token)
    if words:
        yield words


def shell_functions(script: str) -> set[str]:
    """The names of the functions ``script`` defines (``name() { ...; }``)."""
    return set(_SHELL_FUNCTION.findall(script))


def scripts(service: Mapping[str, Any], env: Mapping[str, str] | None = None) -> list[str]:
    """The shell scripts the service runs: ``sh -c`` commands and CMD-SHELL checks."""
    found = []
    command = service.get("command")
    if command is not None:
        words = shlex.split(command) if isinstance(command, str) else [str(w) for w in command]
        if _is_shell(words):
            found.append(interpolate(words[2], env))
    test = (service.get("healthcheck") or {}).get("test")
    if isinstance(test, str):
        found.append(interpolate(test, env))
    elif isinstance(test, list) and test and test[0] == "CMD-SHELL":
        found.append(interpolate(str(test[1]), env))
    return found


def _is_shell(words: list[str]) -> bool:
    return (
        words[0] in {"sh", "bash"} and len(words) > 2 and bool(re.fullmatch(r"-\w*c\w*", words[1]))
    )


def commands(
    service: Mapping[str, Any], raw: bool = False, env: Mapping[str, str] | None = None
) -> list[list[str]]:
    """The programs a service's ``command`` runs, each with its arguments;
    interpolated as Compose would, unless ``raw``."""
    command = service.get("command")
    if command is None:
        return []
    words = shlex.split(command) if isinstance(command, str) else [str(w) for w in command]
    if not raw:
        words = [interpolate(w, env) for w in words]
    if _is_shell(words):
        return list(shell_commands(words[2]))
    return [words]


def healthcheck_commands(
    service: Mapping[str, Any], env: Mapping[str, str] | None = None
) -> list[list[str]]:
    """The programs a service's healthcheck runs (``CMD`` words or a shell script)."""
    test = (service.get("healthcheck") or {}).get("test")
    if test is None:
        return []
    if isinstance(test, str):
        return list(shell_commands(interpolate(test, env)))
    kind, *rest = (str(word) for word in test)
    if kind == "CMD":
        return [[interpolate(word, env) for word in rest]]
    if kind == "CMD-SHELL":
        return list(shell_commands(interpolate(rest[0], env)))
    assert kind == "NONE", f"unknown healthcheck form {kind}"
    return []


def option(args: list[str], *names: str) -> str | None:
    """The value of ``--name value`` or ``--name=value`` in ``args``."""
    for i, word in enumerate(args):
        flag, eq, value = word.partition("=")
        if flag in names:
            return value if eq else args[i + 1]
    return None


def secret_files(service: Mapping[str, Any]) -> dict[str, str]:
    """Where each secret granted to the service appears: target path -> secret name."""
    files = {}
    for grant in service.get("secrets") or []:
        source = grant if isinstance(grant, str) else grant["source"]
        target = source if isinstance(grant, str) else grant.get("target", source)
        files[target if target.startswith("/") else SECRETS_DIR + target] = source
    return files


@dataclass
class Stage:
    """One ``FROM ... AS name`` stage of the Dockerfile."""

    name: str
    base: str
    copied: list[str] = field(default_factory=list)  # COPY sources, as written
    runs: list[str] = field(default_factory=list)  # RUN commands, continuations joined
    users: list[str] = field(default_factory=list)  # USER values, in order


def dockerfile_stages(text: str | None = None) -> dict[str, Stage]:
    """The Dockerfile's stages by name (an unnamed stage is named by its number)."""
    text = DOCKERFILE.read_text(encoding="utf-8") if text is None else text
    joined = re.sub(r"\\\n", " ", text)
    stages: dict[str, Stage] = {}
    stage: Stage | None = None
    for line in joined.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        instruction, args = words[0].upper(), words[1:]
        if instruction == "FROM":
            name = args[2] if len(args) > 2 and args[1].upper() == "AS" else str(len(stages))
            stage = stages[name] = Stage(name, args[0])
            continue
        assert stage is not None, f"{instruction} before FROM in the Dockerfile"
        if instruction == "COPY":
            stage.copied += [w for w in args[:-1] if not w.startswith("--")]
        elif instruction == "RUN":
            stage.runs.append(" ".join(args))
        elif instruction == "USER":
            stage.users.append(args[0])
    return stages


def image_user() -> tuple[int, int]:
    """The uid and gid the Dockerfile's image runs as (``USER uid:gid``)."""
    users = re.findall(r"^USER\s+(\d+):(\d+)\s*$", DOCKERFILE.read_text(), re.MULTILINE)
    assert users, "the Dockerfile must name its user as USER uid:gid"
    uid, gid = users[-1]
    return int(uid), int(gid)
