"""Rows that used to be lost or refused late are accounted for, through the CLI.

One segment holds a stray quote, internationalised domains, a non-ASCII local
part, a NUL in a value and a phone number Klaviyo refuses. Run as a user runs
it (real workers, the sandbox over HTTP): every physical line is a row; the
stray quote costs its own row only; IDN addresses are imported in ASCII form;
what Klaviyo would refuse for its email is rejected before upload; the one row
the sandbox fails is listed with the segment's column, not a JSON pointer.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.pipeline import LIST_ID, Pipeline, pipeline
from tests.support.services import redis_server


@pytest.fixture(scope="module")
def kx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    tmp = tmp_path_factory.mktemp("refused")
    with redis_server() as url, pipeline(url, tmp) as running:
        yield running


def _segment(path: Path) -> None:
    lines = ["email,First,Phone"]
    lines += [f"user{i}@example.com,Name{i}," for i in range(1, 21)]
    lines[8] = 'user8@example.com,"Stray,'  # row 8, line 9: a quote that never closes
    lines += [
        "user@bücher.de,Idn,",  # row 21
        "user@例え.jp,Jp,",  # row 22
        "jörg@example.com,NonAscii,",  # row 23: Klaviyo takes only ASCII before the '@'
        "nul@example.com,An\x00n,",  # row 24: a NUL in a value
        "phone@example.com,Phil,12345",  # row 25: Klaviyo refuses the phone number
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_every_row_is_accounted_for_and_named_by_its_column(kx: Pipeline, tmp_path: Path) -> None:
    segment = tmp_path / "segment.csv"
    _segment(segment)
    export_id = kx.add_export(
        kx.add_connection(),
        LIST_ID,
        "--property",
        "First:first_name",
        "--property",
        "Phone:phone_number",
    )
    code, summary = kx.cli_json("run", export_id, "--source", str(segment), "--wait")

    counts = summary["counts"]
    assert counts["rows_read"] == 25  # every physical data line
    assert counts["rejected_by_reason"] == {
        "malformed_row": 1,
        "invalid_email": 1,
        "invalid_value": 1,
    }
    assert counts["submitted"] == 22
    assert (counts["imported"], counts["failed"]) == (21, 1)
    assert (summary["status"], code) == ("partially_succeeded", 1)

    report = kx.cli("rejected", summary["run_id"], check=True).stdout
    rows = {int(r["row"]): r for r in csv.DictReader(io.StringIO(report))}
    assert sorted(rows) == [8, 23, 24, 25]
    assert (rows[8]["stage"], rows[8]["code"]) == ("checks", "malformed_row")
    assert rows[8]["reason"].startswith("line 9: malformed record")
    assert (rows[23]["stage"], rows[23]["field"], rows[23]["code"]) == (
        "checks",
        "email",
        "invalid_email",
    )
    assert "outside ASCII" in rows[23]["reason"]
    assert (rows[24]["stage"], rows[24]["field"], rows[24]["code"]) == (
        "checks",
        "First",
        "invalid_value",
    )
    assert "U+0000" in rows[24]["reason"]
    # The sandbox failed one row, for its phone number, and the report names
    # the column; no row failed at the sandbox for its email.
    assert (rows[25]["stage"], rows[25]["field"]) == ("klaviyo", "Phone")
    assert all("email" not in r["reason"].lower() for r in rows.values() if r["stage"] == "klaviyo")

    listed = set(kx.list_emails(LIST_ID))
    assert {"user@xn--bcher-kva.de", "user@xn--r8jz45g.jp"} <= listed
    assert {f"user{i}@example.com" for i in range(1, 21) if i != 8} <= listed
