"""Store-level behaviour: ids, accounts, lists and membership."""

from __future__ import annotations

import gc
import random
import re

import pytest

from sandbox.clock import ManualClock
from sandbox.config import SandboxConfig
from sandbox.ids import IdFactory
from sandbox.store import RowError, Store

ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")


def test_ids_look_like_klaviyo_ids() -> None:
    ids = IdFactory(random.Random(1), ManualClock())
    assert ULID.match(ids.ulid())
    assert re.match(r"^[A-Za-z0-9]{6}$", ids.short())
    assert re.match(
        r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", ids.uuid()
    )
    many = {ids.ulid() for _ in range(10_000)}
    assert len(many) == 10_000


def test_seeded_ids_repeat() -> None:
    clock = ManualClock()
    first = IdFactory(random.Random(42), clock)
    second = IdFactory(random.Random(42), clock)
    assert [first.ulid() for _ in range(5)] == [second.ulid() for _ in range(5)]


def test_each_key_is_its_own_account_with_the_seeded_lists() -> None:
    config = SandboxConfig(
        api_keys={"pk_a": None, "pk_b": frozenset({"lists:read"})},
        lists={"Y6nRLr": "Newsletter"},
        seed=3,
    )
    store = Store(config, ManualClock())
    a, b = store.account_for_key("pk_a"), store.account_for_key("pk_b")
    assert a is not None
    assert b is not None
    assert a is not b
    assert store.account_for_key("pk_c") is None
    assert set(a.lists) == set(b.lists) == {"Y6nRLr"}
    assert a.lists["Y6nRLr"] is not b.lists["Y6nRLr"]
    assert a.allows(frozenset({"profiles:write"}))
    assert not b.allows(frozenset({"lists:read", "profiles:read"}))
    assert Store(config, ManualClock()).accounts.keys() == store.accounts.keys()


def test_create_list_in_one_or_all_accounts() -> None:
    store = Store(SandboxConfig(api_keys={"pk_a": None, "pk_b": None}), ManualClock())
    a, b = list(store.accounts)
    list_id = store.create_list("Fresh", None, [a, b])
    assert re.match(r"^[A-Za-z0-9]{6}$", list_id)
    assert list_id in store.accounts[a].lists
    assert list_id in store.accounts[b].lists
    store.create_list("Only A", "OnlyA1", [a])
    assert "OnlyA1" not in store.accounts[b].lists
    with pytest.raises(ValueError, match="already exists"):
        store.create_list("Again", "OnlyA1", [a])


def test_membership_changes_touch_updated_only_when_something_changes() -> None:
    clock = ManualClock()
    store = Store(SandboxConfig(api_keys={"pk": None}, lists={"L1": "L"}), clock)
    account = store.accounts[next(iter(store.accounts))]
    pid = store.upsert(account, {"email": "a@x.com"}, None, clock.now())
    record = account.lists["L1"]
    clock.advance(5)
    store.set_membership(account, record, [pid], add=True)
    assert record.updated == clock.now()
    clock.advance(5)
    store.set_membership(account, record, [pid], add=True)
    assert record.updated == clock.now() - 5
    store.set_membership(account, record, [pid], add=False)
    assert len(record.members) == 0
    assert record.updated == clock.now()


def test_upsert_by_phone_and_external_id_and_email_change_by_id() -> None:
    clock = ManualClock()
    store = Store(SandboxConfig(api_keys={"pk": None}), clock)
    account = store.accounts[next(iter(store.accounts))]
    first = store.upsert(account, {"phone_number": "+15005550006"}, None, clock.now())
    assert ULID.match(first)
    attributes = {"phone_number": "+15005550006", "external_id": "c-1"}
    assert store.upsert(account, attributes, None, clock.now()) == first
    assert store.upsert(account, {"external_id": "c-1", "email": "x@y.com"}, None, 0.0) == first
    clock.advance(3)
    assert store.upsert(account, {"email": "New@y.com"}, first, clock.now()) == first
    assert account.by_email == {"new@y.com": first}
    profile = account.profile(first)
    assert profile is not None
    assert (profile.phone_number, profile.external_id, profile.email) == (
        "+15005550006",
        "c-1",
        "New@y.com",
    )
    assert profile.updated == profile.created + 3
    assert list(account.profiles) == [first]


def test_upsert_refuses_unknown_ids_and_identifiers_owned_by_others() -> None:
    clock = ManualClock()
    store = Store(SandboxConfig(api_keys={"pk": None}), clock)
    account = store.accounts[next(iter(store.accounts))]
    store.upsert(account, {"email": "a@x.com"}, None, clock.now())
    b = store.upsert(account, {"email": "b@x.com", "external_id": "b"}, None, clock.now())
    with pytest.raises(RowError, match="does not exist"):
        store.upsert(account, {"email": "c@x.com"}, "01NOSUCH0000000000000000", clock.now())
    with pytest.raises(RowError, match="email is already used"):
        store.upsert(account, {"email": "A@x.com"}, b, clock.now())
    with pytest.raises(RowError, match="external_id is already used"):
        store.upsert(account, {"email": "a@x.com", "external_id": "b"}, None, clock.now())


def test_stored_profiles_and_ids_are_invisible_to_the_cycle_collector() -> None:
    clock = ManualClock()
    store = Store(SandboxConfig(api_keys={"pk": None}, lists={"L1": "L"}), clock)
    account = store.accounts[next(iter(store.accounts))]
    for number in range(3000):
        attributes = {"email": f"a{number}@x.com", "first_name": "A", "properties": {"n": 1}}
        pid = store.upsert(account, attributes, None, clock.now())
        store.set_membership(account, account.lists["L1"], [pid], add=True)
    gc.collect()
    assert not any(gc.is_tracked(row) for row in account.profiles.values())
    assert not gc.is_tracked(account.by_email)
    assert not gc.is_tracked(account.profiles)
