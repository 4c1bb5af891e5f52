"""``token`` and ``user``: who may call the HTTP API and sign in to the console.

A token's secret is printed once, by ``token add``, alone on stdout so that
``TOKEN=$(klaviyo-export token add ...)`` keeps it; nothing can show it again.
Passwords are read from standard input (one line), never from the command line,
where they would land in shell history and in ``ps``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from core import credentials
from core.actors import PERSON_ROLES, ROLES
from core.context import Context
from core.errors import InvalidInput
from frontdoors.cli.config import SubParsers, _leaf, _show
from frontdoors.cli.output import emit_json, emit_table


def register(sub: SubParsers) -> None:
    _register_tokens(sub)
    _register_users(sub)


def _register_tokens(sub: SubParsers) -> None:
    token = sub.add_parser("token", help="API tokens for the HTTP API (admins)")
    actions = token.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = _leaf(
        actions,
        "add",
        "issue a token; its secret is printed once, and only its hash is kept",
        _token_add,
        None,
    )
    add.add_argument("--name", required=True, help="what the token is for (e.g. airflow-prod)")
    add.add_argument(
        "--role",
        required=True,
        choices=ROLES,
        help="admin or contributor: a person's rights; trigger: an upstream system that "
        "may only start runs and read them",
    )
    add.add_argument("--user", help="the user it acts as, in the audit log (default: the name)")
    _leaf(actions, "list", "list tokens (never their secrets)", _token_list, None)
    _leaf(actions, "revoke", "revoke a token: it is refused at once", _token_revoke, "token_id")


def _register_users(sub: SubParsers) -> None:
    user = sub.add_parser("user", help="console users and their passwords (admins)")
    actions = user.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = _leaf(
        actions,
        "add",
        "add a console user (or replace an existing one's password and role)",
        _user_add,
        None,
    )
    add.add_argument("name", metavar="NAME", help="1 to 64 letters, digits or ._@-")
    add.add_argument("--role", required=True, choices=PERSON_ROLES)
    _password_source(add)
    password = _leaf(
        actions,
        "password",
        "replace a user's password; their console sessions end",
        _user_password,
        None,
    )
    password.add_argument("name", metavar="NAME")
    _password_source(password)
    _leaf(actions, "list", "list console users", _user_list, None)
    remove = _leaf(
        actions, "remove", "remove a console user; their sessions end", _user_remove, None
    )
    remove.add_argument("name", metavar="NAME")


def _password_source(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        required=True,
        help="read the password (at least 12 characters) from one line of standard input",
    )


@contextmanager
def _as_said_here() -> Iterator[None]:
    """The domain names record fields; here ``name`` is the NAME argument and the
    password comes from ``--password-stdin``."""
    try:
        yield
    except InvalidInput as exc:
        label = {"name": "NAME", "password": "--password-stdin"}.get(exc.field or "")
        if label is None:
            raise
        raise InvalidInput(f"{label}: {exc.problem}") from None


def _read_password() -> str:
    line = sys.stdin.readline().rstrip("\n").rstrip("\r")
    if not line:
        raise InvalidInput("--password-stdin: no password on standard input")
    return line


def _when(value: float | None) -> str | None:
    return None if value is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))


def _token_add(args: argparse.Namespace) -> int:
    client = Context.from_env().redis
    token, secret = credentials.issue_token(
        client, args.actor, name=args.name, role=args.role, user=args.user
    )
    if args.json:
        emit_json({**token.public(), "token": secret})
        return 0
    print(secret)
    print(
        f"token {token.id} ({token.name}) added: acts as {token.user} ({token.role}); "
        "the secret above is shown only this once",
        file=sys.stderr,
    )
    return 0


def _token_list(args: argparse.Namespace) -> int:
    rows = [t.public() for t in credentials.list_tokens(Context.from_env().redis, args.actor)]
    if args.json:
        emit_json({"tokens": rows})
        return 0
    table = [
        {**row, "created_at": _when(row["created_at"]), "last_used_at": _when(row["last_used_at"])}
        for row in rows
    ]
    emit_table(table, ["id", "name", "user", "role", "created_by", "created_at", "last_used_at"])
    return 0


def _token_revoke(args: argparse.Namespace) -> int:
    token = credentials.revoke_token(Context.from_env().redis, args.actor, args.token_id)
    return _show(
        args,
        {**token.public(), "revoked": True},
        f"token {token.id} ({token.name}) revoked",
    )


def _user_add(args: argparse.Namespace) -> int:
    with _as_said_here():
        user = credentials.set_password(
            Context.from_env().redis, args.actor, args.name, _read_password(), args.role
        )
    return _show(args, user.public(), f"console user {user.name} ({user.role}) saved")


def _user_password(args: argparse.Namespace) -> int:
    with _as_said_here():
        user = credentials.set_password(
            Context.from_env().redis, args.actor, args.name, _read_password()
        )
    return _show(args, user.public(), f"console user {user.name}: password replaced")


def _user_list(args: argparse.Namespace) -> int:
    users = credentials.list_users(Context.from_env().redis, args.actor)
    rows: list[dict[str, Any]] = [u.public() for u in users]
    if args.json:
        emit_json({"users": rows})
        return 0
    table = [
        {
            **row,
            "created_at": _when(row["created_at"]),
            "password_set": _when(row["password_set_at"]),
        }
        for row in rows
    ]
    emit_table(table, ["name", "role", "created_by", "created_at", "password_set"])
    return 0


def _user_remove(args: argparse.Namespace) -> int:
    user = credentials.remove_user(Context.from_env().redis, args.actor, args.name)
    return _show(args, {**user.public(), "removed": True}, f"console user {user.name} removed")
