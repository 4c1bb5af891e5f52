"""In-memory state: accounts, and in each account its profiles, lists and jobs.

Everything lives behind one lock (:attr:`Store.lock`). A request takes it,
lets due bulk import work run (see :mod:`sandbox.jobs`), reads or writes, and
leaves; JSON encoding happens outside the lock. One lock keeps the promise
that matters to clients: whatever one answer shows (a job ``complete``) every
later answer agrees with (its profiles exist and are list members).

The store has to hold a million-profile export on a small machine. A profile
is therefore stored as a plain tuple of atomic values (strings, numbers,
None), its non-identifier attributes kept as one ``marshal`` blob (what
``json.loads`` produced, so marshal can hold it; C-fast both ways and never
persisted, so its version-specific format does not matter), and read
through the :class:`Profile` named-tuple view. CPython stops tracking exact
tuples of atomic values for the cyclic garbage collector (not named-tuple
instances, hence the plain tuple), which otherwise rescans every stored
profile on each full collection: measured on a million-profile import, 33
full collections took 8 s of 25 s, with pauses up to 0.7 s. An update stores a
new tuple under the same id; the email, phone and external-id indexes map to
ids (str to str dicts are untracked too). Emails are matched
case-insensitively (the index key is the lower-cased address) but stored as
given.

Upsert rules (Klaviyo's bulk import guide): a profile is matched by ``id``,
then email, then phone number, then external id; a match keeps its id and
gets the new non-null values (``properties`` and ``location`` are merged key
by key, nulls ignored, so nothing can be cleared). An identifier that already
belongs to another profile is a conflict and fails that row.
"""

from __future__ import annotations

import marshal
import random
import threading
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sandbox.clock import Clock
from sandbox.config import SandboxConfig
from sandbox.ids import IdFactory
from sandbox.pagination import Chunked, OrderedIndex

#: Attributes merged key by key on update rather than replaced.
MERGED_DICT_ATTRIBUTES = frozenset({"properties", "location"})
_IDENTIFIERS = frozenset({"email", "phone_number", "external_id", "_kx"})


class RowError(Exception):
    """Why one imported row cannot be applied; the message is the import error's detail."""


class Profile(NamedTuple):
    """A view of one stored profile; ``extra`` is the marshalled other attributes."""

    id: str
    seq: int
    email: str | None
    phone_number: str | None
    external_id: str | None
    extra: bytes | None
    created: float
    updated: float

    def extra_attributes(self) -> dict[str, Any]:
        """The decoded non-identifier attributes."""
        if self.extra is None:
            return {}
        # Only bytes this process marshalled itself are ever loaded.
        decoded: dict[str, Any] = marshal.loads(self.extra)  # noqa: S302
        return decoded


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
    # Profile id -> tuple(Profile): exact tuples, see the module docstring.
    profiles: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    profile_order: Chunked[str] = field(default_factory=Chunked)
    by_email: dict[str, str] = field(default_factory=dict)
    by_phone: dict[str, str] = field(default_factory=dict)
    by_external_id: dict[str, str] = field(default_factory=dict)
    lists: dict[str, ListRecord] = field(default_factory=dict)
    # Jobs are typed loosely here to keep this module free of sandbox.jobs.
    jobs: dict[str, Any] = field(default_factory=dict)
    job_order: list[Any] = field(default_factory=list)
    active_jobs: list[Any] = field(default_factory=list)

    def allows(self, scopes: frozenset[str]) -> bool:
        return self.scopes is None or scopes <= self.scopes

    def profile(self, profile_id: str) -> Profile | None:
        row = self.profiles.get(profile_id)
        return None if row is None else Profile._make(row)


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
    ) -> str:
        """Create or update one profile and return its id; :class:`RowError` if it cannot.

        This runs once per imported row, so it sticks to plain dict lookups and
        builds the stored tuple directly (see :class:`Profile` for the layout).
        """
        get = attributes.get
        email: str | None = get("email")
        phone: str | None = get("phone_number")
        external_id: str | None = get("external_id")
        email_key = None
        if email is not None:
            email_key = email.lower()
            if email_key == email:
                email_key = email  # one string object for both, not two
        profiles = account.profiles
        target: str | None = None
        if profile_id is not None:
            if profile_id not in profiles:
                raise RowError(f"A profile with id {profile_id} does not exist.")
            target = profile_id
        owner_email = account.by_email.get(email_key) if email_key is not None else None
        owner_phone = account.by_phone.get(phone) if phone is not None else None
        owner_external = (
            account.by_external_id.get(external_id) if external_id is not None else None
        )
        if target is None:
            target = owner_email or owner_phone or owner_external
        if owner_email is not None or owner_phone is not None or owner_external is not None:
            for owner, name in (
                (owner_email, "email"),
                (owner_phone, "phone_number"),
                (owner_external, "external_id"),
            ):
                if owner is not None and owner != target:
                    raise RowError(f"The {name} is already used by another profile ({owner}).")
        update = _extra_update(attributes)
        old = profiles.get(target) if target is not None else None
        if old is None:
            pid = self.ids.ulid(now)
            extra = marshal.dumps(update) if update else None
            # Profiles are never deleted, so the count is the next sequence number.
            profiles[pid] = (pid, len(profiles), email, phone, external_id, extra, now, now)
            account.profile_order.append(pid)
        else:
            pid, seq, old_email, old_phone, old_external, old_extra, created, _ = old
            if email_key is not None and old_email is not None:
                account.by_email.pop(old_email.lower(), None)
            if phone is not None and old_phone is not None:
                account.by_phone.pop(old_phone, None)
            if external_id is not None and old_external is not None:
                account.by_external_id.pop(old_external, None)
            profiles[pid] = (
                pid,
                seq,
                email if email is not None else old_email,
                phone if phone is not None else old_phone,
                external_id if external_id is not None else old_external,
                _merged_extra(old_extra, update),
                created,
                now,
            )
        if email_key is not None:
            account.by_email[email_key] = pid
        if phone is not None:
            account.by_phone[phone] = pid
        if external_id is not None:
            account.by_external_id[external_id] = pid
        return pid

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


def _extra_update(attributes: dict[str, Any]) -> dict[str, Any] | None:
    """The non-null, non-identifier attributes (nulls inside dict attributes dropped).

    Runs once per imported row: a C-level copy and deletes cost less than a
    comprehension over every attribute, and rows rarely hold nulls.
    """
    update = attributes.copy()
    for name in _IDENTIFIERS.intersection(attributes):
        del update[name]
    if None in update.values():
        update = {name: value for name, value in update.items() if value is not None}
    if not update:
        return None
    for name in MERGED_DICT_ATTRIBUTES:
        value = update.get(name)
        if isinstance(value, dict) and None in value.values():
            update[name] = {key: item for key, item in value.items() if item is not None}
    return update


def _merged_extra(old: bytes | None, update: dict[str, Any] | None) -> bytes | None:
    """The ``old`` marshalled attributes with ``update`` applied, marshalled."""
    if not update:
        return old
    merged: dict[str, Any] = marshal.loads(old) if old is not None else {}  # noqa: S302
    for name, value in update.items():
        if name in MERGED_DICT_ATTRIBUTES and isinstance(value, dict):
            value = {**(merged.get(name) or {}), **value}
        merged[name] = value
    return marshal.dumps(merged)
