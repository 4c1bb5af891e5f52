"""Sample segments with a known make-up, for the demo, the tests and the benchmark.

Rows are ``email,first_name,plan,score``. Deterministic for a given size and
seed, and written as a stream, so a 5-million-row sample costs no memory.
The make-up (which rows are invalid, missing, duplicate, or will be failed by
a sandbox started with ``--fail-email FAIL_EMAIL_PATTERN``) is counted while
writing, so callers can check a run's counts exactly.
"""

from __future__ import annotations

import csv
import gzip
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

FAIL_EMAIL_DOMAIN = "bounce.example.net"
FAIL_EMAIL_PATTERN = r"@bounce\.example\.net$"
HEADER = ("email", "first_name", "plan", "score")


@dataclass
class SampleMakeup:
    rows: int = 0
    valid: int = 0  # unique, valid emails: what reaches Klaviyo
    invalid_email: int = 0
    missing_email: int = 0
    duplicate: int = 0
    klaviyo_fails: int = 0  # valid here, failed by the sandbox (counted in valid)
    imported_emails: list[str] = field(default_factory=list)

    @property
    def rejected(self) -> int:
        return self.invalid_email + self.missing_email + self.duplicate

    @property
    def imported(self) -> int:
        return self.valid - self.klaviyo_fails

    def expected_counts(self) -> dict[str, int]:
        """The run counts an export of this sample must report."""
        return {
            "rows_read": self.rows,
            "rejected": self.rejected,
            "submitted": self.valid,
            "imported": self.imported,
            "failed": self.klaviyo_fails,
        }


def _rows(n: int, seed: int, makeup: SampleMakeup, keep_emails: bool) -> Iterator[tuple[str, ...]]:
    rng = random.Random(seed)
    plans = ("free", "pro", "enterprise")
    recent: list[str] = []
    for i in range(n):
        makeup.rows += 1
        first = f"Name{i}"
        plan = plans[i % 3]
        score = str(rng.randint(0, 100))
        roll = rng.random()
        if roll < 0.02:
            makeup.invalid_email += 1
            email = rng.choice((f"user{i}.example.com", f"user{i}@", f"user {i}@example.com"))
        elif roll < 0.03:
            makeup.missing_email += 1
            email = ""
        elif roll < 0.05 and recent:
            makeup.duplicate += 1
            email = rng.choice(recent).upper()  # same address, other case and padding
            email = f"  {email} "
        else:
            makeup.valid += 1
            if roll > 0.995:
                makeup.klaviyo_fails += 1
                email = f"user{i}@{FAIL_EMAIL_DOMAIN}"
            else:
                email = f"user{i}@example.com"
                if keep_emails:
                    makeup.imported_emails.append(email)
            recent.append(email)
            if len(recent) > 64:
                recent.pop(0)
        yield (email, first, plan, score)


def write_sample(path: Path, rows: int, seed: int = 7, keep_emails: bool = True) -> SampleMakeup:
    """Write a CSV (gzip if the name ends in .gz) and return its make-up."""
    makeup = SampleMakeup()
    with (
        gzip.open(path, "wt", newline="", encoding="utf-8", compresslevel=1)
        if path.suffix == ".gz"
        else path.open("w", newline="", encoding="utf-8")
    ) as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(_rows(rows, seed, makeup, keep_emails))
    return makeup
