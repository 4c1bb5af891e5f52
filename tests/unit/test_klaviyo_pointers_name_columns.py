"""A row Klaviyo failed names the segment's column, not a pointer into a batch.

Klaviyo says where a row went wrong with a JSON pointer into the body we sent
(``/data/attributes/profiles/data/3/attributes/email``); ``rejected RUN_ID``
shows the column of the export's segment instead (the email field, or the
column mapped to that attribute or property), and keeps the pointer when it
cannot tell, or when the export is gone.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from core.batch_store import StoredBatch
from core.context import Context
from core.pointers import source_field
from core.records import ExportSpec
from klaviyo_client import ImportErrorItem
from worker.upload import _record_job_outcome

ROW = "/data/attributes/profiles/data/3"
PROPERTIES = {
    "First": "first_name",
    "Phone": "phone_number",
    "Where": "location",
    "Tier": "tier",
    "Path": "a/b~c",
}


@pytest.mark.parametrize(
    ("pointer", "column"),
    [
        (f"{ROW}/attributes/email", "Email"),
        (f"{ROW}/attributes/first_name", "First"),
        (f"{ROW}/attributes/phone_number", "Phone"),
        (f"{ROW}/attributes/location", "Where"),
        (f"{ROW}/attributes/location/city", "Where"),
        (f"{ROW}/attributes/properties/tier", "Tier"),
        (f"{ROW}/attributes/properties/a~1b~0c", "Path"),  # RFC 6901 escapes
        (f"{ROW}/attributes/properties/a/b~0c", "Path"),  # a pointer built without escaping
        ("/data/attributes/profiles/data/12/attributes/email", "Email"),
        (ROW, None),  # the whole profile: no one column is at fault
        (f"{ROW}/attributes", None),
        (f"{ROW}/attributes/properties", None),
        (None, None),
        ("", None),
    ],
)
def test_pointers_become_columns(pointer: str | None, column: str | None) -> None:
    assert source_field(pointer, "Email", PROPERTIES) == column


@pytest.mark.parametrize(
    "pointer",
    [
        f"{ROW}/attributes/last_name",  # no column maps to it
        f"{ROW}/attributes/properties/plan",
        f"{ROW}/id",
        "/data/attributes/profiles/data/x/attributes/email",
        "/data/relationships/lists/data/0/id",
        "/data/",
        "data/attributes/profiles/data/3/attributes/email",
    ],
)
def test_pointers_it_cannot_read_are_kept(pointer: str) -> None:
    assert source_field(pointer, "Email", PROPERTIES) == pointer


def _failed(pointer: str, email: str) -> ImportErrorItem:
    payload = {"type": "profile", "attributes": {"email": email}}
    return ImportErrorItem("id1", "invalid", "Invalid input.", "Bad value.", pointer, payload)


def _recorded_fields(ctx: Context, remove_export: bool) -> list[object]:
    connection = ctx.store.add_connection(
        name="c",
        api_key="pk_" + "a" * 34,
        allow="contributors",
        created_by="t",
        account_id=None,
        verified_via=None,
        accepted_terms=True,
    )
    spec = ExportSpec(
        name="e",
        connection_id=connection.id,
        list_id="L1",
        email_field="Email",
        properties={"First": "first_name", "Tier": "tier"},
    )
    export = ctx.store.add_export(spec, created_by="t")
    run_id = ctx.lifecycle.create(export.id, "seg.csv", "t", connection.id, "L1")
    batch = StoredBatch(run_id, 0, b"[]", [7, 8, 9], ["a@x.co", "b@x.co", "c@x.co"], ["d"] * 3)
    ctx.batches.store(batch)
    ctx.lifecycle.begin_upload(run_id, rows_read=3, submitted=3, batches=1)
    if remove_export:
        ctx.store.remove_export(export.id)
    errors = [
        _failed("/data/attributes/profiles/data/0/attributes/email", "a@x.co"),
        _failed("/data/attributes/profiles/data/2/attributes/properties/tier", "c@x.co"),
    ]
    _record_job_outcome(ctx, batch, "J1", errors)
    return [(row["row"], row["field"]) for row in ctx.reports.failed_rows(run_id)]


def test_the_worker_records_the_column_of_a_failed_row(
    make_context: Callable[..., Context],
) -> None:
    assert _recorded_fields(make_context(), remove_export=False) == [(7, "Email"), (9, "Tier")]


def test_the_pointer_is_kept_when_the_export_was_removed(
    make_context: Callable[..., Context],
) -> None:
    assert _recorded_fields(make_context(), remove_export=True) == [
        (7, "/data/attributes/profiles/data/0/attributes/email"),
        (9, "/data/attributes/profiles/data/2/attributes/properties/tier"),
    ]
