"""What a command shows while a run goes, in rows (the unit people count in).

On a terminal: a live line on stderr, drawn by ``rich``, with the stage, rows
done of rows to send, rate, elapsed time and time left. Off a terminal (cron,
a file, a pipe): a plain line when the stage changes and at most every
``PLAIN_EVERY`` seconds in between, so a log shows the run moving without
filling up. Nothing at all with ``--json``: stdout then carries one JSON
object and stderr only errors.

Rows done counts rows whose batch has a result, plus the rows Klaviyo reports
done in jobs it is still importing (``BatchStore.in_flight``), so the display moves
even when every batch ends at the same moment.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from schemas.contracts import RunStatus

PLAIN_EVERY: Final = 30.0


class RunProgress:
    def __init__(
        self,
        enabled: bool,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.live = enabled and self.stream.isatty()
        self.clock = clock
        self.started = clock()
        self._stage = ""
        self._last_plain = -PLAIN_EVERY
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    # -- what callers report ---------------------------------------------------------

    def reading(self, rows: int) -> None:
        self._show("reading the segment", rows, None)

    def run(self, status: Mapping[str, Any], in_flight: int = 0) -> None:
        """The run's status, as ``Run.to_json`` gives it."""
        counts = status["counts"]
        stage = status["status"]
        if stage == RunStatus.PENDING:
            self._show("reading the segment", counts["rows_read"], None)
        elif stage == RunStatus.REMOVING:
            done = counts["removed"] + counts["removal_failed"]
            self._show("removing members who left", done, counts["to_remove"])
        else:
            done = min(counts["submitted"], counts["imported"] + counts["failed"] + in_flight)
            self._show("importing to Klaviyo", done, counts["submitted"])

    def note(self, text: str) -> None:
        """A line of its own (a lost connection, say), above the live line."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
            self._task = None
            self._stage = ""

    # -- drawing ---------------------------------------------------------------------

    def _show(self, stage: str, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        if self.live:
            self._draw(stage, done, total)
            return
        now = self.clock()
        if stage == self._stage and now - self._last_plain < PLAIN_EVERY:
            return
        self._stage, self._last_plain = stage, now
        elapsed = now - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        of = f"/{total:,}" if total is not None else ""
        print(
            f"{stage}: {done:,}{of} rows, {rate:,.0f} rows/s, {elapsed:,.0f} s elapsed",
            file=self.stream,
            flush=True,
        )

    def _draw(self, stage: str, done: int, total: int | None) -> None:
        if self._bar is None:
            console = Console(file=self.stream, stderr=self.stream is sys.stderr)
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("rows"),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TextColumn("elapsed,"),
                TimeRemainingColumn(),
                TextColumn("left"),
                console=console,
                transient=True,
            )
            self._bar.start()
        if stage != self._stage or self._task is None:
            if self._task is not None:
                self._bar.remove_task(self._task)
            self._task = self._bar.add_task(stage, total=total, rate="")
            self._stage = stage
        speed = next((t.speed for t in self._bar.tasks if t.id == self._task), None)
        rate = f"{speed:,.0f}/s" if speed else ""
        self._bar.update(self._task, completed=done, total=total, rate=rate)
