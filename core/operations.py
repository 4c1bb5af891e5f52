"""What people do to connections and exports: each action checks the actor's
role, does the work, and writes the audit log. The CLI, the Python API and the
upstream listener all come through here, so the rules hold everywhere.
"""

from __future__ import annotations

from dataclasses import replace

from core import audit, queries
from core.actors import Actor, may_see, require_admin, require_person, require_use
from core.context import Context
from core.errors import InvalidInput, NotFound
from core.records import Connection, Export, ExportSpec
from klaviyo_client import NotFoundError


def add_connection(
    ctx: Context,
    actor: Actor,
    *,
    name: str,
    api_key: str,
    allow: str = "admins",
    accept_privacy_terms: bool = False,
    contract_cap: int = 0,
    base_url: str | None = None,
) -> Connection:
    """Check the key against Klaviyo, then store it encrypted; admins only.

    The connection records the base URL its key was checked against (default
    ``KLAVIYO_BASE_URL``): every process sends its work there, so a key
    verified with one Klaviyo is never used with another.
    """
    require_admin(actor, "add connections")
    _check_key(api_key)
    if base_url is not None and not base_url.startswith(("http://", "https://")):
        raise InvalidInput(
            f"must be an http:// or https:// URL, not {base_url!r}", field="base_url"
        )
    client = ctx.patient_klaviyo_for_key(api_key, base_url)
    check = client.verify_key()
    connection = ctx.store.add_connection(
        name=name,
        api_key=api_key,
        allow=allow,
        created_by=actor.user,
        account_id=check.account_id,
        verified_via=check.via,
        accepted_terms=accept_privacy_terms,
        contract_cap=contract_cap,
        base_url=client.settings.base_url,
    )
    audit.record(
        ctx.redis,
        actor,
        "connection.add",
        connection.id,
        name=connection.name,
        allow=allow,
        privacy_terms_accepted=accept_privacy_terms,
        verified_via=check.via,
        base_url=client.settings.base_url,
    )
    return connection


def _check_key(api_key: str) -> None:
    """A key goes into an HTTP header: printable ASCII only (Klaviyo's keys are
    ``pk_`` and hex), refused here rather than as an encoding error mid-request."""
    if not api_key or not api_key.isascii() or not api_key.isprintable() or " " in api_key:
        raise InvalidInput("must be printable ASCII without spaces", field="api_key")


def _visible_connection(ctx: Context, actor: Actor, connection_id: str) -> Connection:
    """The connection, or ``NotFound`` for one the actor may not see (its name
    stays hidden, as ``core.queries`` hides it)."""
    connection = ctx.store.get_connection(connection_id)
    if not may_see(actor, connection):
        raise NotFound(f"no connection {connection_id!r}")
    return connection


def verify_connection(ctx: Context, actor: Actor, connection_id: str) -> Connection:
    """Check the stored key against Klaviyo again (anyone who can see it may)."""
    require_person(actor, "verify connections")
    _visible_connection(ctx, actor, connection_id)
    check = ctx.patient_klaviyo(connection_id).verify_key()
    connection = ctx.store.mark_verified(connection_id, check.via, check.account_id)
    audit.record(ctx.redis, actor, "connection.verify", connection_id, verified_via=check.via)
    return connection


def accept_terms(ctx: Context, actor: Actor, connection_id: str) -> Connection:
    require_admin(actor, "accept a connection's data-privacy terms")
    connection = ctx.store.accept_terms(connection_id, actor.user)
    audit.record(ctx.redis, actor, "connection.accept_terms", connection_id)
    return connection


def rotate_key(ctx: Context, actor: Actor, connection_id: str, api_key: str) -> Connection:
    """A new key for the same account; exports keep working, unchanged."""
    require_admin(actor, "rotate a connection's API key")
    _check_key(api_key)
    current = ctx.store.get_connection(connection_id)
    check = ctx.patient_klaviyo_for_key(
        api_key, ctx.client_settings_for(current).base_url
    ).verify_key()
    if current.account_id and check.account_id and check.account_id != current.account_id:
        raise InvalidInput(
            f"the new key belongs to Klaviyo account {check.account_id}, "
            f"not {current.account_id}: add a new connection instead"
        )
    connection = ctx.store.rotate_key(connection_id, api_key, check.via, check.account_id)
    audit.record(ctx.redis, actor, "connection.rotate_key", connection_id, verified_via=check.via)
    return connection


def remove_connection(ctx: Context, actor: Actor, connection_id: str) -> list[str]:
    """Remove a connection with its exports; their unfinished runs are cancelled."""
    require_admin(actor, "remove connections")
    for export in ctx.store.list_exports():
        if export.connection_id == connection_id:
            ctx.lifecycle.cancel_unfinished(
                export.id, f"its connection was removed by {actor.user}"
            )
    removed = ctx.store.remove_connection(connection_id)
    audit.record(ctx.redis, actor, "connection.remove", connection_id, exports_removed=removed)
    return removed


def add_export(ctx: Context, actor: Actor, spec: ExportSpec) -> Export:
    """Save an export (checking that the list exists); saving never runs it.

    An empty ``spec.name`` becomes the list's name in Klaviyo.
    """
    require_person(actor, "add exports")
    connection = _visible_connection(ctx, actor, spec.connection_id)
    require_use(actor, connection)
    spec.check()  # before asking Klaviyo: a wrong field costs no call
    try:
        found = ctx.patient_klaviyo(spec.connection_id).get_list(spec.list_id)
    except NotFoundError:
        raise InvalidInput(f"Klaviyo has no list {spec.list_id}", field="list_id") from None
    export = ctx.store.add_export(
        replace(spec, name=spec.name or found.name), created_by=actor.user
    )
    audit.record(
        ctx.redis,
        actor,
        "export.add",
        export.id,
        connection=spec.connection_id,
        list_id=spec.list_id,
        schedule=spec.schedule,
        enabled=spec.enabled,
        mode=spec.mode,
    )
    return export


def set_enabled(ctx: Context, actor: Actor, export_id: str, enabled: bool) -> Export:
    require_person(actor, "enable or disable exports")
    export = queries.get_export(ctx, actor, export_id)  # hidden: NotFound, as when reading
    require_use(actor, ctx.store.get_connection(export.connection_id))
    updated = replace(export, enabled=enabled)
    ctx.store.save_export(updated)
    audit.record(ctx.redis, actor, "export.enable" if enabled else "export.disable", export_id)
    return updated


def remove_export(ctx: Context, actor: Actor, export_id: str) -> list[str]:
    """Remove an export at once: nothing more of it runs; returns cancelled runs."""
    require_admin(actor, "remove exports")
    ctx.store.get_export(export_id)
    ctx.store.remove_export(export_id)
    cancelled = ctx.lifecycle.cancel_unfinished(
        export_id, f"the export was removed by {actor.user}"
    )
    audit.record(ctx.redis, actor, "export.remove", export_id, runs_cancelled=cancelled)
    return cancelled
