"""``reconcile``: the real Klaviyo list against what the export put in it.

Pages every member of the list (``GET /api/lists/{id}/profiles``, 100 a page,
emails only) and compares with the export's state: members *added by hand*
(in the list, never exported by this export) and members *missing* (exported,
no longer in the list: removed by hand, or unsubscribed and cleaned). Nothing
is changed; a ``--full`` run puts missing members back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core import audit
from core.actors import Actor, require_use
from core.context import Context
from core.state import ExportState


@dataclass
class Drift:
    export_id: str
    list_id: str
    list_members: int = 0
    exported: int = 0
    added_by_hand: set[str] = field(default_factory=set)
    missing: set[str] = field(default_factory=set)

    def summary(self, show_emails: bool = False) -> dict[str, Any]:
        report: dict[str, Any] = {
            "export_id": self.export_id,
            "list_id": self.list_id,
            "list_members": self.list_members,
            "exported": self.exported,
            "added_by_hand": len(self.added_by_hand),
            "missing": len(self.missing),
        }
        if show_emails:
            report["added_by_hand_emails"] = sorted(self.added_by_hand)
            report["missing_emails"] = sorted(self.missing)
        return report


def reconcile(ctx: Context, actor: Actor, export_id: str) -> Drift:
    export = ctx.store.get_export(export_id)
    require_use(actor, ctx.store.get_connection(export.connection_id))
    client = ctx.patient_klaviyo(export.connection_id)
    in_list = {p.email.strip().lower() for p in client.iter_list_members(export.list_id) if p.email}
    exported = set(ExportState(ctx.redis, export_id).emails())
    drift = Drift(
        export_id=export_id,
        list_id=export.list_id,
        list_members=len(in_list),
        exported=len(exported),
        added_by_hand=in_list - exported,
        missing=exported - in_list,
    )
    audit.record(
        ctx.redis,
        actor,
        "export.reconcile",
        export_id,
        added_by_hand=len(drift.added_by_hand),
        missing=len(drift.missing),
    )
    return drift
