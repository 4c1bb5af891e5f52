"""A stray quote in a CSV costs one row, never the rows after it.

A quoted field may hold line breaks, so an unbalanced quote used to make one
malformed record of every line up to the next quote (or the end of the file),
and those rows were never counted. Now the malformed record's first line is
reported and the lines after it are read again as records. The reader is
checked against a slow, obvious reference on random inputs, with the replay
window made tiny so that its catching up is exercised at every boundary.
"""

from __future__ import annotations

import csv
import io
import random
import re

import pytest

import producer.sources as sources
from producer.sources import RowError, RowSource

Item = tuple[int, object]


def read(data: bytes) -> list[Item]:
    return list(RowSource("memory", io.BytesIO(data), "csv", owns_stream=False))


def segment(rows: int, broken: dict[int, bytes]) -> bytes:
    """A CSV of ``rows`` rows (row i on line i + 1); ``broken`` replaces some names."""
    lines = [b"email,first_name\n"]
    lines += [b"u%d@x.co,%s\n" % (i, broken.get(i, b"N%d" % i)) for i in range(1, rows + 1)]
    return b"".join(lines)


def test_a_stray_quote_on_row_8_of_20_costs_only_row_8() -> None:
    rows = read(segment(20, {8: b'"Stray'}))
    assert [row for row, _ in rows] == list(range(1, 21))
    assert rows[7] == (
        8,
        RowError(
            "line 9: malformed record running on to line 21"
            " (unexpected end of data: is a quote unbalanced?); lines 10-21 are read again as rows"
        ),
    )
    records = [item for _, item in rows if isinstance(item, dict)]
    assert [r["email"] for r in records] == [f"u{i}@x.co" for i in range(1, 21) if i != 8]


def test_stray_quotes_far_into_a_large_file_and_in_a_row() -> None:
    # Beyond the replay window's catch-up points, and one broken record right
    # after another (each resync starts inside the lines read again).
    broken = {1500: b'"a', 1501: b'b"c', 1502: b'"d', 3000: b'"e'}
    rows = read(segment(4000, broken))
    assert [row for row, _ in rows] == list(range(1, 4001))
    errors = {row for row, item in rows if isinstance(item, RowError)}
    assert errors == {1500, 1502, 3000}  # 1501 reads on its own: a quote mid-field is text
    assert rows[1500] == (1501, {"email": "u1501@x.co", "first_name": 'b"c'})


def test_a_stray_quote_that_meets_the_field_size_limit_still_costs_one_row() -> None:
    lines = [b"email,note\n", b'a@x.co,"open\n']
    lines += [b"u%d@x.co,%s\n" % (i, b"n" * 100) for i in range(2000)]  # > 128 KB of lines
    rows = read(b"".join(lines))
    assert len(rows) == 2001
    assert isinstance(rows[0][1], RowError)
    assert "field larger than field limit" in rows[0][1].reason
    assert all(isinstance(item, dict) for _, item in rows[1:])


def test_quoted_fields_over_several_lines_are_still_one_record() -> None:
    data = b'email,note\na@x.co,"line1\nline2, with comma\n""quoted"""\nb@x.co,plain\n'
    assert read(data) == [
        (1, {"email": "a@x.co", "note": 'line1\nline2, with comma\n"quoted"'}),
        (2, {"email": "b@x.co", "note": "plain"}),
    ]


def test_gzipped_input_is_resynchronised_too() -> None:
    import gzip

    rows = read(gzip.compress(segment(30, {3: b'"x'})))
    assert [row for row, _ in rows] == list(range(1, 31))
    assert [row for row, item in rows if isinstance(item, RowError)] == [3]


def _physical_lines(text: str) -> list[str]:
    # As the reader splits: on "\n" only, keeping it (a "\r\n" stays whole).
    return re.findall(r"[^\n]*\n|[^\n]+$", text)


def _reference(text: str) -> list[Item]:
    """Parse one record at a time from a line index; a malformed record that
    spans lines costs its first line only, and parsing restarts on the next."""
    lines = _physical_lines(text)
    header = next(csv.reader(lines[:1]))
    out: list[Item] = []
    index, row = 1, 0
    while index < len(lines):
        reader = csv.reader(iter(lines[index:]), strict=True)
        try:
            fields = next(reader)
            bad = bool(fields) and len(fields) != len(header)
        except StopIteration:
            break
        except csv.Error:
            bad = True
        spanned = reader.line_num > 1
        row += 1
        if bad:
            out.append((row, ("error", index + 1 if spanned else None)))
            index += 1 if spanned else reader.line_num
            continue
        if fields:
            out.append((row, dict(zip(header, fields, strict=True))))
        index += reader.line_num
    return out


def _ours(text: str) -> list[Item]:
    got: list[Item] = []
    for row, item in read(text.encode()):
        if isinstance(item, RowError):
            found = re.match(r"line (\d+): malformed record running on", item.reason)
            got.append((row, ("error", int(found.group(1)) if found else None)))
        else:
            got.append((row, item))
    return got


@pytest.mark.parametrize("window", [1, 2, 3, 512])
def test_random_inputs_match_the_reference(monkeypatch: pytest.MonkeyPatch, window: int) -> None:
    monkeypatch.setattr(sources, "_CSV_REPLAY_ROWS", window)
    rng = random.Random(window)
    pieces = ["a", "b", ",", '"', '""', "\n", "\r\n", "x y", '"q"', ',"m\nn",', "\n\n"]
    spanning = 0  # inputs with a malformed record over several lines: the case at stake
    for _ in range(1500):
        body = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 40)))
        text = "h1,h2\n" + body
        expected = _reference(text)
        assert _ours(text) == expected, repr(text)
        spanning += any(item[1] is not None for _, item in expected if isinstance(item, tuple))
    assert spanning > 100


def test_every_physical_line_starts_a_row_or_sits_in_an_accepted_record() -> None:
    rng = random.Random(99)
    for _ in range(300):
        lines = ["email,n\n"]
        for i in range(rng.randint(1, 60)):
            name = rng.choice(["N", '"open', 'mid"quote', '"closed"', '"x""y"'])
            lines.append(f"u{i}@x.co,{name}\n")
        text = "".join(lines)
        rows = read(text.encode())
        covered = 0
        for _, item in rows:
            assert isinstance(item, RowError | dict)
            if isinstance(item, RowError):
                covered += 1
            else:
                covered += 1 + str(item["n"]).count("\n")  # an accepted multi-line field
        assert covered == len(lines) - 1, text
