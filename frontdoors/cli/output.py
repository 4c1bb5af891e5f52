"""How commands print and exit: a table for people, one JSON object for scripts,
one line on stderr for an error, and an exit code a script can act on.

Exit codes (the README lists them too):

====  ==================================================================
0     done; a waited-for run succeeded
1     a waited-for run ended, but not ``succeeded`` (partially succeeded,
      failed, cancelled, rejected)
2     the command was refused: bad arguments or input, unknown id, not
      allowed, misconfigured
3     a waited-for run needs a decision: a mirror run held at the safety
      brake (``approve`` or ``reject`` it)
4     ``--timeout`` passed before the run ended (it goes on)
5     Redis, the broker or Klaviyo could not be reached, or Redis lost the
      run's records
6     skipped: the export has a run in progress (runs never overlap)
70    an internal error (a bug): one line naming where
130   interrupted (Ctrl-C)
141   the output pipe was closed (``... | head``)
====  ==================================================================
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from enum import IntEnum
from typing import Any, TextIO


class Exit(IntEnum):
    OK = 0
    NOT_SUCCEEDED = 1
    ERROR = 2
    NEEDS_DECISION = 3
    TIMED_OUT = 4
    UNAVAILABLE = 5
    SKIPPED = 6
    INTERNAL = 70
    INTERRUPTED = 130
    BROKEN_PIPE = 141


def exit_for(status: str) -> Exit:
    """The exit code of a command that waited for a run now in ``status``."""
    if status == "succeeded":
        return Exit.OK
    if status == "awaiting_approval":
        return Exit.NEEDS_DECISION
    return Exit.NOT_SUCCEEDED


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object (the last line) for scripts"
    )


def emit_json(value: Any, stream: TextIO | None = None) -> None:
    print(json.dumps(value, sort_keys=True, default=str), file=stream or sys.stdout)


def emit_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
    if not rows:
        print("(none)")
        return
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "-"
    return str(value)


def fail(
    message: str,
    code: Exit = Exit.ERROR,
    *,
    as_json: bool = False,
    kind: str = "error",
    **detail: Any,
) -> int:
    """One line on stderr; with ``--json`` also the error as one JSON object on stdout."""
    print(f"klaviyo-export: error: {message}", file=sys.stderr)
    if as_json:
        emit_json({"error": {"type": kind, "message": message, **detail}, "exit_code": int(code)})
    return int(code)
