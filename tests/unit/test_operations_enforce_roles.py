"""What people do to connections and exports goes through ``core.operations``:
each action checks the actor's role (admins administer; a connection is for
admins only or for contributors too; no export uses a connection whose terms
nobody accepted) and writes the audit log, for every front door alike.

Klaviyo is a tiny fake: operations only ask it ``verify_key()`` and
``get_list()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import fakeredis
import pytest

from core import audit, operations
from core.actors import Actor
from core.context import Context
from core.errors import Forbidden, InvalidInput, NotFound
from core.records import Connection, ExportSpec
from core.secrets import SecretBox, generate_key
from core.settings import Settings
from klaviyo_client import ClientSettings, KeyCheck, KlaviyoList, NotFoundError
from tests.support.domain import RecordingDispatcher

ADMIN = Actor("ann", "admin")
CONTRIBUTOR = Actor("bob", "contributor")
KEY = "pk_" + "a" * 34
LIST_ID = "L1"


@dataclass
class FakeKlaviyo:
    """Answers ``verify_key`` for one account and ``get_list`` for the lists it has."""

    settings: ClientSettings
    account_id: str = "A1"
    lists: dict[str, str] = field(default_factory=lambda: {LIST_ID: "Newsletter"})
    keys_checked: list[str] = field(default_factory=list)

    def verify_key(self) -> KeyCheck:
        return KeyCheck(self.account_id, "accounts")

    def get_list(self, list_id: str) -> KlaviyoList:
        if list_id not in self.lists:
            raise NotFoundError(f"no list {list_id}", status=404)
        return KlaviyoList(list_id, self.lists[list_id])


@dataclass(frozen=True)
class FakeKlaviyoContext(Context):
    fake: FakeKlaviyo = field(
        default_factory=lambda: FakeKlaviyo(ClientSettings(base_url="http://klaviyo.test"))
    )

    def patient_klaviyo(self, connection_id: str) -> Any:
        self.store.get_connection(connection_id)  # as the real one: the connection must exist
        return self.fake

    def patient_klaviyo_for_key(self, api_key: str, base_url: str | None = None) -> Any:
        self.fake.keys_checked.append(api_key)
        return self.fake


@pytest.fixture
def ctx() -> FakeKlaviyoContext:
    built = FakeKlaviyoContext.build(
        Settings.from_env({}),
        fakeredis.FakeRedis(),
        SecretBox(generate_key()),
        RecordingDispatcher(),
    )
    assert isinstance(built, FakeKlaviyoContext)
    return built


def _connection(ctx: Context, allow: str = "contributors", terms: bool = True) -> Connection:
    return operations.add_connection(
        ctx, ADMIN, name="Shop", api_key=KEY, allow=allow, accept_privacy_terms=terms
    )


def _spec(connection: Connection, **chosen: Any) -> ExportSpec:
    return ExportSpec(connection_id=connection.id, list_id=LIST_ID, email_field="email", **chosen)


def _last(ctx: Context) -> dict[str, Any]:
    (entry,) = audit.recent(ctx.redis, limit=1)
    return entry


def _actions(ctx: Context) -> list[str]:
    return [entry["action"] for entry in reversed(audit.recent(ctx.redis, limit=100))]


# -- connections -------------------------------------------------------------------


def test_an_admin_adds_a_connection_checked_with_klaviyo_and_audited(
    ctx: FakeKlaviyoContext,
) -> None:
    connection = _connection(ctx, terms=True)

    assert ctx.fake.keys_checked == [KEY]
    assert (connection.account_id, connection.verified_via) == ("A1", "accounts")
    assert connection.base_url == "http://klaviyo.test"
    assert ctx.store.get_connection(connection.id) == connection
    entry = _last(ctx)
    assert (entry["user"], entry["role"], entry["action"], entry["target"]) == (
        "ann",
        "admin",
        "connection.add",
        connection.id,
    )
    assert entry["detail"]["privacy_terms_accepted"] is True
    assert KEY not in str(entry)


def test_a_contributor_may_not_add_rotate_remove_or_accept_terms(
    ctx: FakeKlaviyoContext,
) -> None:
    connection = _connection(ctx, terms=False)
    before = _actions(ctx)

    with pytest.raises(Forbidden, match="may not add connections: only admins may"):
        operations.add_connection(ctx, CONTRIBUTOR, name="Mine", api_key=KEY)
    with pytest.raises(Forbidden, match="rotate"):
        operations.rotate_key(ctx, CONTRIBUTOR, connection.id, KEY)
    with pytest.raises(Forbidden, match="remove connections"):
        operations.remove_connection(ctx, CONTRIBUTOR, connection.id)
    with pytest.raises(Forbidden, match="data-privacy terms"):
        operations.accept_terms(ctx, CONTRIBUTOR, connection.id)

    assert _actions(ctx) == before  # a refusal changes nothing and records nothing
    assert ctx.fake.keys_checked == [KEY]  # no key was checked for a refused action
    assert not ctx.store.get_connection(connection.id).terms_accepted


def test_anyone_may_verify_a_connection_and_it_is_audited(ctx: FakeKlaviyoContext) -> None:
    connection = _connection(ctx)

    verified = operations.verify_connection(ctx, CONTRIBUTOR, connection.id)

    assert verified.verified_via == "accounts"
    entry = _last(ctx)
    assert (entry["user"], entry["action"], entry["target"]) == (
        "bob",
        "connection.verify",
        connection.id,
    )


def test_an_admin_accepts_the_terms_and_rotates_the_key(ctx: FakeKlaviyoContext) -> None:
    connection = _connection(ctx, terms=False)

    accepted = operations.accept_terms(ctx, ADMIN, connection.id)
    assert accepted.privacy_terms_accepted_by == "ann"
    assert _last(ctx)["action"] == "connection.accept_terms"

    new_key = "pk_" + "b" * 34
    rotated = operations.rotate_key(ctx, ADMIN, connection.id, new_key)
    assert rotated.id == connection.id
    assert rotated.key_rotated_at is not None
    assert ctx.store.connection_api_key(connection.id) == new_key
    assert _last(ctx)["action"] == "connection.rotate_key"


def test_a_key_of_another_account_is_refused_on_rotation(ctx: FakeKlaviyoContext) -> None:
    connection = _connection(ctx)
    ctx.fake.account_id = "OTHER"

    with pytest.raises(InvalidInput, match="belongs to Klaviyo account OTHER"):
        operations.rotate_key(ctx, ADMIN, connection.id, "pk_" + "c" * 34)

    assert ctx.store.connection_api_key(connection.id) == KEY
    assert _last(ctx)["action"] == "connection.add"


def test_removing_a_connection_removes_its_exports_and_is_audited(
    ctx: FakeKlaviyoContext,
) -> None:
    connection = _connection(ctx)
    export = operations.add_export(ctx, ADMIN, _spec(connection))

    removed = operations.remove_connection(ctx, ADMIN, connection.id)

    assert removed == [export.id]
    assert ctx.store.list_connections() == []
    assert ctx.store.list_exports() == []
    entry = _last(ctx)
    assert (entry["action"], entry["target"]) == ("connection.remove", connection.id)
    assert entry["detail"]["exports_removed"] == [export.id]


# -- exports -----------------------------------------------------------------------


def test_a_contributor_adds_an_export_to_a_connection_open_to_contributors(
    ctx: FakeKlaviyoContext,
) -> None:
    connection = _connection(ctx, allow="contributors")

    export = operations.add_export(ctx, CONTRIBUTOR, _spec(connection, mode="mirror"))

    assert export.name == "Newsletter"  # no name chosen: the list's, from Klaviyo
    assert export.created_by == "bob"
    assert ctx.store.get_export(export.id) == export
    entry = _last(ctx)
    assert (entry["user"], entry["action"], entry["target"]) == ("bob", "export.add", export.id)
    assert entry["detail"]["mode"] == "mirror"
    assert entry["detail"]["list_id"] == LIST_ID


@pytest.mark.parametrize(
    ("allow", "terms", "refusal", "reason"),
    [
        ("admins", True, NotFound, "no connection"),  # hidden from contributors: not named
        ("contributors", False, Forbidden, "terms have not been accepted"),
    ],
)
def test_an_export_is_refused_on_a_connection_the_actor_may_not_use(
    ctx: FakeKlaviyoContext, allow: str, terms: bool, refusal: type[Exception], reason: str
) -> None:
    connection = _connection(ctx, allow=allow, terms=terms)
    before = _actions(ctx)

    with pytest.raises(refusal, match=reason):
        operations.add_export(ctx, CONTRIBUTOR, _spec(connection))

    assert ctx.store.list_exports() == []
    assert _actions(ctx) == before


def test_no_export_uses_a_connection_without_accepted_terms_even_for_an_admin(
    ctx: FakeKlaviyoContext,
) -> None:
    connection = _connection(ctx, allow="admins", terms=False)

    with pytest.raises(Forbidden, match="accept-terms"):
        operations.add_export(ctx, ADMIN, _spec(connection))


def test_an_export_for_a_list_klaviyo_does_not_have_names_the_list_field(
    ctx: FakeKlaviyoContext,
) -> None:
    connection = _connection(ctx)

    with pytest.raises(InvalidInput) as caught:
        operations.add_export(ctx, ADMIN, replace(_spec(connection), list_id="NoSuch"))

    assert caught.value.field == "list_id"
    assert "NoSuch" in str(caught.value)
    assert ctx.store.list_exports() == []


def test_enabling_needs_the_use_of_the_connection_and_is_audited(
    ctx: FakeKlaviyoContext,
) -> None:
    connection = _connection(ctx, allow="admins")
    export = operations.add_export(ctx, ADMIN, _spec(connection))

    with pytest.raises(NotFound, match="no export"):  # hidden from contributors
        operations.set_enabled(ctx, CONTRIBUTOR, export.id, False)
    assert ctx.store.get_export(export.id).enabled

    assert not operations.set_enabled(ctx, ADMIN, export.id, False).enabled
    assert _last(ctx)["action"] == "export.disable"
    assert operations.set_enabled(ctx, ADMIN, export.id, True).enabled
    assert _last(ctx)["action"] == "export.enable"


def test_only_an_admin_removes_an_export_and_its_unfinished_runs_are_cancelled(
    ctx: FakeKlaviyoContext,
) -> None:
    connection = _connection(ctx)
    export = operations.add_export(ctx, CONTRIBUTOR, _spec(connection))
    run_id = ctx.lifecycle.create(export.id, "seg.csv", "bob", connection.id, LIST_ID)

    with pytest.raises(Forbidden, match="remove exports"):
        operations.remove_export(ctx, CONTRIBUTOR, export.id)
    assert ctx.store.get_export(export.id) == export

    cancelled = operations.remove_export(ctx, ADMIN, export.id)

    assert cancelled == [run_id]
    assert ctx.store.list_exports() == []
    entry = _last(ctx)
    assert (entry["action"], entry["target"]) == ("export.remove", export.id)
    assert entry["detail"]["runs_cancelled"] == [run_id]
