"""A run's report as a streamed CSV download, for the API and the console alike.

The rows come from Redis a page at a time (``core.queries.run_report``) and
leave ``ROWS_PER_CHUNK`` at a time: a report can hold a million rows, which
the server never holds whole, and a chunk per row would cost a write per row.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from typing import Any, Final

from fastapi.responses import StreamingResponse

from core.reports import REPORT_COLUMNS

ROWS_PER_CHUNK: Final = 1000


def csv_chunks(rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    """``REPORT_COLUMNS`` as CSV, the header first, ``ROWS_PER_CHUNK`` rows per piece."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=REPORT_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for count, row in enumerate(rows, 1):
        writer.writerow(row)
        if count % ROWS_PER_CHUNK == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def report_download(run_id: str, rows: Iterable[dict[str, Any]]) -> StreamingResponse:
    """The download of ``rows``, checked already (``run_report`` refuses before a row)."""
    return StreamingResponse(
        csv_chunks(rows),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="run-{run_id}-rejected.csv"',
            "Cache-Control": "no-store",
        },
    )
