"""Injected failures, so clients can prove their retries against a flaky Klaviyo.

With ``--fault-rate R`` each ``/api/`` request is, with probability R, given
one of four faults, chosen evenly:

* ``500``: a JSON:API ``error`` answer (Klaviyo's SDK does not retry these);
* ``503``: a JSON:API ``service_unavailable`` answer (retried by the SDK);
* ``502``: an HTML page from "the gateway", with ``Content-Type: text/html``,
  as a proxy in front of Klaviyo would send - clients must not assume every
  error body is JSON;
* ``drop``: the connection is reset (TCP RST) without any answer.

For writes (POST and DELETE) half of the faults happen *after* the request
was applied: the job is created or the membership changed, but the answer is
lost, as when a response dies on the way back. A client that retries such a
write must cope with it having taken effect (bulk import is an upsert, and
list membership changes are idempotent, so retrying is safe). Faults before
the request is applied are decided before authentication and do not use
rate-limit quota; faults after it come after the normal processing, quota
included.

Decisions come from one ``random.Random(seed)`` taken in arrival order, so a
client that sends its requests one at a time sees the same faults on every run
with the same ``--seed``; concurrent clients see the same share of faults.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass

KINDS = ("500", "502", "503", "drop")


@dataclass(frozen=True)
class Fault:
    """What to do instead of a normal answer."""

    kind: str  # one of KINDS
    after_apply: bool

    @property
    def status(self) -> int | None:
        """HTTP status of the fault, None for a dropped connection."""
        return None if self.kind == "drop" else int(self.kind)

    @property
    def label(self) -> str:
        return f"{self.kind}_after_apply" if self.after_apply else self.kind


class FaultInjector:
    """Draws faults at ``rate`` from a seeded generator (thread-safe)."""

    def __init__(self, rate: float, seed: int | None) -> None:
        self.rate = rate
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def draw(self, is_write: bool) -> Fault | None:
        """The fault for the next request, or None. Draws the same numbers either way."""
        if self.rate <= 0:
            return None
        with self._lock:
            roll = self._rng.random()
            kind = KINDS[self._rng.randrange(len(KINDS))]
            after = self._rng.random() < 0.5
        if roll >= self.rate:
            return None
        return Fault(kind, after_apply=is_write and after)


GATEWAY_PAGE = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>sandbox gateway</center>\r\n"
    b"</body>\r\n</html>\r\n"
)
