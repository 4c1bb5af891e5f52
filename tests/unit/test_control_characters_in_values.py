"""A mapped value holding a control character rejects its row, naming the column.

The rule (producer/profiles.py's docstring): U+0000-U+0008, U+000B, U+000C,
U+000E-U+001F and U+007F-U+009F are refused, at any depth of a JSON value;
tab, line feed and carriage return are kept.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from core.store import Export
from producer.profiles import INVALID_VALUE, MappedProfile, ProfileMapper, Rejection
from producer.segment import Rejected, checked_rows

MAPPER = ProfileMapper("email", {"first": "first_name", "tier": "tier", "loc": "location"})


def result_for(**values: Any) -> MappedProfile | Rejection:
    return MAPPER.map(5, {"email": "a@x.co", **values})


@pytest.mark.parametrize("char", ["\x00", "\x01", "\x08", "\x0b", "\x0c", "\x1b", "\x1f"])
@pytest.mark.parametrize("column", ["first", "tier"])
def test_c0_controls_reject_the_row_naming_column_and_character(char: str, column: str) -> None:
    result = result_for(**{column: f"An{char}n"})
    assert result == Rejection(
        5,
        column,
        f"{column!r} holds a control character (U+{ord(char):04X}); control characters"
        " other than tab and line breaks are refused",
        INVALID_VALUE,
    )


@pytest.mark.parametrize("char", ["\x7f", "\x80", "\x85", "\x9f"])
def test_del_and_c1_controls_are_refused_too(char: str) -> None:
    result = result_for(first=f"Jos{char}e")
    assert isinstance(result, Rejection)
    assert (result.field, result.code) == ("first", INVALID_VALUE)
    assert f"U+{ord(char):04X}" in result.reason


@pytest.mark.parametrize(
    "value",
    [
        ["ok", "bad\x00"],
        {"k": "bad\x00"},
        {"bad\x00key": 1},
        {"deep": [{"x": "\x1b[31m"}]},
    ],
)
def test_controls_inside_json_values_are_found(value: object) -> None:
    result = result_for(tier=value)
    assert isinstance(result, Rejection)
    assert (result.field, result.code) == ("tier", INVALID_VALUE)


def test_controls_in_a_location_object_are_found() -> None:
    result = result_for(loc={"city": "Os\x00lo"})
    assert isinstance(result, Rejection)
    assert (result.field, result.code) == ("loc", INVALID_VALUE)


def test_tab_and_line_breaks_and_unusual_printable_text_are_kept() -> None:
    text = "line 1\r\nline\t2\n\u00a0nbsp \u200dzwj \U0001f469\u200d\U0001f4bb \u2028sep \u00adshy"
    result = result_for(first="Ann", tier=text, loc={"city": "Tab\tbed"})
    assert isinstance(result, MappedProfile), result
    attributes = json.loads(result.profile_json)["attributes"]
    assert attributes["properties"]["tier"] == text
    assert attributes["location"] == {"city": "Tab\tbed"}


def test_the_reason_does_not_echo_the_value() -> None:
    result = result_for(first="secret\x00value")
    assert isinstance(result, Rejection)
    assert "secret" not in result.reason


def test_a_csv_row_with_a_nul_is_rejected_and_the_next_row_goes_on(tmp_path: Path) -> None:
    segment = tmp_path / "s.csv"
    segment.write_bytes(b"email,name\na@x.co,An\x00n\nb@x.co,Bob\n")
    export = Export(
        id="e_1",
        name="t",
        connection_id="c_1",
        list_id="L",
        email_field="email",
        properties={"name": "first_name"},
    )
    outcomes = list(checked_rows(export, str(segment), None))
    assert isinstance(outcomes[0], Rejected)
    assert (outcomes[0].row, outcomes[0].field, outcomes[0].code) == (1, "name", INVALID_VALUE)
    assert isinstance(outcomes[1], MappedProfile)
