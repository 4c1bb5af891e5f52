"""``connection`` and ``export``: set up where segments go.

API keys are never taken on the command line (they would land in shell
history and in ``ps``): ``--api-key-env VAR`` names an environment variable,
``--api-key-stdin`` reads one line from standard input.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import Any

from klaviyo_client import KlaviyoClient, NotFoundError
from klaviyo_client.retry import with_retries
from klaviyo_export.commands.output import add_json_flag, emit_json, emit_table
from klaviyo_export.context import Context
from klaviyo_export.errors import InvalidInput
from klaviyo_export.secrets import generate_key


def current_user() -> str:
    return os.environ.get("KLAVIYO_EXPORT_USER") or getpass.getuser()


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    key = sub.add_parser("secret-key", help="print a new KLAVIYO_EXPORT_SECRET_KEY")
    key.set_defaults(_run=lambda args: print(generate_key()) or 0)

    conn = sub.add_parser("connection", help="Klaviyo accounts (API keys) exports can use")
    conn_sub = conn.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = conn_sub.add_parser("add", help="add a connection; the key is checked against Klaviyo")
    add.add_argument("--name", required=True, help="display name")
    source = add.add_mutually_exclusive_group(required=True)
    source.add_argument("--api-key-env", metavar="VAR", help="read the private API key from $VAR")
    source.add_argument("--api-key-stdin", action="store_true", help="read the key from stdin")
    add.add_argument(
        "--allow",
        choices=("admins", "contributors"),
        default="admins",
        help="who may use it: admins only (default), or admins and contributors",
    )
    add.add_argument(
        "--accept-privacy-terms",
        action="store_true",
        help="accept that exported profiles leave this system for Klaviyo (required to export)",
    )
    add_json_flag(add)
    add.set_defaults(_run=_connection_add)
    for name, helptext, run in (
        ("list", "list connections (never the keys)", _connection_list),
        ("verify", "check a connection's key against Klaviyo again", _connection_verify),
        ("remove", "remove a connection with no exports", _connection_remove),
    ):
        p = conn_sub.add_parser(name, help=helptext)
        if name != "list":
            p.add_argument("connection_id", metavar="ID")
        add_json_flag(p)
        p.set_defaults(_run=run)

    exp = sub.add_parser("export", help="destinations: a connection, a list and the email field")
    exp_sub = exp.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = exp_sub.add_parser("add", help="add an export (saving does not run it)")
    add.add_argument("--name", default="", help="display name (default: the list id)")
    add.add_argument("--connection", required=True, metavar="ID", help="connection id")
    add.add_argument("--list-id", required=True, help="the Klaviyo list id")
    add.add_argument("--email-field", required=True, help="the segment column holding the email")
    add.add_argument(
        "--property",
        action="append",
        default=[],
        metavar="COLUMN[:NAME]",
        help="also send COLUMN, as NAME (a Klaviyo attribute such as first_name, "
        "or a custom property); repeatable",
    )
    add_json_flag(add)
    add.set_defaults(_run=_export_add)
    for name, helptext, run in (
        ("list", "list exports", _export_list),
        ("remove", "remove an export: nothing more of it runs", _export_remove),
    ):
        p = exp_sub.add_parser(name, help=helptext)
        if name == "remove":
            p.add_argument("export_id", metavar="ID")
        add_json_flag(p)
        p.set_defaults(_run=run)


def _read_key(args: argparse.Namespace) -> str:
    if args.api_key_stdin:
        key = sys.stdin.readline().strip()
    else:
        key = os.environ.get(args.api_key_env, "").strip()
        if not key:
            raise InvalidInput(f"environment variable {args.api_key_env} is empty or not set")
    if not key:
        raise InvalidInput("no API key on standard input")
    return key


def _connection_add(args: argparse.Namespace) -> int:
    ctx = Context.from_env()
    api_key = _read_key(args)
    check = with_retries(KlaviyoClient(api_key, ctx.client_settings).verify_key)
    connection = ctx.store.add_connection(
        name=args.name,
        api_key=api_key,
        allow=args.allow,
        created_by=current_user(),
        account_id=check.account_id,
        verified_via=check.via,
        accepted_terms=args.accept_privacy_terms,
    )
    _show(
        args,
        connection.public(),
        f"connection {connection.id} added (key verified via {check.via})",
    )
    if not args.accept_privacy_terms and not args.json:
        print("note: exports cannot use it until the data-privacy terms are accepted")
    return 0


def _connection_list(args: argparse.Namespace) -> int:
    rows = [c.public() for c in Context.from_env().store.list_connections()]
    if args.json:
        emit_json({"connections": rows})
    else:
        emit_table(rows, ["id", "name", "allow", "account_id", "verified_via", "created_by"])
    return 0


def _connection_verify(args: argparse.Namespace) -> int:
    ctx = Context.from_env()
    ctx.store.get_connection(args.connection_id)
    check = with_retries(ctx.klaviyo(args.connection_id).verify_key)
    _show(
        args,
        {"id": args.connection_id, "account_id": check.account_id, "via": check.via},
        f"connection {args.connection_id}: key valid (checked via {check.via})",
    )
    return 0


def _connection_remove(args: argparse.Namespace) -> int:
    Context.from_env().store.remove_connection(args.connection_id)
    _show(
        args,
        {"id": args.connection_id, "removed": True},
        f"connection {args.connection_id} removed",
    )
    return 0


def _parse_properties(values: list[str]) -> dict[str, str]:
    mapping = {}
    for value in values:
        column, _, name = value.partition(":")
        if not column:
            raise InvalidInput(f"--property {value!r}: the column name is empty")
        mapping[column] = name or column
    return mapping


def _export_add(args: argparse.Namespace) -> int:
    ctx = Context.from_env()
    ctx.store.get_connection(args.connection)
    try:
        client = ctx.klaviyo(args.connection)
        found = with_retries(lambda: client.get_list(args.list_id))
    except NotFoundError:
        raise InvalidInput(f"--list-id: Klaviyo has no list {args.list_id}") from None
    export = ctx.store.add_export(
        name=args.name or found.name,
        connection_id=args.connection,
        list_id=args.list_id,
        email_field=args.email_field,
        properties=_parse_properties(args.property),
        created_by=current_user(),
    )
    _show(args, export.public(), f"export {export.id} added: list {found.id} ({found.name})")
    return 0


def _export_list(args: argparse.Namespace) -> int:
    rows = [e.public() for e in Context.from_env().store.list_exports()]
    if args.json:
        emit_json({"exports": rows})
    else:
        emit_table(rows, ["id", "name", "connection_id", "list_id", "email_field", "properties"])
    return 0


def _export_remove(args: argparse.Namespace) -> int:
    Context.from_env().store.remove_export(args.export_id)
    _show(args, {"id": args.export_id, "removed": True}, f"export {args.export_id} removed")
    return 0


def _show(args: argparse.Namespace, value: dict[str, Any], text: str) -> None:
    if args.json:
        emit_json(value)
    else:
        print(text)
