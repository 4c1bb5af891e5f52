"""``token`` and ``user`` through the installed ``klaviyo-export`` command, against
a real redis-server: a secret printed once and kept nowhere, admins only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from core import credentials
from core.actors import Actor
from tests.support.services import missing_service

COMMAND = Path(sys.executable).parent / "klaviyo-export"
ADMIN = ("--as", "ada:admin")
CONTRIBUTOR = ("--as", "carl:contributor")
PASSWORD = "a console password"


@pytest.fixture
def kx(redis_url: str, real_redis: redis.Redis) -> Any:
    """``kx(*args, stdin=None)``: the command on this test's Redis, as a user runs it."""
    if not COMMAND.exists():
        missing_service(f"no {COMMAND}: run the tests from the project's .venv")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KLAVIYO", "CELERY"))}
    env["REDIS_URL"] = redis_url

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(COMMAND), *args],
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )

    return run


def _json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stderr
    value: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return value


def _stored(client: redis.Redis) -> bytes:
    """Every key and value in Redis, run together (a test searches it)."""
    parts: list[Any] = []
    for key in client.scan_iter():
        parts.append(key)
        kind = client.type(key)
        if kind == b"hash":
            for field, value in client.hgetall(key).items():
                parts += [field, value]
        elif kind == b"set":
            parts += list(client.smembers(key))
        elif kind == b"string":
            parts.append(client.get(key) or b"")
        elif kind == b"stream":
            for _, entry in client.xrange(key) or []:
                for field, value in (entry or {}).items():
                    parts += [field, value]
        else:
            raise AssertionError(f"a key of a type this test does not read: {kind!r}")
    return b"\n".join(parts)


def test_a_token_is_printed_once_listed_without_its_secret_and_revoked(
    kx: Any, real_redis: redis.Redis
) -> None:
    added = kx(*ADMIN, "token", "add", "--name", "airflow", "--role", "trigger")
    assert added.returncode == 0, added.stderr
    secret = added.stdout.strip()
    assert added.stdout == secret + "\n"  # alone: TOKEN=$(klaviyo-export token add ...)
    assert secret.startswith("kxt_")
    assert "only this once" in added.stderr
    assert secret not in added.stderr
    actor = credentials.authenticate(real_redis, secret)
    assert actor is not None
    assert (actor.user, actor.role) == ("airflow", "trigger")

    listed = kx(*ADMIN, "token", "list", "--json")
    (token,) = _json(listed)["tokens"]
    assert secret not in listed.stdout
    assert "token" not in token
    assert (token["name"], token["role"], token["created_by"]) == ("airflow", "trigger", "ada")
    assert actor.via == f"token {token['id']}"
    table = kx(*ADMIN, "token", "list")
    assert token["id"] in table.stdout
    assert secret not in table.stdout

    revoked = _json(kx(*ADMIN, "token", "revoke", token["id"], "--json"))
    assert (revoked["id"], revoked["revoked"]) == (token["id"], True)
    assert credentials.authenticate(real_redis, secret) is None
    assert _json(kx(*ADMIN, "token", "list", "--json"))["tokens"] == []
    again = kx(*ADMIN, "token", "revoke", token["id"])
    assert again.returncode == 2
    assert len(again.stderr.strip().splitlines()) == 1


def test_token_add_json_has_the_record_and_the_secret(kx: Any, real_redis: redis.Redis) -> None:
    out = _json(
        kx(
            *ADMIN,
            "token",
            "add",
            "--name",
            "ci",
            "--role",
            "contributor",
            "--user",
            "carl",
            "--json",
        )
    )
    assert out["token"].startswith("kxt_")
    assert (out["user"], out["role"], out["id"][:2]) == ("carl", "contributor", "t_")
    assert credentials.authenticate(real_redis, out["token"]) == Actor(
        "carl", "contributor", via=f"token {out['id']}"
    )
    assert out["token"].encode() not in _stored(real_redis)
    assert out["token"].removeprefix("kxt_").encode() not in _stored(real_redis)


def test_a_contributor_may_not_add_a_token(kx: Any, real_redis: redis.Redis) -> None:
    proc = kx(*CONTRIBUTOR, "token", "add", "--name", "mine", "--role", "admin")
    assert proc.returncode == 2
    assert proc.stdout == ""
    (line,) = proc.stderr.strip().splitlines()
    assert "only admins" in line
    assert real_redis.hlen("kx:tokens") == 0


def test_a_bad_token_name_is_one_line_naming_the_flag(kx: Any) -> None:
    proc = kx(*ADMIN, "token", "add", "--name", "  ", "--role", "admin")
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert "--name:" in line


def test_console_users_get_a_password_from_stdin_only(kx: Any, real_redis: redis.Redis) -> None:
    added = kx(
        *ADMIN, "user", "add", "dora", "--role", "admin", "--password-stdin", stdin=PASSWORD + "\n"
    )
    assert added.returncode == 0, added.stderr
    assert PASSWORD not in added.stdout + added.stderr
    assert credentials.check_password(real_redis, "dora", PASSWORD) == Actor(
        "dora", "admin", via="console"
    )
    (user,) = _json(kx(*ADMIN, "user", "list", "--json"))["users"]
    assert (user["name"], user["role"], user["created_by"]) == ("dora", "admin", "ada")

    short = kx(*ADMIN, "user", "password", "dora", "--password-stdin", stdin="tiny-pw-9z\n")
    assert short.returncode == 2
    (line,) = short.stderr.strip().splitlines()
    assert "--password-stdin:" in line
    assert "tiny-pw-9z" not in line

    changed = kx(*ADMIN, "user", "password", "dora", "--password-stdin", stdin="another password")
    assert changed.returncode == 0, changed.stderr
    assert credentials.check_password(real_redis, "dora", "another password") is not None
    assert credentials.check_password(real_redis, "dora", PASSWORD) is None

    refused = kx(
        *CONTRIBUTOR, "user", "add", "carl", "--role", "admin", "--password-stdin", stdin=PASSWORD
    )
    assert refused.returncode == 2
    assert "only admins" in refused.stderr
    stored = _stored(real_redis)
    assert PASSWORD.encode() not in stored
    assert b"another password" not in stored

    removed = kx(*ADMIN, "user", "remove", "dora")
    assert removed.returncode == 0, removed.stderr
    assert credentials.check_password(real_redis, "dora", "another password") is None
    assert _json(kx(*ADMIN, "user", "list", "--json"))["users"] == []


def test_a_password_is_never_taken_from_the_command_line(kx: Any) -> None:
    proc = kx(*ADMIN, "user", "add", "dora", "--role", "admin", "--password", PASSWORD)
    assert proc.returncode == 2
    empty = kx(*ADMIN, "user", "add", "dora", "--role", "admin", "--password-stdin", stdin="")
    assert empty.returncode == 2
    assert "no password on standard input" in empty.stderr
