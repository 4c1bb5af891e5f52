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

``ANSWERS`` is the one table from an error a user can meet to its exit code,
its JSON ``type`` and its one line; ``answer()`` looks an error up by its
class, most specific first.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final, TextIO
from urllib.parse import urlsplit

import redis
from kombu.exceptions import OperationalError

from core import errors
from klaviyo_client import FatalError, KlaviyoError
from schemas.contracts import RunStatus


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
    if status == RunStatus.SUCCEEDED:
        return Exit.OK
    if status == RunStatus.AWAITING_APPROVAL:
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


# -- errors: one line and an exit code each ---------------------------------------

FLAGS: Final = {"connection_id": "--connection", "segment_format": "--format"}
"""The flags whose name is not the record field's (``email_field``: ``--email-field``)."""


def flag(field: str) -> str:
    """The command-line flag that sets record field ``field``."""
    return FLAGS.get(field, "--" + field.replace("_", "-"))


def _said(exc: BaseException) -> str:
    """The error's own message; an ``InvalidInput`` names its field as the flag."""
    if isinstance(exc, errors.InvalidInput) and exc.field:
        return f"{flag(exc.field)}: {exc.problem}"
    return str(exc)


def _no_detail(_exc: BaseException) -> dict[str, Any]:
    return {}


def _holder(exc: BaseException) -> dict[str, Any]:
    assert isinstance(exc, errors.ExportBusy)
    return {"run_in_progress": exc.holder}


def _redis_unreachable(exc: BaseException) -> str:
    return f"cannot reach Redis at {_redis_where()}: {type(exc).__name__}; is it running?"


def _redis_refused(exc: BaseException) -> str:
    # Reached, but it refused (auth, OOM, read-only, ...).
    return f"Redis at {_redis_where()} refused the command: {type(exc).__name__}"


def _broker_unreachable(exc: BaseException) -> str:
    return f"cannot reach the broker: {type(exc).__name__}; is it running?"


def _internal(exc: BaseException) -> str:
    place = traceback.extract_tb(exc.__traceback__)[-1]
    return (
        f"internal error: {type(exc).__name__} at {os.path.basename(place.filename)}:"
        f"{place.lineno} (a bug; KLAVIYO_EXPORT_DEBUG=1 shows the traceback)"
    )


def _debug_traceback(exc: BaseException) -> None:
    if os.environ.get("KLAVIYO_EXPORT_DEBUG"):
        traceback.print_exception(exc)


def _quiet_stdout(_exc: BaseException) -> None:
    # The reader went away (`... | head`): point stdout at devnull so that
    # the interpreter's final flush does not complain.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


@dataclass(frozen=True, slots=True)
class Answer:
    """How the command answers one class of error."""

    code: Exit
    kind: str | None  # the JSON error ``type``; None: nothing is said
    line: Callable[[BaseException], str] = _said
    detail: Callable[[BaseException], dict[str, Any]] = _no_detail
    first: Callable[[BaseException], None] | None = None  # done before answering


ANSWERS: Final[Mapping[type[BaseException], Answer]] = {
    errors.ExportError: Answer(Exit.ERROR, "refused"),
    errors.ConfigurationError: Answer(Exit.ERROR, "configuration"),
    errors.SecretError: Answer(Exit.ERROR, "refused"),
    errors.NotFound: Answer(Exit.ERROR, "not_found"),
    errors.InvalidInput: Answer(Exit.ERROR, "invalid_input"),
    errors.InvalidRequest: Answer(Exit.ERROR, "invalid_input"),
    errors.Forbidden: Answer(Exit.ERROR, "forbidden"),
    errors.SourceError: Answer(Exit.ERROR, "source_error"),
    errors.ExportBusy: Answer(Exit.SKIPPED, "skipped", detail=_holder),
    errors.Unavailable: Answer(Exit.UNAVAILABLE, "unavailable"),
    errors.Throttled: Answer(Exit.ERROR, "throttled"),
    errors.Refused: Answer(Exit.ERROR, "refused"),
    FatalError: Answer(Exit.ERROR, "klaviyo_refused"),
    KlaviyoError: Answer(Exit.UNAVAILABLE, "klaviyo_unavailable"),
    redis.ConnectionError: Answer(Exit.UNAVAILABLE, "redis_unavailable", _redis_unreachable),
    redis.TimeoutError: Answer(Exit.UNAVAILABLE, "redis_unavailable", _redis_unreachable),
    redis.RedisError: Answer(Exit.UNAVAILABLE, "redis_refused", _redis_refused),
    OperationalError: Answer(Exit.UNAVAILABLE, "broker_unavailable", _broker_unreachable),
    BrokenPipeError: Answer(Exit.BROKEN_PIPE, None, first=_quiet_stdout),
    KeyboardInterrupt: Answer(Exit.INTERRUPTED, None),
    Exception: Answer(Exit.INTERNAL, "internal_error", _internal, first=_debug_traceback),
}
"""Every error a user can meet; anything else is an internal error (a bug)."""


def answer_for(exc: BaseException) -> Answer:
    """The entry of the most specific class of ``exc`` in ``ANSWERS``."""
    for cls in type(exc).__mro__:
        if cls in ANSWERS:
            return ANSWERS[cls]
    return ANSWERS[Exception]


def answer(exc: BaseException, *, as_json: bool = False) -> int:
    """Answer ``exc`` as ``ANSWERS`` says: one line on stderr, or nothing; the exit code."""
    found = answer_for(exc)
    if found.first is not None:
        found.first(exc)
    if found.kind is None:
        return int(found.code)
    return fail(found.line(exc), found.code, as_json=as_json, kind=found.kind, **found.detail(exc))


def _redis_where() -> str:
    """Where the store is, as scheme://host:port/db, never with a password."""
    try:
        from core.settings import Settings

        url = Settings.from_env().store_url
    except errors.ExportError:
        return "the configured URL"
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"
