"""Errors the exporter raises on purpose, each with a message a user can act on.

ExportError
├── ConfigurationError   the environment is incomplete or wrong
├── SecretError          an API key cannot be decrypted
├── NotFound             a connection, export or run id that does not exist
├── InvalidInput         a field or argument is wrong (names it)
├── SourceError          a segment source cannot be read (names file and row)
├── ExportBusy           the export has a run in progress (runs never overlap)
└── Unavailable          Redis could not be reached, or lost what a command needs
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
    pass


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
