"""An export spec is checked where it is defined: each wrong value is an
``InvalidInput`` naming its record field (not a flag of one front door), every
default lives in ``ExportSpec`` alone, and a record saved before a field
existed still loads, with that field's default.
"""

from __future__ import annotations

import json
from dataclasses import fields, replace
from typing import Any

import fakeredis
import pytest

from core.errors import InvalidInput
from core.records import Connection, Export, ExportSpec
from core.secrets import SecretBox, generate_key
from core.store import Store
from schemas import keys

VALID = ExportSpec(connection_id="c_1", list_id="L1", email_field="email")


@pytest.fixture
def store() -> Store:
    return Store(fakeredis.FakeRedis(), SecretBox(generate_key()))


def _connection(store: Store, **chosen: Any) -> Connection:
    values: dict[str, Any] = {"name": "Shop", "allow": "admins", **chosen}
    return store.add_connection(
        api_key="pk_" + "a" * 34, created_by="ann", account_id=None, verified_via=None,
        accepted_terms=True, **values,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("email_field", "  ", "must not be empty"),
        ("max_profiles", -1, "0 (no cap) or more"),
        ("mode", "sync", "one of add, mirror"),
        ("brake_share", 1.5, "0..1"),
        ("brake_share", -0.1, "0..1"),
        ("brake_count", -1, "0 or more"),
        ("schedule", "every day", "five fields"),
        ("schedule", "61 * * * *", "cron"),
    ],
)
def test_each_check_names_its_field(field: str, value: object, problem: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        replace(VALID, **{field: value}).check()

    assert caught.value.field == field
    assert problem in caught.value.problem
    assert str(caught.value).startswith(f"{field}: ")
    assert "--" not in str(caught.value)  # no front door's flag


def test_a_valid_spec_passes_with_the_edges_of_each_range() -> None:
    VALID.check()
    replace(VALID, brake_share=0.0, brake_count=0, max_profiles=0).check()
    replace(VALID, brake_share=1.0, mode="mirror", schedule="0 */6 * * *").check()


def test_the_store_checks_the_spec_before_saving(store: Store) -> None:
    connection = _connection(store)

    with pytest.raises(InvalidInput) as caught:
        store.add_export(
            replace(VALID, connection_id=connection.id, max_profiles=-5), created_by="ann"
        )

    assert caught.value.field == "max_profiles"
    assert store.list_exports() == []


@pytest.mark.parametrize(
    ("chosen", "field"),
    [
        ({"allow": "everyone"}, "allow"),
        ({"name": "  "}, "name"),
        ({"contract_cap": -1}, "contract_cap"),
    ],
)
def test_the_connection_checks_name_their_field(
    store: Store, chosen: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        _connection(store, **chosen)

    assert caught.value.field == field
    assert "--" not in str(caught.value)
    assert store.list_connections() == []


def test_defaults_are_the_specs_and_a_saved_export_takes_them(store: Store) -> None:
    assert ExportSpec.default("brake_share") == 0.2
    assert ExportSpec.default("mode") == "add"
    assert ExportSpec.default("properties") == {}
    with pytest.raises(KeyError):
        ExportSpec.default("list_id")  # required: no default to borrow
    connection = _connection(store)

    export = store.add_export(
        ExportSpec(connection_id=connection.id, list_id="L1", email_field="email"),
        created_by="ann",
    )

    for spec_field in fields(ExportSpec):
        if spec_field.name not in {"connection_id", "list_id", "email_field", "name"}:
            assert getattr(export, spec_field.name) == ExportSpec.default(spec_field.name)
    assert export.name == "L1"  # no name chosen: the list id
    assert (export.created_by, export.id[:2]) == ("ann", "e_")


def test_a_saved_export_keeps_every_choice_and_copies_the_properties(store: Store) -> None:
    connection = _connection(store)
    properties = {"First": "first_name"}
    spec = ExportSpec(
        name=" Weekly ", connection_id=connection.id, list_id="L1", email_field="Email",
        properties=properties, segment="/data/s.csv", segment_format="csv",
        schedule="0 3 * * *", max_profiles=10, enabled=False, mode="mirror",
        brake_share=0.5, brake_count=7,
    )  # fmt: skip

    export = store.add_export(spec, created_by="ann")
    properties["Tier"] = "tier"

    assert export == store.get_export(export.id)
    assert export.name == "Weekly"
    assert export.properties == {"First": "first_name"}
    chosen = {f.name for f in fields(ExportSpec)} - {"name", "properties"}
    assert all(getattr(export, name) == getattr(spec, name) for name in chosen)


def test_an_export_record_from_before_the_newer_fields_still_loads(store: Store) -> None:
    old = {  # as an early version saved it: no mode, brakes, format, schedule or cap
        "id": "e_0ld0000000",
        "name": "Newsletter",
        "connection_id": "c_1",
        "list_id": "L1",
        "email_field": "email",
        "properties": {"First": "first_name"},
        "enabled": True,
        "segment": None,
        "created_by": "ann",
        "created_at": 1700000000.0,
        "retired_field": "ignored",
    }
    store.redis.hset(keys.export(old["id"]), "record", json.dumps(old))
    store.redis.sadd(keys.EXPORTS, old["id"])

    export = store.get_export("e_0ld0000000")

    assert (export.id, export.name, export.properties) == (
        "e_0ld0000000",
        "Newsletter",
        {"First": "first_name"},
    )
    assert (export.mode, export.brake_share, export.brake_count) == ("add", 0.2, 0)
    assert (export.schedule, export.segment_format, export.max_profiles) == (None, None, 0)
    assert store.list_exports() == [export]


def test_the_stored_record_has_the_same_fields_as_before() -> None:
    """Old readers and new ones share Redis: the JSON keeps the same keys."""
    export = Export.from_spec(VALID, id="e_1", created_by="ann", created_at=1.0)

    assert set(export.public()) == {
        "id", "name", "connection_id", "list_id", "email_field", "properties", "enabled",
        "segment", "segment_format", "schedule", "max_profiles", "mode", "brake_share",
        "brake_count", "created_by", "created_at",
    }  # fmt: skip
