"""Handlers for accounts, lists, list membership and profiles, by operationId.

Routing itself (path templates, methods) comes from the spec; this module
only maps each operationId to the function that answers it. Bulk import
handlers live in :mod:`sandbox.routes_jobs`; the server merges both tables.

What each handler implements beyond the obvious, and the choices made where
Klaviyo's behaviour is not documented:

* filters: ``get_profiles`` evaluates ``id``, ``email``, ``phone_number`` and
  ``external_id`` (``equals``/``any``); list member endpoints evaluate
  ``email`` and ``phone_number``; ``get_lists`` evaluates ``id`` and
  ``name``. Emails compare case-insensitively. Other fields the spec allows
  are refused with a 400 saying the sandbox does not implement them.
* sorting: ``get_lists`` sorts by any declared key; profile collections only
  in their natural order (``created`` for profiles, ``joined_group_at`` for
  members), any other declared sort is refused with a 400.
* adding or removing list members takes at most 1,000 profile ids (the spec's
  limit); an unknown profile id is a 400 pointing at it; removing a
  non-member and adding a member again change nothing.
* ``include`` values the spec allows but the sandbox has no data for (tags,
  flow triggers, conversations, push tokens) answer an empty ``included``.
"""

from __future__ import annotations

from sandbox.context import Answer, Context, Handler, document, registrar
from sandbox.errors import invalid_pointer, not_found
from sandbox.filters import string_values
from sandbox.pagination import page_list, page_sorted
from sandbox.resources import (
    account_resource,
    identifier,
    list_resource,
    profile_resource,
)
from sandbox.store import Account, ListRecord, Profile

HANDLERS: dict[str, Handler] = {}
handles = registrar(HANDLERS)

MAX_MEMBERS_PER_CALL = 1000


@handles("get_accounts")
def get_accounts(ctx: Context) -> Answer:
    return document(ctx, [account_resource(ctx.account, ctx.base_url)], {"self": ctx.self_link()})


@handles("get_account")
def get_account(ctx: Context) -> Answer:
    if ctx.path_params["id"] != ctx.account.id:
        raise not_found(f"An account with id {ctx.path_params['id']} does not exist.")
    return document(ctx, account_resource(ctx.account, ctx.base_url), {"self": ctx.self_link()})


def _list_or_404(account: Account, list_id: str) -> ListRecord:
    record = account.lists.get(list_id)
    if record is None:
        raise not_found(f"A list with id {list_id} does not exist.")
    return record


@handles("get_lists")
def get_lists(ctx: Context) -> Answer:
    conditions = ctx.conditions(frozenset({"id", "name"}))
    ids = string_values(conditions, "id")
    names = string_values(conditions, "name")
    start, size = ctx.page()
    sort = ctx.value("sort")
    with ctx.locked():
        records = [
            record
            for record in ctx.account.lists.values()
            if (ids is None or record.id in ids) and (names is None or record.name in names)
        ]
        if sort:
            key = sort.lstrip("-")
            records.sort(key=lambda record: getattr(record, key), reverse=sort.startswith("-"))
        chunk, next_seq = page_list(records, start, size)
        data = [list_resource(record, ctx.base_url, ctx.app.clock) for record in chunk]
    return document(ctx, data, ctx.links(next_seq))


@handles("get_list")
def get_list(ctx: Context) -> Answer:
    count = "profile_count" in ctx.values("additional-fields[list]")
    with ctx.locked():
        record = _list_or_404(ctx.account, ctx.path_params["id"])
        data = list_resource(record, ctx.base_url, ctx.app.clock, profile_count=count)
    return document(ctx, data, {"self": ctx.self_link()})


def _matching_profiles(
    account: Account, ctx: Context, fields: frozenset[str]
) -> list[Profile] | None:
    """Profiles the filter allows (None when it allows all), via the indexes."""
    conditions = ctx.conditions(fields)
    if not conditions:
        return None
    found: set[str] | None = None
    for name, index in (
        ("id", None),
        ("email", account.by_email),
        ("phone_number", account.by_phone),
        ("external_id", account.by_external_id),
    ):
        values = string_values(conditions, name)
        if values is None:
            continue
        if index is None:
            matched = {value for value in values if value in account.profiles}
        else:
            keys = (value.lower() for value in values) if name == "email" else iter(values)
            matched = {pid for key in keys if (pid := index.get(key)) is not None}
        found = matched if found is None else found & matched
    if found is None:
        return None
    return [Profile._make(account.profiles[pid]) for pid in found]


def _member_page(ctx: Context, record: ListRecord) -> tuple[list[str], int | None]:
    sort = ctx.value("sort")
    if sort not in (None, "joined_group_at"):
        raise ctx.not_implemented(f"sorting list members by {sort}", "sort")
    start, size = ctx.page()
    matches = _matching_profiles(ctx.account, ctx, frozenset({"email", "phone_number"}))
    if matches is None:
        return record.members.page(start, size)
    members = record.members
    ordered = sorted(
        (seq, profile.id) for profile in matches if (seq := members.seq(profile.id)) is not None
    )
    return page_sorted(ordered, start, size)


@handles("get_profile_ids_for_list")
def get_profile_ids_for_list(ctx: Context) -> Answer:
    with ctx.locked():
        record = _list_or_404(ctx.account, ctx.path_params["id"])
        ids, next_seq = _member_page(ctx, record)
    return document(ctx, [identifier("profile", pid) for pid in ids], ctx.links(next_seq))


@handles("get_profiles_for_list")
def get_profiles_for_list(ctx: Context) -> Answer:
    additional = ctx.values("additional-fields[profile]")
    clock = ctx.app.clock
    with ctx.locked():
        record = _list_or_404(ctx.account, ctx.path_params["id"])
        ids, next_seq = _member_page(ctx, record)
        data = [
            profile_resource(
                Profile._make(ctx.account.profiles[pid]),
                ctx.base_url,
                clock,
                joined=record.members.added_at(pid),
                additional=additional,
            )
            for pid in ids
        ]
    return document(ctx, data, ctx.links(next_seq))


def _member_ids(ctx: Context) -> list[str]:
    body = ctx.json_body()
    items = body.get("data") if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise invalid_pointer("'data' is required and must be an array.", "/data")
    if len(items) > MAX_MEMBERS_PER_CALL:
        raise invalid_pointer(
            f"At most {MAX_MEMBERS_PER_CALL} profiles per call; {len(items)} were sent.", "/data"
        )
    ids: list[str] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or item.get("type") != "profile":
            raise invalid_pointer("Each item must be {type: 'profile', id}.", f"/data/{index}")
        if not isinstance(item.get("id"), str):
            raise invalid_pointer("'id' is required and must be a string.", f"/data/{index}/id")
        ids.append(item["id"])
    return ids


def _change_membership(ctx: Context, add: bool) -> Answer:
    ids = _member_ids(ctx)
    with ctx.locked():
        record = _list_or_404(ctx.account, ctx.path_params["id"])
        for index, profile_id in enumerate(ids):
            if profile_id not in ctx.account.profiles:
                raise invalid_pointer(
                    f"A profile with id {profile_id} does not exist.", f"/data/{index}/id"
                )
        ctx.app.store.set_membership(ctx.account, record, ids, add)
    return Answer(204)


@handles("add_profiles_to_list")
def add_profiles_to_list(ctx: Context) -> Answer:
    return _change_membership(ctx, add=True)


@handles("remove_profiles_from_list")
def remove_profiles_from_list(ctx: Context) -> Answer:
    return _change_membership(ctx, add=False)


@handles("get_profiles")
def get_profiles(ctx: Context) -> Answer:
    sort = ctx.value("sort")
    if sort not in (None, "created"):
        raise ctx.not_implemented(f"sorting profiles by {sort}", "sort")
    additional = ctx.values("additional-fields[profile]")
    start, size = ctx.page()
    implemented = frozenset({"id", "email", "phone_number", "external_id"})
    with ctx.locked():
        matches = _matching_profiles(ctx.account, ctx, implemented)
        if matches is None:
            ids, next_seq = page_list(ctx.account.profile_order, start, size)
            chunk = [Profile._make(ctx.account.profiles[pid]) for pid in ids]
        else:
            ordered = sorted(((profile.seq, profile) for profile in matches), key=lambda p: p[0])
            chunk, next_seq = page_sorted(ordered, start, size)
        data = [
            profile_resource(profile, ctx.base_url, ctx.app.clock, additional=additional)
            for profile in chunk
        ]
    return document(ctx, data, ctx.links(next_seq))
