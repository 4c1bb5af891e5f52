"""Ids that look like Klaviyo's.

* profiles and bulk import jobs: 26-character ULIDs in Crockford base32
  (``01GDDKASAP8TKDDA2GRZDSVP4H``), 48 bits of milliseconds then 80 random bits;
* lists: six letters and digits (``Y6nRLr``); accounts: six as well (the
  account id doubles as the public API key, as in Klaviyo);
* import errors: UUIDs, as in the spec's example.

All randomness comes from one ``random.Random`` so that ``--seed`` makes a run
repeatable. The random part of a ULID is encoded with a table of 10-bit pairs
rather than a per-character loop (or ``base64.b32encode``, pure Python in
3.11) because a 10,000-profile job needs 10,000 of them and the sandbox must
stay cheap per profile.
"""

from __future__ import annotations

import random
import string
import uuid

from sandbox.clock import Clock

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Every 10-bit value as two Crockford characters: 80 random bits are 8 lookups.
_PAIRS = [_CROCKFORD[value >> 5] + _CROCKFORD[value & 31] for value in range(1024)]
_ALNUM = string.ascii_letters + string.digits


class IdFactory:
    """Makes ids from one random source (not thread-safe: call under a lock)."""

    def __init__(self, rng: random.Random, clock: Clock) -> None:
        self._rng = rng
        self._clock = clock
        self._prefix_ms = -1
        self._prefix = ""

    def _time_prefix(self) -> str:
        millis = int(self._clock.epoch(self._clock.now()) * 1000)
        if millis != self._prefix_ms:
            chars = []
            value = millis
            for _ in range(10):
                chars.append(_CROCKFORD[value & 31])
                value >>= 5
            self._prefix = "".join(reversed(chars))
            self._prefix_ms = millis
        return self._prefix

    def ulid(self) -> str:
        """A 26-character uppercase ULID."""
        bits = self._rng.getrandbits(80)
        pairs = _PAIRS
        return "".join(
            (
                self._time_prefix(),
                pairs[bits >> 70],
                pairs[(bits >> 60) & 1023],
                pairs[(bits >> 50) & 1023],
                pairs[(bits >> 40) & 1023],
                pairs[(bits >> 30) & 1023],
                pairs[(bits >> 20) & 1023],
                pairs[(bits >> 10) & 1023],
                pairs[bits & 1023],
            )
        )

    def short(self) -> str:
        """A six-character alphanumeric id (lists, accounts)."""
        return "".join(self._rng.choice(_ALNUM) for _ in range(6))

    def uuid(self) -> str:
        """A version-4 UUID string."""
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
