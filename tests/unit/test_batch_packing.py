"""Batches respect Klaviyo's count and body-size limits, in order, with their rows."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from klaviyo_client import KlaviyoClient
from producer.batches import (
    ENVELOPE_BYTES,
    MAX_BATCH_BYTES,
    MAX_BODY_BYTES,
    MIN_BATCH_BYTES,
    Batch,
    BatchPacker,
)
from producer.profiles import MAX_PROFILE_BYTES, MappedProfile, ProfileMapper


def profile(size: int, tag: int = 0) -> bytes:
    """An encoded profile of exactly ``size`` bytes."""
    head = b'{"type":"profile","attributes":{"email":"u%d@x.co","properties":{"pad":"' % tag
    tail = b'"}}}'
    assert size >= len(head) + len(tail)
    return head + b"x" * (size - len(head) - len(tail)) + tail


def pack(packer: BatchPacker, items: list[tuple[bytes, int]]) -> list[Batch]:
    batches = [b for item, row in items if (b := packer.add(item, row)) is not None]
    last = packer.flush()
    return batches + ([last] if last is not None else [])


def body_around(profiles_json: bytes, list_id: str) -> bytes:
    """The request body the real client builds for a batch."""
    sent: dict[str, Any] = {}

    def capture(operation: str, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        sent["body"] = kwargs["body"]
        return {"data": {"id": "job", "attributes": {"status": "queued", "total_count": 0}}}

    client = KlaviyoClient("pk_" + "x" * 34)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(client, "request", capture)
        client.create_bulk_import_job(profiles_json, list_id)
    body: bytes = sent["body"]
    return body


def test_batches_split_by_count_with_rows_aligned() -> None:
    items = [(profile(100, i), 100 + i) for i in range(7)]
    batches = pack(BatchPacker(max_profiles=3), items)
    assert [b.number for b in batches] == [0, 1, 2]
    assert [b.rows for b in batches] == [[100, 101, 102], [103, 104, 105], [106]]
    for batch in batches:
        decoded = json.loads(batch.profiles_json)
        assert [p["attributes"]["email"] for p in decoded] == [
            f"u{row - 100}@x.co" for row in batch.rows
        ]
        assert len(batch) == len(batch.rows)


def test_profiles_json_is_the_joined_array() -> None:
    items = [profile(100, i) for i in range(3)]
    (batch,) = pack(BatchPacker(), [(p, i) for i, p in enumerate(items)])
    assert batch.profiles_json == b"[" + b",".join(items) + b"]"


def test_a_full_batch_is_returned_when_the_next_profile_arrives() -> None:
    packer = BatchPacker()
    small = profile(90)
    assert all(packer.add(small, row) is None for row in range(10_000))
    finished = packer.add(small, 10_000)
    assert finished is not None
    assert len(finished) == 10_000
    assert finished.rows[-1] == 9_999
    assert packer.pending == 1


def test_batches_split_by_bytes_counting_brackets_commas_and_envelope() -> None:
    max_bytes = 1_000_000
    size = 99_800
    # n profiles take 2 + n*size + (n-1) bytes, plus the envelope allowance.
    fits = (max_bytes - ENVELOPE_BYTES - 1) // (size + 1)
    batches = pack(BatchPacker(max_bytes=max_bytes), [(profile(size, i), i) for i in range(25)])
    assert [len(b) for b in batches] == [fits, fits, 25 - 2 * fits]
    for batch in batches:
        assert len(batch.profiles_json) + ENVELOPE_BYTES <= max_bytes


def test_the_byte_limit_is_inclusive() -> None:
    size = 60_000
    exact = 2 + 2 * size + 1 + ENVELOPE_BYTES  # two profiles exactly fill it
    packer = BatchPacker(max_bytes=exact)
    assert packer.add(profile(size, 1), 1) is None
    assert packer.add(profile(size, 2), 2) is None
    finished = packer.add(profile(100, 3), 3)
    assert finished is not None
    assert len(finished.profiles_json) + ENVELOPE_BYTES == exact


def test_a_full_request_body_stays_within_five_megabytes() -> None:
    mapper = ProfileMapper("email", {"bio": "bio", "name": "first_name"})
    rng = random.Random(5)
    packer = BatchPacker(max_bytes=MAX_BATCH_BYTES)
    batches: list[Batch] = []
    row = 0
    while len(batches) < 3:
        row += 1
        record = {"email": f"u{row}@x.co", "name": "Zoë", "bio": "é" * rng.randint(0, 4_000)}
        result = mapper.map(row, record)
        assert isinstance(result, MappedProfile)
        finished = packer.add(result.profile_json, row)
        if finished is not None:
            batches.append(finished)
    for batch in batches:
        for list_id in ("Y6nRLr", "L" * 47):
            body = body_around(batch.profiles_json, list_id)
            assert len(body) <= MAX_BODY_BYTES
            assert len(body) > MAX_BODY_BYTES - 110_000  # and the batch was really full
            assert len(json.loads(body)["data"]["attributes"]["profiles"]["data"]) == len(batch)


def test_the_envelope_allowance_covers_the_real_envelope() -> None:
    for list_id in ("Y6nRLr", "L" * 47):
        envelope = len(body_around(b"[]", list_id)) - 2
        assert envelope <= ENVELOPE_BYTES
    assert len(body_around(b"[]", "Y6nRLr")) - 2 == 140 + 6


def test_random_sizes_pack_greedily_within_limits() -> None:
    rng = random.Random(99)
    for _ in range(30):
        max_profiles = rng.randint(1, 50)
        max_bytes = rng.randint(MIN_BATCH_BYTES, MIN_BATCH_BYTES * 4)
        sizes = [rng.choice([90, 500, 5_000, 40_000, MAX_PROFILE_BYTES]) for _ in range(200)]
        items = [(profile(size, i), i + 1) for i, size in enumerate(sizes)]
        batches = pack(BatchPacker(max_profiles, max_bytes), items)
        assert [b.number for b in batches] == list(range(len(batches)))
        assert [row for b in batches for row in b.rows] == [row for _, row in items]
        for index, batch in enumerate(batches):
            assert 1 <= len(batch) <= max_profiles
            assert len(batch.profiles_json) + ENVELOPE_BYTES <= max_bytes
            if index + 1 < len(batches):  # a batch closes only when the next would not fit
                next_size = sizes[batches[index + 1].rows[0] - 1]
                too_many = len(batch) == max_profiles
                too_big = len(batch.profiles_json) + 1 + next_size + ENVELOPE_BYTES > max_bytes
                assert too_many or too_big


def test_flush_is_empty_when_nothing_is_pending_and_numbering_continues() -> None:
    packer = BatchPacker(max_profiles=2)
    assert packer.flush() is None
    packer.add(profile(100), 1)
    first = packer.flush()
    assert first is not None
    assert first.number == 0
    assert packer.flush() is None
    packer.add(profile(100), 2)
    second = packer.flush()
    assert second is not None
    assert (second.number, second.rows) == (1, [2])


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"max_profiles": 0}, "max_profiles"),
        ({"max_profiles": 10_001}, "max_profiles"),
        ({"max_bytes": MAX_BODY_BYTES}, "max_bytes"),
        ({"max_bytes": MAX_BATCH_BYTES + 1}, "max_bytes"),
        ({"max_bytes": MIN_BATCH_BYTES - 1}, "max_bytes"),
    ],
)
def test_options_are_validated(kwargs: dict[str, int], option: str) -> None:
    with pytest.raises(ValueError, match=option):
        BatchPacker(**kwargs)


def test_limits_at_their_bounds_are_accepted() -> None:
    BatchPacker(max_profiles=1, max_bytes=MIN_BATCH_BYTES)
    BatchPacker(max_profiles=10_000, max_bytes=MAX_BATCH_BYTES)
    assert MAX_BATCH_BYTES == 5_000_000 - ENVELOPE_BYTES


def test_a_profile_over_the_per_profile_limit_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="row 8: profile is 100,001 bytes"):
        BatchPacker().add(profile(MAX_PROFILE_BYTES + 1), 8)


def test_the_largest_profile_always_fits_alone() -> None:
    packer = BatchPacker(max_profiles=10, max_bytes=MIN_BATCH_BYTES)
    big = profile(MAX_PROFILE_BYTES)
    assert packer.add(big, 1) is None
    finished = packer.add(big, 2)
    assert finished is not None
    assert finished.rows == [1]
