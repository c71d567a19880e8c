"""Errors raised by Furui and the process exit codes they map to.

Every error that concerns a piece of input carries where it came from (file and line, or
document id), so a user can go straight to the record at fault.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ExitCode(enum.IntEnum):
    """Process exit codes of the ``furui`` command line."""

    OK = 0
    INTERNAL = 1
    USAGE = 2
    INPUT = 3
    CONFIG = 4
    UNAVAILABLE = 5
    MODEL = 6


@dataclass(frozen=True, slots=True)
class Location:
    """Where a record came from: a file and line, or a document id."""

    path: str
    line: int | None = None

    def __str__(self) -> str:
        return self.path if self.line is None else f"{self.path}:{self.line}"


class FuruiError(Exception):
    """Base of all errors Furui raises on purpose."""

    exit_code: ExitCode = ExitCode.INTERNAL


class ConfigError(FuruiError):
    """A setting, mapping table or rule file is invalid."""

    exit_code = ExitCode.CONFIG


class InputError(FuruiError):
    """An input path is missing, unreadable or of a format Furui does not read."""

    exit_code = ExitCode.INPUT


class NormaliseError(FuruiError):
    """One record could not be read or normalised; it is quarantined and the run goes on."""

    exit_code = ExitCode.INPUT

    def __init__(self, location: Location, reason: str) -> None:
        super().__init__(f"{location}: {reason}")
        self.location = location
        self.reason = reason


class ServiceError(FuruiError):
    """A service Furui depends on (Elasticsearch) is unreachable or refused a request."""

    exit_code = ExitCode.UNAVAILABLE


class ModelError(FuruiError):
    """A model bundle is missing, altered, or made for other code; it is never replaced."""

    exit_code = ExitCode.MODEL


class StoreError(FuruiError):
    """The embedded store could not be opened or written."""


class SinkError(FuruiError):
    """Incidents could not be written to their destination."""
