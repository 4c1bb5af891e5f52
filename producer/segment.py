"""A segment as a stream of checked rows: each row comes out accepted (mapped to
a Klaviyo profile, first of its email) or rejected (with its reason).

Runs and dry runs read segments through this one path, so a plan always
predicts exactly what a run would send and reject.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from core.errors import SourceError
from core.store import Export
from producer.dedup import EmailDeduplicator
from producer.profiles import MappedProfile, ProfileMapper, Rejection
from producer.sources import RowError, open_source


@dataclass(frozen=True, slots=True)
class Rejected:
    row: int
    field: str | None
    code: str
    reason: str

    def record(self) -> dict[str, object]:
        return {"row": self.row, "field": self.field, "code": self.code, "reason": self.reason}


def checked_rows(export: Export, path: str, fmt: str | None) -> Iterator[MappedProfile | Rejected]:
    """Every row of the segment at ``path``, in order, accepted or rejected."""
    mapper = ProfileMapper(export.email_field, export.properties)
    seen = EmailDeduplicator()
    with open_source(path, fmt) as source:
        if source.columns is not None and export.email_field not in source.columns:
            raise SourceError(
                f"{path}: no column {export.email_field!r} (the export's email field); "
                f"columns are {', '.join(source.columns)}"
            )
        for row, record in source:
            if isinstance(record, RowError):
                yield Rejected(row, None, "malformed_row", record.reason)
                continue
            mapped = mapper.map(row, record)
            if isinstance(mapped, Rejection):
                yield Rejected(row, mapped.field, mapped.code, mapped.reason)
            elif seen.seen_before(mapped.email):
                yield Rejected(
                    row, export.email_field, "duplicate", "duplicate of an earlier row's email"
                )
            else:
                yield mapped
