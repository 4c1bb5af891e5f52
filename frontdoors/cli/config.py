"""``connection``, ``export``, ``audit`` and ``secret-key``: set up where segments go.

API keys are never taken on the command line (they would land in shell
history and in ``ps``): ``--api-key-env VAR`` names an environment variable,
``--api-key-stdin`` reads one line from standard input.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core import operations, queries
from core.context import Context
from core.errors import InvalidInput
from core.records import ALLOW_VALUES, MODES, ExportSpec
from core.secrets import generate_key
from frontdoors.cli.output import add_json_flag, emit_json, emit_table
from schemas.contracts import SOURCE_FORMATS

if TYPE_CHECKING:
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    SubParsers = argparse._SubParsersAction


def register(sub: SubParsers) -> None:
    key = sub.add_parser("secret-key", help="print a new KLAVIYO_EXPORT_SECRET_KEY")
    key.set_defaults(_run=lambda args: print(generate_key()) or 0)
    _register_connections(sub)
    _register_exports(sub)
    log = sub.add_parser("audit", help="who changed what, and every run, newest first")
    log.add_argument("--limit", type=int, default=50)
    add_json_flag(log)
    log.set_defaults(_run=_audit)


def _key_source(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--api-key-env", metavar="VAR", help="read the private API key from $VAR")
    source.add_argument("--api-key-stdin", action="store_true", help="read the key from stdin")


def _leaf(sub: SubParsers, name: str, helptext: str, run: Any, id_arg: str | None) -> Any:
    parser = sub.add_parser(name, help=helptext, description=helptext)
    if id_arg:
        parser.add_argument(id_arg, metavar="ID")
    add_json_flag(parser)
    parser.set_defaults(_run=run)
    return parser


def _register_connections(sub: SubParsers) -> None:
    conn = sub.add_parser("connection", help="Klaviyo accounts (API keys) exports can use")
    actions = conn.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = _leaf(
        actions,
        "add",
        "add a connection (admins); the key is checked with Klaviyo",
        _connection_add,
        None,
    )
    add.add_argument("--name", required=True, help="display name")
    _key_source(add)
    add.add_argument(
        "--allow",
        choices=ALLOW_VALUES,
        default="admins",
        help="who may use it: admins only (default), or admins and contributors",
    )
    add.add_argument(
        "--accept-privacy-terms",
        action="store_true",
        help="accept that exported profiles leave this system for Klaviyo "
        "(no export can use the connection until someone does)",
    )
    add.add_argument(
        "--base-url",
        metavar="URL",
        help="the Klaviyo to check the key with and send to, recorded with the connection "
        "(default: KLAVIYO_BASE_URL, else https://a.klaviyo.com)",
    )
    add.add_argument(
        "--contract-cap",
        type=int,
        default=0,
        metavar="N",
        help="most profiles one run may send to this account (default 0: none)",
    )
    _leaf(actions, "list", "list connections (never the keys)", _connection_list, None)
    _leaf(
        actions,
        "verify",
        "check a connection's key against Klaviyo again",
        _connection_verify,
        "connection_id",
    )
    _leaf(
        actions,
        "accept-terms",
        "accept the data-privacy terms (admins)",
        _connection_accept_terms,
        "connection_id",
    )
    rotate = _leaf(
        actions,
        "rotate-key",
        "replace the API key; exports keep working (admins)",
        _connection_rotate,
        "connection_id",
    )
    _key_source(rotate)
    _leaf(
        actions,
        "remove",
        "remove a connection and its exports; their runs are cancelled (admins)",
        _connection_remove,
        "connection_id",
    )


def _register_exports(sub: SubParsers) -> None:
    exp = sub.add_parser("export", help="destinations: a connection, a list and the email field")
    actions = exp.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = _leaf(actions, "add", "add an export (saving does not run it)", _export_add, None)
    add.add_argument(
        "--name", default=ExportSpec.default("name"), help="display name (default: the list's name)"
    )
    add.add_argument("--connection", required=True, metavar="ID", help="connection id")
    add.add_argument("--list-id", required=True, help="the Klaviyo list id (checked to exist)")
    add.add_argument("--email-field", required=True, help="the segment column holding the email")
    add.add_argument(
        "--property",
        action="append",
        default=[],
        metavar="COLUMN[:NAME]",
        help="also send COLUMN, as NAME (a Klaviyo attribute such as first_name, "
        "or a custom property); repeatable",
    )
    add.add_argument(
        "--segment",
        metavar="PATH",
        help="where scheduled refreshes read the segment (CSV/JSON Lines, gzip ok)",
    )
    add.add_argument("--format", choices=SOURCE_FORMATS, help="the segment's format")
    add.add_argument(
        "--schedule",
        metavar="CRON",
        help='its own refresh schedule, five cron fields (e.g. "0 */6 * * *")',
    )
    add.add_argument(
        "--max-profiles",
        type=int,
        default=ExportSpec.default("max_profiles"),
        metavar="N",
        help="cap on profiles a run sends (default 0: the system default)",
    )
    add.add_argument("--disabled", action="store_true", help="save it disabled")
    add.add_argument(
        "--mode",
        choices=MODES,
        default=ExportSpec.default("mode"),
        help="add (default): only add and update; mirror: also remove from the list the "
        "members an earlier run exported that left the segment",
    )
    add.add_argument(
        "--brake-share",
        type=float,
        default=ExportSpec.default("brake_share"),
        metavar="SHARE",
        help="mirror: hold removals of more than this share of members for approval (%(default)s)",
    )
    add.add_argument(
        "--brake-count",
        type=int,
        default=ExportSpec.default("brake_count"),
        metavar="N",
        help="mirror: also hold removals of more than N members (default 0: no such limit)",
    )
    _leaf(actions, "list", "list exports", _export_list, None)
    _leaf(actions, "enable", "let the export run again", _export_enable, "export_id")
    _leaf(actions, "disable", "stop scheduled and on-demand runs", _export_disable, "export_id")
    _leaf(
        actions,
        "remove",
        "remove an export: nothing more of it runs (admins)",
        _export_remove,
        "export_id",
    )


def _read_key(args: argparse.Namespace) -> str:
    if args.api_key_stdin:
        key = sys.stdin.readline().strip()
        if not key:
            raise InvalidInput("--api-key-stdin: no API key on standard input")
        return key
    key = os.environ.get(args.api_key_env, "").strip()
    if not key:
        raise InvalidInput(
            f"--api-key-env: environment variable {args.api_key_env} is empty or unset"
        )
    return key


def _show(args: argparse.Namespace, value: dict[str, Any], message: str) -> int:
    if args.json:
        emit_json(value)
    else:
        print(message)
    return 0


def _show_added(args: argparse.Namespace, value: dict[str, Any], message: str) -> int:
    """A new record: its id alone on stdout (``ID=$(klaviyo-export ... add ...)``),
    what it is on stderr, for the person at the terminal."""
    if args.json:
        emit_json(value)
    else:
        print(value["id"])
        print(message, file=sys.stderr)
    return 0


def _connection_add(args: argparse.Namespace) -> int:
    connection = operations.add_connection(
        Context.from_env(),
        args.actor,
        name=args.name,
        api_key=_read_key(args),
        allow=args.allow,
        accept_privacy_terms=args.accept_privacy_terms,
        contract_cap=args.contract_cap,
        base_url=args.base_url.rstrip("/") if args.base_url else None,
    )
    message = (
        f"connection {connection.id} added (key verified via {connection.verified_via} "
        f"at {connection.base_url})"
    )
    if not connection.terms_accepted:
        message += "\nnote: no export can use it until the data-privacy terms are accepted"
    return _show_added(args, connection.public(), message)


def _connection_list(args: argparse.Namespace) -> int:
    rows = [c.public() for c in queries.list_connections(Context.from_env(), args.actor)]
    if args.json:
        emit_json({"connections": rows})
    else:
        emit_table(
            rows,
            [
                "id",
                "name",
                "allow",
                "account_id",
                "verified_via",
                "base_url",
                "privacy_terms_accepted_by",
                "created_by",
            ],
        )
    return 0


def _connection_verify(args: argparse.Namespace) -> int:
    connection = operations.verify_connection(Context.from_env(), args.actor, args.connection_id)
    return _show(
        args,
        connection.public(),
        f"connection {connection.id}: key valid (checked via {connection.verified_via})",
    )


def _connection_accept_terms(args: argparse.Namespace) -> int:
    connection = operations.accept_terms(Context.from_env(), args.actor, args.connection_id)
    return _show(
        args,
        connection.public(),
        f"connection {connection.id}: data-privacy terms accepted by {args.actor.user}",
    )


def _connection_rotate(args: argparse.Namespace) -> int:
    connection = operations.rotate_key(
        Context.from_env(), args.actor, args.connection_id, _read_key(args)
    )
    return _show(args, connection.public(), f"connection {connection.id}: key replaced")


def _connection_remove(args: argparse.Namespace) -> int:
    removed = operations.remove_connection(Context.from_env(), args.actor, args.connection_id)
    return _show(
        args,
        {"id": args.connection_id, "removed": True, "exports_removed": removed},
        f"connection {args.connection_id} removed, with exports: {removed or 'none'}",
    )


def _parse_properties(values: list[str]) -> dict[str, str]:
    mapping = {}
    for value in values:
        column, _, name = value.partition(":")
        if not column:
            raise InvalidInput(f"--property {value!r}: the column name is empty")
        mapping[column] = name or column
    return mapping


def _segment(path: str | None) -> str | None:
    """A bound segment is read later, by another process in another directory:
    keep it absolute."""
    if path is None:
        return None
    if path == "-":
        raise InvalidInput("--segment: standard input cannot be read by a scheduled refresh")
    return str(Path(path).expanduser().absolute())


def _export_add(args: argparse.Namespace) -> int:
    spec = ExportSpec(
        name=args.name,
        connection_id=args.connection,
        list_id=args.list_id,
        email_field=args.email_field,
        properties=_parse_properties(args.property),
        segment=_segment(args.segment),
        segment_format=args.format,
        schedule=args.schedule,
        max_profiles=args.max_profiles,
        enabled=not args.disabled,
        mode=args.mode,
        brake_share=args.brake_share,
        brake_count=args.brake_count,
    )
    export = operations.add_export(Context.from_env(), args.actor, spec)
    return _show_added(
        args,
        export.public(),
        f"export {export.id} added: list {export.list_id} "
        f"({export.name}); it runs when asked or scheduled, not now",
    )


def _export_list(args: argparse.Namespace) -> int:
    rows = [e.public() for e in queries.list_exports(Context.from_env(), args.actor)]
    if args.json:
        emit_json({"exports": rows})
    else:
        emit_table(
            rows,
            [
                "id",
                "name",
                "connection_id",
                "list_id",
                "email_field",
                "enabled",
                "schedule",
                "segment",
            ],
        )
    return 0


def _export_enable(args: argparse.Namespace) -> int:
    export = operations.set_enabled(Context.from_env(), args.actor, args.export_id, True)
    return _show(args, export.public(), f"export {export.id} enabled")


def _export_disable(args: argparse.Namespace) -> int:
    export = operations.set_enabled(Context.from_env(), args.actor, args.export_id, False)
    return _show(args, export.public(), f"export {export.id} disabled")


def _export_remove(args: argparse.Namespace) -> int:
    cancelled = operations.remove_export(Context.from_env(), args.actor, args.export_id)
    return _show(
        args,
        {"id": args.export_id, "removed": True, "runs_cancelled": cancelled},
        f"export {args.export_id} removed; runs cancelled: {cancelled or 'none'}",
    )


def _audit(args: argparse.Namespace) -> int:
    entries = queries.audit_entries(Context.from_env(), args.actor, args.limit)
    if args.json:
        emit_json({"entries": entries})
        return 0
    table = [
        {**e, "at": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["at"]))} for e in entries
    ]
    emit_table(table, ["at", "user", "role", "via", "action", "target", "detail"])
    return 0
