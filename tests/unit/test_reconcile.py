"""``reconcile`` tells the real list from what the export put in it, and changes nothing.

Members added by hand (in the list, never exported) and members missing
(exported, gone from the list) are found by email, whatever its case or
spaces in Klaviyo; profiles without an email are not members it can judge.
The audit record says how many, never who.
"""

from __future__ import annotations

import pytest

from core import audit
from core.actors import Actor
from core.errors import Forbidden
from core.state import ExportState
from core.store import Export
from klaviyo_client import Profile
from producer.reconcile import reconcile
from tests.support.domain import (
    LIST_ID,
    ScriptedContext,
    add_connection,
    add_export,
    scripted_context,
)

ADMIN = Actor("ann", "admin")


@pytest.fixture
def ctx() -> ScriptedContext:
    return scripted_context()


@pytest.fixture
def export(ctx: ScriptedContext) -> Export:
    export = add_export(ctx, add_connection(ctx))
    ExportState(ctx.redis, export.id).record(["a@x.co", "b@x.co", "gone@x.co"], ["1", "2", "3"])
    return export


def test_reconcile_finds_members_added_by_hand_and_missing(
    ctx: ScriptedContext, export: Export
) -> None:
    members = [
        Profile("P1", "a@x.co"),
        Profile("P2", " B@X.co "),  # Klaviyo keeps what was typed in its UI
        Profile("P3", "hand@x.co"),
        Profile("P4", None),  # a phone-only profile
    ]
    ctx.fake.script("iter_list_members", members)
    state_before = sorted(ExportState(ctx.redis, export.id).emails())

    drift = reconcile(ctx, ADMIN, export.id)

    assert ctx.fake.called("iter_list_members") == [(LIST_ID,)]
    assert (drift.added_by_hand, drift.missing) == ({"hand@x.co"}, {"gone@x.co"})
    assert drift.summary() == {
        "export_id": export.id,
        "list_id": LIST_ID,
        "list_members": 3,
        "exported": 3,
        "added_by_hand": 1,
        "missing": 1,
    }
    assert drift.summary(show_emails=True)["missing_emails"] == ["gone@x.co"]
    assert sorted(ExportState(ctx.redis, export.id).emails()) == state_before
    assert [c for c, _ in ctx.fake.calls] == ["iter_list_members"]  # nothing changed


def test_reconcile_is_audited_with_counts_only(ctx: ScriptedContext, export: Export) -> None:
    ctx.fake.script("iter_list_members", [Profile("P3", "hand@x.co")])

    reconcile(ctx, ADMIN, export.id)

    (entry,) = audit.recent(ctx.redis)
    assert (entry["action"], entry["target"]) == ("export.reconcile", export.id)
    assert entry["detail"] == {"added_by_hand": 1, "missing": 3}
    assert "@" not in str(entry)


def test_a_contributor_may_not_reconcile_on_an_admins_only_connection(
    ctx: ScriptedContext,
) -> None:
    export = add_export(ctx, add_connection(ctx, allow="admins"))

    with pytest.raises(Forbidden, match="for admins only"):
        reconcile(ctx, Actor("carl", "contributor"), export.id)

    assert ctx.fake.calls == []
    assert audit.recent(ctx.redis) == []
