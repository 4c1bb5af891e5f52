"""Ids that look like Klaviyo's.

* profiles and bulk import jobs: 26 uppercase characters of Crockford base32
  like a ULID (``01GDDKASAP8TKDDA2GRZDSVP4H``): 10 characters of milliseconds,
  then 64 random bits as 16 hex digits (hex digits are Crockford characters,
  so the id parses as a ULID; it just uses 64 of the 80 random bits). A
  10,000-profile job needs 10,000 ids, and ``"%016X" % bits`` is several
  times cheaper than base32-encoding 80 bits in Python;
* lists: six letters and digits (``Y6nRLr``); accounts: six as well (the
  account id doubles as the public API key, as in Klaviyo);
* import errors: UUIDs, as in the spec's example.

All randomness comes from one ``random.Random`` so that ``--seed`` makes a run
repeatable.
"""

from __future__ import annotations

import random
import string
import uuid

from sandbox.clock import Clock

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_ALNUM = string.ascii_letters + string.digits


class IdFactory:
    """Makes ids from one random source (not thread-safe: call under a lock)."""

    def __init__(self, rng: random.Random, clock: Clock) -> None:
        self._rng = rng
        self._clock = clock
        self._prefix_ms = -1
        self._prefix = ""
        self._prefix_instant = -1.0

    def _time_prefix(self, instant: float) -> str:
        millis = int(self._clock.epoch(instant) * 1000)
        if millis != self._prefix_ms:
            chars = []
            value = millis
            for _ in range(10):
                chars.append(_CROCKFORD[value & 31])
                value >>= 5
            self._prefix = "".join(reversed(chars))
            self._prefix_ms = millis
        return self._prefix

    def ulid(self, instant: float | None = None) -> str:
        """A 26-character ULID-like id for the clock reading ``instant`` (default: now)."""
        if instant is None:
            instant = self._clock.now()
        if instant != self._prefix_instant:  # a job's rows share one reading
            self._prefix_instant = instant
            self._time_prefix(instant)
        # Printf-style formatting is the cheapest way to 16 hex digits (about
        # half the time of format(); the id is made once per new profile).
        return self._prefix + "%016X" % self._rng.getrandbits(64)  # noqa: UP031

    def short(self) -> str:
        """A six-character alphanumeric id (lists, accounts)."""
        return "".join(self._rng.choice(_ALNUM) for _ in range(6))

    def uuid(self) -> str:
        """A version-4 UUID string."""
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
