"""Segments are read as streams, every row is accounted for, and whole-file problems are named."""

from __future__ import annotations

import gzip
import io
import os
import sys
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.errors import ExportError
from producer.sources import RowError, RowSource, SourceError, infer_format, open_source

Rows = list[tuple[int, object]]


def read(path: Path | str, fmt: str | None = None) -> Rows:
    with open_source(str(path), fmt) as source:
        return list(source)


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# -- CSV ---------------------------------------------------------------------------------


def test_csv_rows_are_numbered_from_one_without_the_header(tmp_path: Path) -> None:
    path = write(tmp_path, "s.csv", b"email,first\na@x.co,Ann\nb@x.co,Bob\n")
    assert read(path) == [
        (1, {"email": "a@x.co", "first": "Ann"}),
        (2, {"email": "b@x.co", "first": "Bob"}),
    ]


def test_csv_standard_quoting_crlf_and_multiline_fields(tmp_path: Path) -> None:
    data = b'email,note\r\na@x.co,"one, two"\r\nb@x.co,"say ""hi"""\r\nc@x.co,"line1\nline2"\r\n'
    rows = read(write(tmp_path, "s.csv", data))
    assert [record for _, record in rows] == [
        {"email": "a@x.co", "note": "one, two"},
        {"email": "b@x.co", "note": 'say "hi"'},
        {"email": "c@x.co", "note": "line1\nline2"},
    ]
    assert [row for row, _ in rows] == [1, 2, 3]  # records, not lines


def test_csv_utf8_bom_is_dropped_from_the_first_column(tmp_path: Path) -> None:
    path = write(tmp_path, "s.csv", "\ufeffEmail,Name\na@x.co,José\n".encode())
    with open_source(str(path)) as source:
        assert source.columns == ("Email", "Name")
        assert list(source) == [(1, {"Email": "a@x.co", "Name": "José"})]


def test_csv_blank_lines_are_skipped_but_keep_their_number(tmp_path: Path) -> None:
    rows = read(write(tmp_path, "s.csv", b"email\na@x.co\n\nb@x.co\n"))
    assert rows == [(1, {"email": "a@x.co"}), (3, {"email": "b@x.co"})]


def test_csv_rows_with_the_wrong_field_count_are_yielded_as_errors(tmp_path: Path) -> None:
    data = b"a,b,c,d,e\n1,2,3,4,5\n1,2,3,4,5,6,7\n1,2\n1,2,3,4,5\n"
    rows = read(write(tmp_path, "s.csv", data))
    assert [row for row, _ in rows] == [1, 2, 3, 4]
    assert rows[1] == (2, RowError("expected 5 fields, found 7"))
    assert rows[2] == (3, RowError("expected 5 fields, found 2"))
    assert isinstance(rows[3][1], dict)


def test_csv_unbalanced_quote_reports_its_line_and_reads_the_next_lines_again(
    tmp_path: Path,
) -> None:
    data = b'email,note\na@x.co,"open\nb@x.co,fine\nc@x.co,"q"x\nd@x.co,ok\n'
    rows = read(write(tmp_path, "s.csv", data))
    assert rows == [
        (
            1,
            RowError(
                "line 2: malformed record running on to line 4"
                " (',' expected after '\"': is a quote unbalanced?);"
                " lines 3-4 are read again as rows"
            ),
        ),
        (2, {"email": "b@x.co", "note": "fine"}),
        (3, RowError("unreadable CSV record: ',' expected after '\"'")),  # line 4 on its own
        (4, {"email": "d@x.co", "note": "ok"}),
    ]


def test_csv_quote_left_open_at_the_end_does_not_take_the_last_rows(tmp_path: Path) -> None:
    rows = read(write(tmp_path, "s.csv", b'email,note\na@x.co,"never closed\nb@x.co,1\n'))
    assert rows == [
        (
            1,
            RowError(
                "line 2: malformed record running on to line 3"
                " (unexpected end of data: is a quote unbalanced?); line 3 is read again as a row"
            ),
        ),
        (2, {"email": "b@x.co", "note": "1"}),
    ]


def test_csv_field_over_the_size_limit_rejects_only_that_record(tmp_path: Path) -> None:
    data = b"email,note\na@x.co," + b"x" * 200_000 + b"\nb@x.co,ok\n"
    rows = read(write(tmp_path, "s.csv", data))
    assert isinstance(rows[0][1], RowError)
    assert "field larger than field limit" in rows[0][1].reason
    assert rows[1] == (2, {"email": "b@x.co", "note": "ok"})


def test_csv_header_only_is_an_empty_segment(tmp_path: Path) -> None:
    with open_source(str(write(tmp_path, "s.csv", b"email,name\n"))) as source:
        assert source.columns == ("email", "name")
        assert list(source) == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"a@x.co,Ann\nb@x.co,Bob\n", "looks like data, not a header ('a@x.co')"),
        (b"\nemail\na@x.co\n", "has no header row"),
        (b"email,name,email\n1,2,3\n", "column 'email' appears twice"),
        (b'"email\n', "cannot read the header row"),
    ],
)
def test_csv_header_problems_name_the_file(tmp_path: Path, data: bytes, message: str) -> None:
    path = write(tmp_path, "seg.csv", data)
    with pytest.raises(SourceError) as caught:
        open_source(str(path))
    assert message in str(caught.value)
    assert str(path) in str(caught.value)


def test_source_errors_are_export_errors() -> None:
    # The run code records any ExportError as the reason a run failed.
    assert issubclass(SourceError, ExportError)


# -- JSON Lines ----------------------------------------------------------------------------


def test_jsonl_rows_are_line_numbers_and_blank_lines_are_skipped(tmp_path: Path) -> None:
    data = b'{"email": "a@x.co", "n": 1}\n\n   \n{"email": "b@x.co", "tags": ["x"]}\n'
    assert read(write(tmp_path, "s.jsonl", data)) == [
        (1, {"email": "a@x.co", "n": 1}),
        (4, {"email": "b@x.co", "tags": ["x"]}),
    ]


def test_jsonl_bom_crlf_and_missing_final_newline(tmp_path: Path) -> None:
    data = '\ufeff{"email": "a@x.co"}\r\n{"email": "ü@x.co"}'.encode()
    assert read(write(tmp_path, "s.ndjson", data)) == [
        (1, {"email": "a@x.co"}),
        (2, {"email": "ü@x.co"}),
    ]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"{bad", "not valid JSON: Expecting property name enclosed in double quotes at column 2"),
        (b'{"a": 1} {"b": 2}', "not valid JSON: Extra data at column 10"),
        (b'{"a": NaN}', "not valid JSON: NaN is not allowed"),
        (b'{"email": "a@x.co', "not valid JSON: Invalid control character at column 18"),
        (b"[1, 2]", "expected a JSON object, found an array"),
        (b'"text"', "expected a JSON object, found a string"),
        (b"42", "expected a JSON object, found a number"),
        (b"null", "expected a JSON object, found null"),
        (b"true", "expected a JSON object, found a boolean"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON: nested too deeply"),
    ],
)
def test_jsonl_bad_lines_are_yielded_as_errors(tmp_path: Path, line: bytes, reason: str) -> None:
    data = b'{"email": "a@x.co"}\n' + line + b'\n{"email": "b@x.co"}\n'
    assert read(write(tmp_path, "s.jsonl", data)) == [
        (1, {"email": "a@x.co"}),
        (2, RowError(reason)),
        (3, {"email": "b@x.co"}),
    ]


def test_json_messages_that_end_in_at_say_it_once(tmp_path: Path) -> None:
    # json's "Unterminated string starting at" used to read "... at at column 11".
    rows = read(write(tmp_path, "s.jsonl", b'{"email": "a@x.co'))
    assert rows == [(1, RowError("not valid JSON: Unterminated string starting at column 11"))]


def test_a_json_array_file_is_refused_with_a_hint(tmp_path: Path) -> None:
    path = write(tmp_path, "s.json", b'[\n{"email": "a@x.co"}\n]\n')
    with pytest.raises(SourceError, match="is a JSON array; JSON Lines needs one object per line"):
        read(path)


# -- gzip, formats, stdin -------------------------------------------------------------------


def test_gzip_is_detected_by_content_not_name(tmp_path: Path) -> None:
    csv_data = b"email\na@x.co\n"
    for name, data in [
        ("plain-named.csv", gzip.compress(csv_data)),
        ("not-really.csv.gz", csv_data),
        ("real.csv.gz", gzip.compress(csv_data)),
    ]:
        path = write(tmp_path, name, data)
        with open_source(str(path)) as source:
            assert source.compressed == data.startswith(b"\x1f\x8b")
            assert list(source) == [(1, {"email": "a@x.co"})]


def test_gzip_jsonl_and_multi_member_gzip(tmp_path: Path) -> None:
    data = gzip.compress(b'{"email": "a@x.co"}\n') + gzip.compress(b'{"email": "b@x.co"}\n')
    assert read(write(tmp_path, "s.jsonl.gz", data)) == [
        (1, {"email": "a@x.co"}),
        (2, {"email": "b@x.co"}),
    ]


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("seg.csv", "csv"),
        ("SEG.CSV.GZ", "csv"),
        ("a.b/seg.csv.gzip", "csv"),
        ("seg.jsonl", "jsonl"),
        ("seg.ndjson", "jsonl"),
        ("seg.json", "jsonl"),
        ("seg.jsonl.gz", "jsonl"),
    ],
)
def test_format_is_inferred_from_the_name(name: str, fmt: str) -> None:
    assert infer_format(name) == fmt


@pytest.mark.parametrize("name", ["seg.txt", "seg.gz", "segment", "-"])
def test_unknown_names_ask_for_format(name: str) -> None:
    with pytest.raises(SourceError, match="pass --format csv or jsonl"):
        infer_format(name)


def test_explicit_format_wins_and_unknown_formats_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "seg.txt", b'{"email": "a@x.co"}\n')
    assert read(path, "jsonl") == [(1, {"email": "a@x.co"})]
    with pytest.raises(SourceError, match="unknown format 'xml'"):
        open_source(str(path), "xml")


class _Trickle(io.RawIOBase):
    """A pipe that hands over one byte per read, the worst case for sniffing gzip."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if not self._data:
            return 0
        buffer[:1] = self._data[:1]
        self._data = self._data[1:]
        return 1


class _Stdin:
    def __init__(self, raw: io.RawIOBase) -> None:
        self.buffer = io.BufferedReader(raw, buffer_size=1)


def test_stdin_is_read_as_bytes_and_gzip_is_sniffed_from_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = gzip.compress(b"email\na@x.co\nb@x.co\n")
    stdin = _Stdin(_Trickle(data))
    monkeypatch.setattr(sys, "stdin", stdin)
    with open_source("-", "csv") as source:
        assert source.name == "standard input"
        assert source.compressed
        assert [row for row, _ in source] == [1, 2]
    assert not stdin.buffer.closed  # stdin is not ours to close


def test_stdin_needs_a_format(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", _Stdin(_Trickle(b"email\n")))
    with pytest.raises(SourceError, match="standard input"):
        open_source("-")


# -- whole-file errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data"),
    [("e.csv", b""), ("e.jsonl", b""), ("e.csv.gz", gzip.compress(b"")), ("e.jsonl", b"\x1f")],
)
def test_empty_input_is_an_error_naming_the_file(tmp_path: Path, name: str, data: bytes) -> None:
    path = write(tmp_path, name, data)
    if data == b"\x1f":  # a single byte is not gzip and not empty: one bad line
        assert read(path) == [(1, RowError("not valid JSON: Expecting value at column 1"))]
        return
    with pytest.raises(SourceError, match=f"{path} is empty"):
        open_source(str(path))


def test_unreadable_paths_are_errors_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"cannot open .*missing\.csv: No such file"):
        open_source(str(tmp_path / "missing.csv"))
    folder = tmp_path / "dir.csv"
    folder.mkdir()
    with pytest.raises(SourceError, match=r"cannot open .*dir\.csv"):
        open_source(str(folder))


@pytest.mark.parametrize(
    ("name", "data", "where"),
    [
        ("s.csv", b"email\na@x.co\nb\xff@x.co\n", "row 2 is not valid UTF-8"),
        ("s.csv", b"em\xe9il\na@x.co\n", "line 1 is not valid UTF-8"),
        ("s.jsonl", b'{"a": 1}\n\n{"a": "\xc3"}\n', "line 3 is not valid UTF-8"),
        ("s.csv.gz", gzip.compress(b"email\na@x.co\n\xfe\n"), "row 2 is not valid UTF-8"),
    ],
)
def test_bad_utf8_is_an_error_naming_file_and_row(
    tmp_path: Path, name: str, data: bytes, where: str
) -> None:
    path = write(tmp_path, name, data)
    with pytest.raises(SourceError) as caught:
        read(path)
    assert str(caught.value).startswith(f"{path}: {where}")


def test_truncated_gzip_is_an_error_naming_file_and_last_row(tmp_path: Path) -> None:
    whole = gzip.compress(b"email\n" + b"".join(b"u%d@x.co\n" % i for i in range(50_000)))
    path = write(tmp_path, "cut.csv.gz", whole[: len(whole) // 2])
    got: list[int] = []

    def drain() -> None:
        with open_source(str(path)) as source:
            got.extend(row for row, _ in source)

    with pytest.raises(SourceError) as caught:
        drain()
    assert len(got) > 0
    assert f"cannot read {path} past row {got[-1]}" in str(caught.value)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_files_are_closed_after_use_and_after_errors(tmp_path: Path) -> None:
    good = write(tmp_path, "g.csv.gz", gzip.compress(b"email\na@x.co\n"))
    bad = write(tmp_path, "b.csv", b"a@x.co\n")
    before = _open_fds()
    for _ in range(20):
        read(good)
        with pytest.raises(SourceError):
            open_source(str(bad))
    assert _open_fds() == before


# -- streaming ----------------------------------------------------------------------------------


def _segment_lines(rows: int) -> Iterator[bytes]:
    yield b"email,first_name,plan,notes\n"
    filler = b"n" * 250
    for i in range(rows):
        yield b"user%d@example.com,Name%d,pro,%s\n" % (i, i, filler)


def test_reading_a_large_gzip_segment_keeps_memory_flat(tmp_path: Path) -> None:
    path = tmp_path / "big.csv.gz"
    rows = 60_000
    with gzip.open(path, "wb", compresslevel=1) as out:
        size = sum(out.write(line) for line in _segment_lines(rows))
    assert size > 15_000_000

    tracemalloc.start()
    try:
        count = 0
        with open_source(str(path)) as source:
            for _, record in source:
                count += isinstance(record, dict)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == rows
    print(f"peak {peak:,} bytes traced while reading {size:,} bytes")
    assert peak < 1_000_000, f"peak {peak:,} bytes while reading {size:,} bytes"


def test_row_source_accepts_any_binary_stream() -> None:
    source = RowSource("memory", io.BytesIO(b"email\na@x.co\n"), "csv", owns_stream=False)
    assert list(source) == [(1, {"email": "a@x.co"})]
