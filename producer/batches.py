"""Pack encoded profiles into batches that fit one Klaviyo bulk import job each.

A bulk import job takes at most 10,000 profiles and a 5 MB body (5,000,000
bytes, decompressed). Profiles arrive already encoded as compact JSON (see
:mod:`producer.profiles`), so a batch is built by joining bytes: its size is
known exactly while packing, and no profile is encoded twice.

The body the worker sends wraps the batch's JSON array in a fixed envelope::

    {"data":{"type":"profile-bulk-import-job","attributes":{"profiles":{"data":ARRAY}},
     "relationships":{"lists":{"data":[{"type":"list","id":"LIST_ID"}]}}}}

Written compactly that is 140 bytes plus the list id (Klaviyo list ids are 6
characters), 153 plus the id with ``json.dumps``' default ", " and ": "
separators. :data:`ENVELOPE_BYTES` allows 200. The guarantee holds only if the
worker splices ``profiles_json`` into the body as is: parsing and re-encoding
it with default separators would add two bytes per key and could overshoot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from producer.profiles import MAX_PROFILE_BYTES

MAX_PROFILES_PER_JOB: Final = 10_000
MAX_BODY_BYTES: Final = 5_000_000
ENVELOPE_BYTES: Final = 200
"""Allowance for the request body around the profiles array (140 bytes + list id)."""
MAX_BATCH_BYTES: Final = MAX_BODY_BYTES - ENVELOPE_BYTES
"""The largest ``max_bytes`` accepted: 4,999,800."""
MIN_BATCH_BYTES: Final = MAX_PROFILE_BYTES + 2 + ENVELOPE_BYTES
"""The smallest ``max_bytes`` accepted: one largest allowed profile must always fit."""


@dataclass(frozen=True, slots=True)
class Batch:
    """One bulk import job's worth of profiles.

    ``profiles_json`` is the JSON array ``[p0,p1,...]``, ready to splice into
    the request body; ``rows[i]`` is the segment row of the ``i``-th profile.
    ``number`` counts batches of one packer from 0.
    """

    number: int
    profiles_json: bytes
    rows: list[int]

    def __len__(self) -> int:
        return len(self.rows)


class BatchPacker:
    """Fills batches in arrival order; a profile that would overflow one starts the next.

    ``max_bytes`` bounds the whole array (brackets and commas included) plus
    :data:`ENVELOPE_BYTES`, that is, the request body. It may be at most
    :data:`MAX_BATCH_BYTES`, so the envelope allowance is reserved even when
    ``max_bytes`` is set to the top: at worst a body is 5,000,000 - 200 bytes.
    The default (4,900,000) keeps a further 100 KB of headroom, as production
    clients of this endpoint do.
    """

    def __init__(
        self, max_profiles: int = MAX_PROFILES_PER_JOB, max_bytes: int = 4_900_000
    ) -> None:
        if not 1 <= max_profiles <= MAX_PROFILES_PER_JOB:
            raise ValueError(
                f"max_profiles must be 1..{MAX_PROFILES_PER_JOB:,}, not {max_profiles}"
            )
        if not MIN_BATCH_BYTES <= max_bytes <= MAX_BATCH_BYTES:
            raise ValueError(
                f"max_bytes must be {MIN_BATCH_BYTES:,}..{MAX_BATCH_BYTES:,}"
                f" (5,000,000 minus the {ENVELOPE_BYTES}-byte envelope), not {max_bytes:,}"
            )
        self.max_profiles = max_profiles
        self.max_bytes = max_bytes
        self._items: list[bytes] = []
        self._rows: list[int] = []
        self._size = 2 + ENVELOPE_BYTES  # "[" and "]" plus the envelope allowance
        self._next_number = 0

    def add(self, profile_json: bytes, row_number: int) -> Batch | None:
        """Add one encoded profile; return the finished batch if it had no room for it."""
        length = len(profile_json)
        if length > MAX_PROFILE_BYTES:
            raise ValueError(
                f"row {row_number}: profile is {length:,} bytes, over the {MAX_PROFILE_BYTES:,}"
                " limit; ProfileMapper rejects such rows before they get here"
            )
        items = self._items
        if not items:
            self._size += length
        elif len(items) < self.max_profiles and self._size + 1 + length <= self.max_bytes:
            self._size += 1 + length  # the comma before this profile, and the profile
        else:
            finished = self._finish()
            self._size += length
            self._items.append(profile_json)
            self._rows.append(row_number)
            return finished
        items.append(profile_json)
        self._rows.append(row_number)
        return None

    def flush(self) -> Batch | None:
        """The last, partly filled batch, if any; the packer can be used again after."""
        return self._finish() if self._items else None

    @property
    def pending(self) -> int:
        """Profiles added but not yet returned in a batch."""
        return len(self._items)

    def _finish(self) -> Batch:
        batch = Batch(self._next_number, b"[" + b",".join(self._items) + b"]", self._rows)
        self._next_number += 1
        self._items = []
        self._rows = []
        self._size = 2 + ENVELOPE_BYTES
        return batch
