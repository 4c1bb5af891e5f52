"""In-memory state: accounts, and in each account its profiles, lists and jobs.

Everything lives behind one lock (:attr:`Store.lock`). A request takes it,
lets due bulk import work run (see :mod:`sandbox.jobs`), reads or writes, and
leaves; JSON encoding happens outside the lock. One lock keeps the promise
that matters to clients: whatever one answer shows (a job ``complete``) every
later answer agrees with (its profiles exist and are list members).

The store has to hold a million-profile export on a small machine, so a
profile is a ``__slots__`` object holding its identifiers, one optional dict
of other attributes, and two timestamps; the email/phone/external-id indexes
point at the same objects. Emails are matched case-insensitively (the index
key is the lower-cased address) but stored as given.

Upsert rules (Klaviyo's bulk import guide): a profile is matched by ``id``,
then email, then phone number, then external id; a match keeps its id and
gets the new non-null values (``properties`` and ``location`` are merged key
by key, nulls ignored, so nothing can be cleared). An identifier that already
belongs to another profile is a conflict and fails that row.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Any

from sandbox.clock import Clock
from sandbox.config import SandboxConfig
from sandbox.ids import IdFactory
from sandbox.pagination import OrderedIndex

#: Profile attributes kept in the ``extra`` dict (identifiers have own slots).
MERGED_DICT_ATTRIBUTES = frozenset({"properties", "location"})


class Profile:
    """One profile. ``extra`` holds names, location, properties and the like."""

    __slots__ = ("created", "email", "external_id", "extra", "id", "phone_number", "seq", "updated")

    def __init__(self, profile_id: str, seq: int, now: float) -> None:
        self.id = profile_id
        self.seq = seq
        self.email: str | None = None
        self.phone_number: str | None = None
        self.external_id: str | None = None
        self.extra: dict[str, Any] | None = None
        self.created = now
        self.updated = now


@dataclass
class ListRecord:
    """A list and its members (profile ids with the time they joined)."""

    id: str
    name: str
    created: float
    updated: float
    members: OrderedIndex = field(default_factory=OrderedIndex)


@dataclass
class Account:
    """One API key's account; nothing is shared between accounts."""

    id: str
    scopes: frozenset[str] | None
    profiles: dict[str, Profile] = field(default_factory=dict)
    profile_order: list[Profile] = field(default_factory=list)
    by_email: dict[str, Profile] = field(default_factory=dict)
    by_phone: dict[str, Profile] = field(default_factory=dict)
    by_external_id: dict[str, Profile] = field(default_factory=dict)
    lists: dict[str, ListRecord] = field(default_factory=dict)
    # Jobs are typed loosely here to keep this module free of sandbox.jobs.
    jobs: dict[str, Any] = field(default_factory=dict)
    job_order: list[Any] = field(default_factory=list)
    active_jobs: list[Any] = field(default_factory=list)

    def allows(self, scopes: frozenset[str]) -> bool:
        return self.scopes is None or scopes <= self.scopes


class Store:
    """All accounts, the lock that guards them, and the id factory."""

    def __init__(self, config: SandboxConfig, clock: Clock) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        rng = random.Random(config.seed) if config.seed is not None else random.Random()
        self.ids = IdFactory(rng, clock)
        self.accounts: dict[str, Account] = {}
        self._by_key: dict[str, Account] = {}
        now = clock.now()
        for key, scopes in config.api_keys.items():
            account_id = self.ids.short()
            while account_id in self.accounts:
                account_id = self.ids.short()
            account = Account(id=account_id, scopes=scopes)
            self.accounts[account_id] = account
            self._by_key[key] = account
            for list_id, name in config.lists.items():
                account.lists[list_id] = ListRecord(list_id, name, now, now)

    def account_for_key(self, key: str) -> Account | None:
        """The account an API key belongs to (the key itself is never stored elsewhere)."""
        return self._by_key.get(key)

    def create_list(self, name: str, list_id: str | None, account_ids: list[str]) -> str:
        """Create a list (same id) in the given accounts; returns its id."""
        now = self.clock.now()
        targets = [self.accounts[account_id] for account_id in account_ids]
        if list_id is None:
            list_id = self.ids.short()
            while any(list_id in account.lists for account in targets):
                list_id = self.ids.short()
        for account in targets:
            if list_id in account.lists:
                raise ValueError(f"list {list_id} already exists in account {account.id}")
        for account in targets:
            account.lists[list_id] = ListRecord(list_id, name, now, now)
        return list_id

    def upsert(
        self, account: Account, attributes: dict[str, Any], profile_id: str | None, now: float
    ) -> Profile | str:
        """Create or update one profile; a string says why the row failed.

        This runs once per imported row, so it sticks to plain dict lookups.
        """
        get = attributes.get
        email: str | None = get("email")
        phone: str | None = get("phone_number")
        external_id: str | None = get("external_id")
        email_key = email.lower() if email is not None else None
        target: Profile | None = None
        if profile_id is not None:
            target = account.profiles.get(profile_id)
            if target is None:
                return f"A profile with id {profile_id} does not exist."
        owner_email = account.by_email.get(email_key) if email_key is not None else None
        owner_phone = account.by_phone.get(phone) if phone is not None else None
        owner_external = (
            account.by_external_id.get(external_id) if external_id is not None else None
        )
        if target is None:
            target = owner_email or owner_phone or owner_external
        for owner, name in (
            (owner_email, "email"),
            (owner_phone, "phone_number"),
            (owner_external, "external_id"),
        ):
            if owner is not None and owner is not target:
                return f"The {name} is already used by another profile ({owner.id})."
        if target is None:
            target = Profile(self.ids.ulid(), len(account.profile_order), now)
            account.profiles[target.id] = target
            account.profile_order.append(target)
        else:
            target.updated = now
        if email_key is not None and email != target.email:
            if target.email is not None:
                account.by_email.pop(target.email.lower(), None)
            target.email = email
            account.by_email[email_key] = target
        if phone is not None and phone != target.phone_number:
            if target.phone_number is not None:
                account.by_phone.pop(target.phone_number, None)
            target.phone_number = phone
            account.by_phone[phone] = target
        if external_id is not None and external_id != target.external_id:
            if target.external_id is not None:
                account.by_external_id.pop(target.external_id, None)
            target.external_id = external_id
            account.by_external_id[external_id] = target
        _merge_extra(target, attributes)
        return target

    def set_membership(
        self, account: Account, record: ListRecord, profile_ids: list[str], add: bool
    ) -> None:
        """Add or remove profiles (ids already checked) from a list."""
        now = self.clock.now()
        changed = False
        for profile_id in profile_ids:
            if add:
                changed = record.members.add(profile_id, now) or changed
            else:
                changed = record.members.discard(profile_id) or changed
        if changed:
            record.updated = now


_IDENTIFIERS = frozenset({"email", "phone_number", "external_id", "_kx"})


def _merge_extra(profile: Profile, attributes: dict[str, Any]) -> None:
    """Copy non-null, non-identifier attributes; merge dict attributes key by key.

    Stored dicts are never changed in place (a merge builds a new one), so a
    dict from the request may be stored as it is when it holds no nulls.
    """
    extra = profile.extra
    for name, value in attributes.items():
        if value is None or name in _IDENTIFIERS:
            continue
        if name in MERGED_DICT_ATTRIBUTES and isinstance(value, dict):
            if None in value.values():
                value = {key: item for key, item in value.items() if item is not None}
            old = extra.get(name) if extra is not None else None
            if old:
                value = {**old, **value}
        if extra is None:
            extra = profile.extra = {}
        extra[name] = value
