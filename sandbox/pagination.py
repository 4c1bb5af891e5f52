"""Cursor pagination as Klaviyo does it: opaque ``page[cursor]``, full ``links.next``.

Klaviyo's cursors are base64 text such as
``bmV4dDo6aWQ6OjQzODg5NjM3MTg1MjY5MDY2MDE`` (``next::id::...``); the sandbox's
are ``base64url("next::seq::N")`` where N is a position in an insertion
sequence. Collections page by that sequence rather than by a list offset so
that a cursor stays valid while members are added or removed between pages
(an export reading a list while it grows must neither skip nor repeat).

:class:`OrderedIndex` keeps list membership: O(1) add, remove and lookup and
O(page) paging from a cursor even for a 200,000-member list, where
``islice``-ing a dict to an offset would be O(offset) per page. Removed members
leave holes that paging skips; there is no compaction, so sequence numbers are
stable for the life of the process.

Long id sequences (all profiles in creation order, a list's members, a job's
profiles) are :class:`Chunked`: exact tuples of 1,024 ids plus a short tail.
CPython does not track tuples of strings for the cyclic garbage collector, so
a million ids cost a full collection nothing, where one million-item list is
walked item by item on every full collection (about 15 ms a million).

``links.next`` is left out (not ``null``) on the last page, because the
spec's ``CollectionLinks`` declares ``next`` as a non-nullable string.
Generated links use the spec's path form (no trailing slash) and the host the
client called, so they work behind a port mapping.
"""

from __future__ import annotations

import base64
import binascii
from array import array
from collections.abc import Iterable, Iterator, Sequence
from itertools import repeat
from typing import Any, TypeVar, overload
from urllib.parse import quote, urlencode

from sandbox.errors import ApiError, invalid_parameter

T = TypeVar("T")

_PREFIX = "next::seq::"


def encode_cursor(seq: int) -> str:
    """The opaque cursor for "continue at sequence number ``seq``"."""
    raw = f"{_PREFIX}{seq}".encode("ascii")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    """The sequence number a cursor stands for; 0 for none; 400 if forged or garbled."""
    if cursor is None or cursor == "":
        return 0
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.urlsafe_b64decode(padded.encode("ascii")).decode("ascii")
    except (binascii.Error, UnicodeError, ValueError):
        raise _bad_cursor() from None
    if not text.startswith(_PREFIX) or not text[len(_PREFIX) :].isdigit():
        raise _bad_cursor()
    return int(text[len(_PREFIX) :])


def _bad_cursor() -> ApiError:
    return invalid_parameter("Invalid page cursor.", "page[cursor]")


class Chunked(Sequence[T]):
    """An append-mostly sequence stored as tuples of :data:`CHUNK` items."""

    CHUNK = 1024
    __slots__ = ("_full", "_tail")

    def __init__(self) -> None:
        self._full: list[tuple[T, ...]] = []
        self._tail: list[T] = []

    def __len__(self) -> int:
        return len(self._full) * self.CHUNK + len(self._tail)

    def append(self, item: T) -> None:
        self._tail.append(item)
        if len(self._tail) == self.CHUNK:
            self._full.append(tuple(self._tail))
            self._tail = []

    def extend(self, items: Iterable[T]) -> None:
        """Append ``items`` in order: the same chunks as one append each, without a call each."""
        tail = self._tail
        tail.extend(items)
        size = self.CHUNK
        whole = len(tail) - len(tail) % size
        if whole:
            self._full.extend(tuple(tail[first : first + size]) for first in range(0, whole, size))
            self._tail = tail[whole:]

    @overload
    def __getitem__(self, index: int) -> T: ...

    @overload
    def __getitem__(self, index: slice) -> list[T]: ...

    def __getitem__(self, index: int | slice) -> T | list[T]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        chunk, offset = divmod(index, self.CHUNK)
        if chunk < len(self._full):
            return self._full[chunk][offset]
        return self._tail[offset]

    def replace(self, index: int, item: T) -> None:
        """Overwrite one item (rebuilds its 1,024-item tuple; for rare removals)."""
        chunk, offset = divmod(index, self.CHUNK)
        if chunk < len(self._full):
            items = list(self._full[chunk])
            items[offset] = item
            self._full[chunk] = tuple(items)
        else:
            self._tail[offset] = item


class OrderedIndex:
    """Keys in insertion order, each with the time it was added."""

    __slots__ = ("_keys", "_next", "_seq", "_times")

    def __init__(self) -> None:
        self._next = 0
        self._keys: Chunked[str | None] = Chunked()
        self._times = array("d")  # 8 bytes a member instead of a float object
        self._seq: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._seq)

    def __contains__(self, key: object) -> bool:
        return key in self._seq

    def add(self, key: str, when: float) -> bool:
        """Append ``key``; False (and no change) if it is already present."""
        if key in self._seq:
            return False
        self._seq[key] = self._next
        self._next += 1
        self._keys.append(key)
        self._times.append(when)
        return True

    def add_many(self, keys: Iterable[str], when: float) -> bool:
        """:meth:`add` each of ``keys`` in order; True if any was added.

        A bulk import job adds thousands of members at once; this does it
        with a few C-level calls instead of several Python calls a key.
        """
        seq = self._seq
        fresh = [key for key in dict.fromkeys(keys) if key not in seq]
        if not fresh:
            return False
        start = self._next
        seq.update(zip(fresh, range(start, start + len(fresh)), strict=True))
        self._next = start + len(fresh)
        self._keys.extend(fresh)
        self._times.extend(repeat(when, len(fresh)))
        return True

    def discard(self, key: str) -> bool:
        """Remove ``key``; False if it was not present."""
        seq = self._seq.pop(key, None)
        if seq is None:
            return False
        self._keys.replace(seq, None)
        return True

    def seq(self, key: str) -> int | None:
        return self._seq.get(key)

    def added_at(self, key: str) -> float:
        return self._times[self._seq[key]]

    def __iter__(self) -> Iterator[str]:
        """Present keys in order (a snapshot is the caller's business)."""
        return iter(self._seq)

    def page(self, start: int, size: int) -> tuple[list[str], int | None]:
        """Up to ``size`` keys from sequence ``start``, and where the next page starts."""
        keys = self._keys
        end = len(keys)
        out: list[str] = []
        index = max(start, 0)
        while index < end and len(out) < size:
            key = keys[index]
            if key is not None:
                out.append(key)
            index += 1
        while index < end and keys[index] is None:
            index += 1
        return out, (index if index < end else None)


def page_sorted(
    items: Sequence[tuple[int, T]], start: int, size: int
) -> tuple[list[T], int | None]:
    """Page a list of (sequence, item) sorted by sequence, from sequence ``start``."""
    lo, hi = 0, len(items)
    while lo < hi:
        mid = (lo + hi) // 2
        if items[mid][0] < start:
            lo = mid + 1
        else:
            hi = mid
    chunk = items[lo : lo + size]
    after = lo + size
    return [item for _, item in chunk], (items[after][0] if after < len(items) else None)


def page_list(items: Sequence[T], start: int, size: int) -> tuple[list[T], int | None]:
    """Page an append-only list by position."""
    chunk = list(items[start : start + size])
    after = start + size
    return chunk, (after if after < len(items) else None)


def collection_links(
    base_url: str, path: str, query: Sequence[tuple[str, str]], next_seq: int | None
) -> dict[str, Any]:
    """``links`` of a collection page: ``self`` and, unless last, ``next``."""
    links: dict[str, Any] = {"self": build_url(base_url, path, query)}
    if next_seq is not None:
        kept = [(name, value) for name, value in query if name != "page[cursor]"]
        kept.append(("page[cursor]", encode_cursor(next_seq)))
        links["next"] = build_url(base_url, path, kept)
    return links


def build_url(base_url: str, path: str, query: Sequence[tuple[str, str]] = ()) -> str:
    """An absolute URL with Klaviyo-style percent-encoded brackets."""
    url = base_url + path
    if query:
        url += "?" + urlencode(list(query), quote_via=quote, safe="")
    return url
