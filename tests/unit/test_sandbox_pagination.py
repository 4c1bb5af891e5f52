"""Cursors and the ordered membership index."""

from __future__ import annotations

import pytest

from sandbox.errors import ApiError
from sandbox.pagination import (
    Chunked,
    OrderedIndex,
    collection_links,
    decode_cursor,
    encode_cursor,
    page_list,
    page_sorted,
)


def test_cursor_round_trip_and_opacity() -> None:
    cursor = encode_cursor(12345)
    assert "12345" not in cursor
    assert decode_cursor(cursor) == 12345
    assert decode_cursor(None) == 0
    assert decode_cursor("") == 0


@pytest.mark.parametrize("cursor", ["!!!", "bmV4dA", encode_cursor(5)[:-3] + "zzz"])
def test_forged_cursor_is_a_400_on_page_cursor(cursor: str) -> None:
    with pytest.raises(ApiError) as caught:
        decode_cursor(cursor)
    assert caught.value.status == 400
    assert caught.value.parameter == "page[cursor]"


def test_index_pages_skip_removed_keys_and_stay_stable() -> None:
    index = OrderedIndex()
    for number in range(10):
        index.add(f"k{number}", float(number))
    first, after = index.page(0, 4)
    assert first == ["k0", "k1", "k2", "k3"]
    assert after == 4
    assert after is not None
    index.discard("k4")
    index.discard("k5")
    index.add("k10", 10.0)
    second, after = index.page(after, 4)
    assert second == ["k6", "k7", "k8", "k9"]
    assert after is not None
    third, after = index.page(after, 4)
    assert third == ["k10"]
    assert after is None
    assert len(index) == 9


def test_index_add_is_idempotent_and_readd_goes_last() -> None:
    index = OrderedIndex()
    assert index.add("a", 1.0)
    assert not index.add("a", 2.0)
    assert index.added_at("a") == 1.0
    index.add("b", 3.0)
    assert index.discard("a")
    assert not index.discard("a")
    index.add("a", 4.0)
    assert list(index) == ["b", "a"]
    assert index.added_at("a") == 4.0
    assert "a" in index


def test_last_page_has_no_next_even_when_trailing_keys_were_removed() -> None:
    index = OrderedIndex()
    for key in "abcd":
        index.add(key, 0.0)
    index.discard("c")
    index.discard("d")
    assert index.page(0, 2) == (["a", "b"], None)


def test_chunked_behaves_like_a_list() -> None:
    items: Chunked[str | None] = Chunked()
    expected: list[str | None] = []
    for number in range(Chunked.CHUNK * 2 + 5):
        items.append(f"k{number}")
        expected.append(f"k{number}")
    assert len(items) == len(expected)
    assert items[0] == "k0"
    assert items[Chunked.CHUNK] == expected[Chunked.CHUNK]
    assert items[-1] == expected[-1]
    assert items[1020:1030] == expected[1020:1030]
    items.replace(3, None)
    items.replace(len(items) - 1, None)
    expected[3] = expected[-1] = None
    assert list(items) == expected
    assert page_list(items, Chunked.CHUNK - 1, 3) == (
        expected[Chunked.CHUNK - 1 : Chunked.CHUNK + 2],
        Chunked.CHUNK + 2,
    )


def test_chunked_extend_makes_the_same_chunks_as_appends() -> None:
    one_by_one: Chunked[int] = Chunked()
    in_bulk: Chunked[int] = Chunked()
    number = 0
    for size in (0, 3, Chunked.CHUNK - 3, 1, Chunked.CHUNK * 2 + 7, 5, Chunked.CHUNK):
        batch = list(range(number, number + size))
        number += size
        for item in batch:
            one_by_one.append(item)
        in_bulk.extend(batch)
        assert in_bulk._full == one_by_one._full
        assert in_bulk._tail == one_by_one._tail
        assert all(type(chunk) is tuple and len(chunk) == Chunked.CHUNK for chunk in in_bulk._full)


def test_index_add_many_is_add_in_order() -> None:
    one_by_one, in_bulk = OrderedIndex(), OrderedIndex()
    for index in (one_by_one, in_bulk):
        index.add("a", 1.0)
        index.add("b", 1.0)
        index.discard("b")
    keys = ["c", "a", "b", "c", "d", "b"] + [f"k{i}" for i in range(Chunked.CHUNK)]
    expected = [one_by_one.add(key, 2.0) for key in keys]
    assert in_bulk.add_many(keys, 2.0) is any(expected)
    assert in_bulk.add_many(["a", "c"], 3.0) is False
    assert list(in_bulk) == list(one_by_one)
    assert [in_bulk.seq(key) for key in in_bulk] == [one_by_one.seq(key) for key in one_by_one]
    times = [in_bulk.added_at(key) for key in in_bulk]
    assert times == [1.0, 2.0, 2.0, 2.0, *([2.0] * Chunked.CHUNK)]
    assert in_bulk.page(0, 10_000) == one_by_one.page(0, 10_000)
    in_bulk.add("z", 4.0)
    one_by_one.add("z", 4.0)
    assert in_bulk.page(0, 10_000) == one_by_one.page(0, 10_000)


def test_page_sorted_and_page_list() -> None:
    items = [(2, "a"), (5, "b"), (9, "c")]
    assert page_sorted(items, 0, 2) == (["a", "b"], 9)
    assert page_sorted(items, 9, 2) == (["c"], None)
    assert page_sorted(items, 6, 5) == (["c"], None)
    assert page_list(["x", "y", "z"], 1, 1) == (["y"], 2)
    assert page_list(["x", "y", "z"], 2, 5) == (["z"], None)


def test_links_are_full_urls_with_encoded_brackets() -> None:
    query = [("page[size]", "2"), ("page[cursor]", "old"), ("filter", 'equals(email,"a@b.c")')]
    links = collection_links("http://127.0.0.1:8025", "/api/profiles", query, 7)
    assert links["self"].startswith("http://127.0.0.1:8025/api/profiles?page%5Bsize%5D=2")
    assert "old" not in links["next"]
    assert links["next"].endswith("page%5Bcursor%5D=" + encode_cursor(7))
    assert "next" not in collection_links("http://h", "/api/profiles", [], None)
