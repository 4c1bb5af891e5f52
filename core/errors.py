"""Errors the exporter raises on purpose, each with a message a user can act on.

Every one of them lives here, so that each front door (the CLI, the listener,
the coming HTTP API) answers the same tree in one table of its own:

ExportError
├── ConfigurationError   the environment is incomplete or wrong
├── SecretError          an API key cannot be decrypted
├── NotFound             a connection, export or run id that does not exist
├── InvalidInput         a field or argument is wrong (``field`` names it)
│   └── InvalidRequest   an ``ExportRequest`` document is not valid (``fields``)
├── Forbidden            the actor's role does not allow the action
├── SourceError          a segment source cannot be read (names file and row)
├── ExportBusy           the export has a run in progress (runs never overlap)
├── Unavailable          Redis could not be reached, or lost what a command needs
├── Throttled            too many failed sign-ins: wait ``retry_after`` seconds
└── Refused              the listener cannot honour a request: it is dead-lettered

``RetryLater`` is no error: a worker's hand-back signal to the broker.
"""

from __future__ import annotations


class ExportError(Exception):
    """Base of every error the exporter raises deliberately."""


class ConfigurationError(ExportError):
    pass


class SecretError(ExportError):
    pass


class NotFound(ExportError):
    pass


class InvalidInput(ExportError):
    """A value the user chose is wrong.

    ``field`` is the record field at fault (``"email_field"``), when there is
    one: the domain names fields, not the flags or JSON keys of one front
    door, and each front door names it its own way (the CLI as its flag).
    ``problem`` is the message without the field; ``str()`` has both.
    """

    def __init__(self, problem: str, field: str | None = None) -> None:
        super().__init__(f"{field}: {problem}" if field else problem)
        self.problem = problem
        self.field = field


class InvalidRequest(InvalidInput):
    """The document is not a valid ``ExportRequest``; ``fields`` names each bad field."""

    def __init__(self, field_errors: dict[str, list[str]]) -> None:
        self.fields = field_errors
        detail = "; ".join(f"{name}: {' '.join(errors)}" for name, errors in field_errors.items())
        super().__init__(f"invalid export request: {detail}")


class Forbidden(ExportError):
    """The actor's role does not allow the action."""


class SourceError(ExportError):
    pass


class ExportBusy(ExportError):
    """The export has a run in progress: runs of one export never overlap.

    ``holder`` is the id of the run in progress.
    """

    def __init__(self, message: str, holder: str) -> None:
        super().__init__(message)
        self.holder = holder


class Unavailable(ExportError):
    """A service the command needs cannot be reached, or lost the records it needs."""


class Throttled(ExportError):
    """Too many failed attempts of one kind (a console user's sign-ins) in a while."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Refused(ExportError):
    """The listener cannot honour a request: it goes to the dead-letter queue.

    ``kind`` is the dead letter's error type (``"unknown_export"``, ...),
    ``fields`` the request fields at fault, each with its messages.
    """

    def __init__(self, kind: str, message: str, fields: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.fields = fields or {}


class RetryLater(Exception):
    """Not an error: a worker hands its part (a batch, a removal chunk) back to
    the queue for ``countdown`` seconds, freeing its process, instead of
    sleeping (a wait for the rate limit, a job still importing, a transient
    fault).

    ``polling``: Klaviyo has the batch's job, so the retry follows it up and
    goes to ``POLLS_QUEUE`` rather than behind every batch not yet sent.
    """

    def __init__(self, countdown: float, reason: str, polling: bool = False) -> None:
        super().__init__(reason)
        self.countdown = countdown
        self.reason = reason
        self.polling = polling
