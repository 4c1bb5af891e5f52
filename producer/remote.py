"""Runs asked for from afar (the HTTP API, the console): which segment they read.

A caller on the network must not choose a file of the server's to read. A run
asked for over HTTP reads the export's bound segment (``export add
--segment``, set by someone with a shell on the machine), or a path the caller
names only when it lies under one of ``KLAVIYO_EXPORT_SOURCE_ROOTS``
(resolved, so neither ``..`` nor a symbolic link leads out). Standard input
means nothing to a server and is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from core import queries
from core.actors import Actor
from core.context import Context
from core.errors import InvalidInput
from core.idempotency import Idempotency
from producer.runner import RunRequest, open_run


def allowed_path(ctx: Context, path: str, field: str = "source") -> str:
    """``path`` made absolute, if it lies under a configured source root."""
    roots = ctx.settings.source_roots
    if not roots:
        raise InvalidInput(
            "this server reads no path named over HTTP (KLAVIYO_EXPORT_SOURCE_ROOTS is not "
            "set): leave it out to read the export's bound segment",
            field=field,
        )
    if path == "-" or not path.strip() or not path.isprintable():
        raise InvalidInput("name a file under the server's source roots", field=field)
    resolved = Path(path)
    if not resolved.is_absolute():
        resolved = roots[0] / resolved
    try:
        resolved = resolved.resolve()
    except (OSError, ValueError, RuntimeError):  # a loop of links, a name too long
        raise InvalidInput("not a path the server can read", field=field) from None
    if not any(resolved.is_relative_to(root) for root in roots):
        # The roots are not named: a caller learns no folder of the server's.
        raise InvalidInput(f"{path!r} is outside the server's source roots", field=field)
    return str(resolved)


def request_run(
    ctx: Context,
    actor: Actor,
    export_id: str,
    *,
    source: str | None = None,
    fmt: str | None = None,
    full: bool = False,
    trigger: str = "api",
) -> RunRequest:
    """The run to open for a remote caller: the named source (checked against
    the roots) or else the export's bound segment. An export the actor may not
    see is ``NotFound`` before anything else is said of it."""
    export = queries.get_export(ctx, actor, export_id)
    if source is not None:
        return RunRequest(export_id, allowed_path(ctx, source), actor, fmt, trigger, full)
    if not export.segment:
        raise InvalidInput(
            f"export {export_id} has no segment bound: name a source, or bind one "
            "(export add --segment)",
            field="source",
        )
    return RunRequest(export_id, export.segment, actor, fmt or export.segment_format, trigger, full)


@dataclass(frozen=True, slots=True)
class Opened:
    """A run opened for a remote caller. ``request`` is what is left to read;
    None when an earlier request with the same ``Idempotency-Key`` opened it."""

    run_id: str
    request: RunRequest | None

    @property
    def replayed(self) -> bool:
        return self.request is None


def open_remote_run(
    ctx: Context,
    actor: Actor,
    export_id: str,
    *,
    source: str | None = None,
    fmt: str | None = None,
    full: bool = False,
    idempotency_key: str | None = None,
    trigger: str = "api",
) -> Opened:
    """Check and open the run a remote caller asks for (``open_run``); the
    caller then reads it (``producer.runner.read_opened``) when ``request`` is set.

    Everything that can refuse the run is decided before this returns, so the
    HTTP answer (202, or 403/404/409/422) is final.
    """
    request = request_run(ctx, actor, export_id, source=source, fmt=fmt, full=full, trigger=trigger)
    if idempotency_key is None:
        return Opened(open_run(ctx, request), request)
    # What the run reads, not how it was named: the bound segment named by its path
    # is the same request as the bound segment named by nothing.
    asked = json.dumps([export_id, request.source, request.format, request.full])
    keys = Idempotency(ctx.redis)
    claim = keys.claim(actor.user, idempotency_key, asked)
    if claim.run_id is not None:
        return Opened(claim.run_id, None)
    try:
        run_id = open_run(ctx, request)
    except BaseException:
        keys.forget(actor.user, idempotency_key)
        raise
    keys.settle(actor.user, idempotency_key, asked, run_id)
    return Opened(run_id, request)
