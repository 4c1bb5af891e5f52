"""Read a customer segment (CSV or JSON Lines, plain or gzipped) as a stream of records.

Segments can hold millions of rows, so nothing here ever reads the whole input:
bytes are pulled through a buffered reader (and ``gzip`` when the input starts
with gzip's magic bytes, whatever its name), one record at a time.

Iterating a :class:`RowSource` yields ``(row_number, item)`` where ``item`` is
either the record (``dict[str, Any]``) or a :class:`RowError`. A record that
cannot be parsed is yielded as a ``RowError`` in its place, never dropped and
never fatal, so every row of the input is accounted for. Only problems with the
input as a whole (it cannot be opened, it is empty, a CSV has no header, bytes
that are not UTF-8, a gzip stream that is cut short) raise :class:`SourceError`,
whose message names the input and, where it applies, the row.

CSV is read with ``newline=""`` semantics and standard (excel) quoting, in
strict mode: text after a closing quote, or a quote left open at the end of the
input, is an error for that record rather than a silent fold of the following
lines into a field. A quoted field may hold line breaks, so one stray quote
would otherwise make one record of every line up to the next quote: when a
record that spans several lines turns out malformed (unreadable, or the wrong
number of fields), only its first line is reported, as a ``RowError`` naming
that line, and the lines after it are read again as records of their own. So
every physical line ends up in a record that is yielded: nothing is folded
away. What the format cannot tell apart stays as it is: a stray quote that
happens to close on a later line in a record with the right number of fields
reads as a legitimate quoted multi-line field.

Row numbers are 1-based data record numbers: for CSV the header is not counted
(a quoted field may span lines, so a record is not always a line); for JSON
Lines a row number is the line number. Blank lines are skipped but keep their
number, so the numbers of later rows still match what an editor shows.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import sys
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, Final, cast

# The exporter's own error for a source that cannot be read (an ExportError, so
# a run that hits one is recorded as failed with this message).
from core.errors import SourceError

if TYPE_CHECKING:
    from _csv import Reader as _CsvReader
    from types import TracebackType

    from _typeshed import WriteableBuffer

__all__ = ["FORMATS", "STDIN", "Record", "RowError", "RowSource", "SourceError", "open_source"]

Record = dict[str, Any]

FORMATS: Final = ("csv", "jsonl")
STDIN: Final = "-"

_GZIP_MAGIC: Final = b"\x1f\x8b"
_BOM: Final = "\ufeff"
_READ_BUFFER: Final = 1 << 16
_FORMAT_BY_SUFFIX: Final = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
_COMPRESSED_SUFFIXES: Final = (".gz", ".gzip")
_READ_ERRORS: Final = (OSError, EOFError, zlib.error)
# The CSV reader keeps the lines of about this many recent records (a tee), so
# that a malformed record spanning lines can be read again line by line. Small
# enough to keep memory flat, large enough that catching up costs nothing.
_CSV_REPLAY_ROWS: Final = 512
_drain: Final[Callable[[Iterable[str]], None]] = deque[str](maxlen=0).extend  # consumes, in C


@dataclass(frozen=True, slots=True)
class RowError:
    """A record that could not be parsed, yielded in its place so it is counted, not lost."""

    reason: str


def _reject_constant(name: str) -> Any:
    # json accepts NaN/Infinity by default; they are not JSON and Klaviyo would
    # refuse the whole batch, so such a line becomes a RowError here.
    raise ValueError(f"{name} is not allowed")


_JSON: Final = json.JSONDecoder(parse_constant=_reject_constant)
_JSON_SPACE: Final = " \t\r\n"  # what JSON calls whitespace (str.strip takes more)
_JSON_KINDS: Final = {list: "an array", str: "a string", int: "a number", float: "a number"}


def infer_format(path: str) -> str:
    """The format a file name implies (``csv`` or ``jsonl``), ignoring a ``.gz`` suffix."""
    if path == STDIN:
        raise SourceError("cannot tell the format of standard input; pass --format csv or jsonl")
    name = path.lower()
    for suffix in _COMPRESSED_SUFFIXES:
        name = name.removesuffix(suffix)
    for suffix, fmt in _FORMAT_BY_SUFFIX.items():
        if name.endswith(suffix):
            return fmt
    raise SourceError(f"cannot tell the format of {path} from its name; pass --format csv or jsonl")


class _Prefixed(io.RawIOBase):
    """A raw stream that replays bytes already read (the magic-byte sniff) before the rest.

    ``peek`` on a pipe may return a single byte, so the sniff reads for real and
    this puts the bytes back, which works for stdin and files alike.
    """

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        super().__init__()
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        if self._head:
            count = min(len(view), len(self._head))
            view[:count] = self._head[:count]
            self._head = self._head[count:]
            return count
        data = self._rest.read(len(view))
        view[: len(data)] = data
        return len(data)


def _read_head(stream: IO[bytes], size: int) -> bytes:
    head = b""
    while len(head) < size:
        chunk = stream.read(size - len(head))
        if not chunk:
            break
        head += chunk
    return head


class RowSource:
    """One pass over a segment; iterate for ``(row_number, record | RowError)``.

    Opening reads only the first line (the CSV header, or the first JSON line),
    so problems with the input as a whole surface before any row is handed out.
    Use it as a context manager (or call :meth:`close`) to release the file;
    standard input is never closed. ``columns`` is the CSV header (``None`` for
    JSON Lines), so a caller can check up front that the email column exists.
    """

    def __init__(self, name: str, stream: IO[bytes], fmt: str, *, owns_stream: bool) -> None:
        self.name = name
        self.format = fmt
        self._owned = stream if owns_stream else None
        try:
            head = _read_head(stream, len(_GZIP_MAGIC))
        except OSError as exc:
            raise SourceError(f"cannot read {name}: {exc.strerror or exc}") from exc
        if not head:
            raise SourceError(f"{name} is empty")
        self.compressed = head == _GZIP_MAGIC
        raw: io.BufferedIOBase = io.BufferedReader(_Prefixed(head, stream), _READ_BUFFER)
        if self.compressed:
            # GzipFile.readline is a Python method; a C buffer on top of it
            # halves the cost of reading by lines. GzipFile has readinto.
            unzipped = cast(io.RawIOBase, gzip.GzipFile(fileobj=raw, mode="rb"))
            raw = io.BufferedReader(unzipped, _READ_BUFFER)
        self._stream = raw
        first = self._first_line()
        self.columns: tuple[str, ...] | None = None
        self._rows: Iterator[tuple[int, Record | RowError]]
        if fmt == "csv":
            # Lines are decoded one by one (map is C-level: no Python frame per
            # line) so that bad UTF-8 is reported at its row. Binary iteration
            # splits on b"\n" and keeps "\r\n", as csv expects with newline="".
            # strict: text after a closing quote, or a quote still open at the
            # end, is an error for that record instead of silently taking in
            # the lines that follow as part of a field.
            # The tee's second half trails the reader so that the lines of a
            # malformed multi-line record can be read again (see _csv_rows).
            lead, lag = itertools.tee(itertools.chain((first,), map(bytes.decode, raw)))
            reader = csv.reader(lead, strict=True)
            self.columns = self._header(reader)
            self._rows = self._csv_rows(reader, lead, lag, self.columns)
        else:
            self._rows = self._jsonl_rows(first)

    def __iter__(self) -> Iterator[tuple[int, Record | RowError]]:
        return self._rows

    def close(self) -> None:
        """Release the input. Standard input itself stays open."""
        self._stream.close()  # GzipFile leaves its fileobj open; so does _Prefixed
        if self._owned is not None:
            self._owned.close()

    def __enter__(self) -> RowSource:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def _first_line(self) -> str:
        try:
            line = self._stream.readline()
        except _READ_ERRORS as exc:
            raise SourceError(f"cannot read {self.name}: {exc}") from exc
        if not line:
            raise SourceError(f"{self.name} is empty")
        try:
            return line.decode().removeprefix(_BOM)
        except UnicodeDecodeError as exc:
            raise SourceError(f"{self.name}: line 1 is not valid UTF-8: {exc.reason}") from exc

    def _header(self, reader: _CsvReader) -> tuple[str, ...]:
        try:
            cells = next(reader)
        except csv.Error as exc:
            raise SourceError(f"{self.name}: cannot read the header row: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise SourceError(f"{self.name}: the header is not valid UTF-8: {exc.reason}") from exc
        header = tuple(cell.strip() for cell in cells)
        if not any(header):
            raise SourceError(f"{self.name} has no header row: its first line is blank")
        named = [cell for cell in header if cell]
        # Without a header the first record would be taken for one and every
        # row then lacks the email column; no column name holds an "@".
        for cell in named:
            if "@" in cell:
                raise SourceError(
                    f"{self.name}: the first row looks like data, not a header ({cell!r});"
                    " a CSV segment needs a header row naming its columns"
                )
        if len(set(named)) != len(named):
            twice = min(cell for cell in named if named.count(cell) > 1)
            raise SourceError(f"{self.name}: column {twice!r} appears twice in the header")
        return header

    def _csv_rows(
        self,
        reader: _CsvReader,
        lead: Iterator[str],
        lag: Iterator[str],
        header: tuple[str, ...],
    ) -> Iterator[tuple[int, Record | RowError]]:
        # The hot path is the inner ``for``: one C-level step of the reader, a
        # length check and a dict per row; every _CSV_REPLAY_ROWS rows ``lag``
        # is caught up with the reader, in C. ``end`` is the reader's line count
        # when the previous record ended. Physical line numbers: a reader reads
        # ``pending`` (lines to read again) and then ``lead``, and its line n is
        # the input's line ``offset + n``; ``lagged`` is the last line ``lag``
        # has handed out, never past the start of the record being read.
        width = len(header)
        row = 0
        end = reader.line_num
        offset = 0
        pending: list[str] = []
        lagged = 0
        while True:
            spanned: tuple[int, str] | None = None  # (last line, what is wrong)
            try:
                while True:
                    before = row
                    for fields in itertools.islice(reader, _CSV_REPLAY_ROWS):
                        row += 1
                        if len(fields) == width:
                            yield row, dict(zip(header, fields, strict=False))  # lengths checked
                        elif fields:
                            found = f"expected {width} fields, found {len(fields)}"
                            if reader.line_num > end + 1:  # a quoted field ran over line ends
                                row -= 1  # counted again when its first line is reported
                                spanned = (reader.line_num, found)
                                break
                            yield row, RowError(found)
                        # else: a blank line, skipped but counted
                        end = reader.line_num
                    if spanned is not None or row - before < _CSV_REPLAY_ROWS:
                        break
                    if offset + end > lagged:
                        _drain(itertools.islice(lag, offset + end - lagged))
                        lagged = offset + end
            except csv.Error as exc:  # bad quoting or a huge field
                if reader.line_num > end + 1:
                    spanned = (reader.line_num, str(exc))
                else:  # this one line only; the reader goes on with the next
                    row += 1
                    end = reader.line_num
                    yield row, RowError(f"unreadable CSV record: {exc}")
                    continue
            except UnicodeDecodeError as exc:
                raise SourceError(
                    f"{self.name}: row {row + 1} is not valid UTF-8: {exc.reason}"
                ) from exc
            except _READ_ERRORS as exc:
                raise SourceError(f"cannot read {self.name} past row {row}: {exc}") from exc
            if spanned is None:
                return
            # A record ran from line ``first`` to ``last`` and is malformed:
            # report its first line, and read the others again as records.
            last_local, found = spanned
            first, last = offset + end + 1, offset + last_local
            replayed = offset + len(pending)  # lines up to here come from ``pending``
            lines = pending[end:last_local]
            if last > replayed:
                start = max(first, replayed + 1)
                _drain(itertools.islice(lag, start - 1 - lagged))
                lines += itertools.islice(lag, last - start + 1)
                lagged = last
            again = (
                f"line {last} is read again as a row"
                if last == first + 1
                else f"lines {first + 1}-{last} are read again as rows"
            )
            reason = (
                f"line {first}: malformed record running on to line {last}"
                f" ({found}: is a quote unbalanced?); {again}"
            )
            row += 1
            yield row, RowError(reason)
            pending = lines[1:] + pending[last_local:]
            offset = first
            end = 0
            reader = csv.reader(itertools.chain(pending, lead), strict=True)

    def _jsonl_rows(self, first: str) -> Iterator[tuple[int, Record | RowError]]:
        decode = _JSON.decode
        number = 0
        text = first
        lines = map(bytes.decode, self._stream)
        seen_data = False
        while True:
            number += 1
            try:
                value = decode(text)
            except RecursionError:
                yield number, RowError("not valid JSON: nested too deeply")
            except ValueError as exc:
                stripped = text.strip(_JSON_SPACE)
                if stripped:  # else a blank line: skipped, but its number is kept
                    if not seen_data and stripped == "[":
                        raise SourceError(
                            f"{self.name} is a JSON array; JSON Lines needs one object per line"
                        ) from exc
                    yield number, RowError(f"not valid JSON: {_json_reason(exc)}")
                    seen_data = True
            else:
                seen_data = True
                if type(value) is dict:
                    yield number, value
                else:
                    kind = _JSON_KINDS.get(type(value), "null" if value is None else "a boolean")
                    yield number, RowError(f"expected a JSON object, found {kind}")
            try:
                text = next(lines)
            except StopIteration:
                return
            except UnicodeDecodeError as exc:
                raise SourceError(
                    f"{self.name}: line {number + 1} is not valid UTF-8: {exc.reason}"
                ) from exc
            except _READ_ERRORS as exc:
                raise SourceError(f"cannot read {self.name} past line {number}: {exc}") from exc


def _json_reason(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        # Some of json's messages end in "at" ("Unterminated string starting
        # at"), as its own message goes on with the position: say it once.
        return f"{exc.msg.removesuffix(' at')} at column {exc.colno}"
    return str(exc)


def open_source(path: str, fmt: str | None = None) -> RowSource:
    """Open a segment for streaming; ``-`` reads standard input (as bytes).

    ``fmt`` is ``csv`` or ``jsonl``; when ``None`` it is inferred from the name
    (``.csv``, ``.jsonl``, ``.ndjson``, ``.json``, each optionally ``.gz``).
    Gzip is detected from the content's magic bytes, not from the name.
    """
    if fmt is None:
        fmt = infer_format(path)
    elif fmt not in FORMATS:
        raise SourceError(f"unknown format {fmt!r}; use csv or jsonl")
    if path == STDIN:
        return RowSource("standard input", sys.stdin.buffer, fmt, owns_stream=False)
    try:
        stream = open(path, "rb", buffering=0)  # noqa: SIM115 - RowSource owns and closes it
    except OSError as exc:
        raise SourceError(f"cannot open {path}: {exc.strerror or exc}") from exc
    try:
        return RowSource(path, stream, fmt, owns_stream=True)
    except BaseException:
        stream.close()
        raise
