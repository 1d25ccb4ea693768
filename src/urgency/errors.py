"""Errors a user can act on. The CLI prints their message (no stack trace) and exits with
`exit_code`, so scripts can tell the kinds apart."""

from __future__ import annotations


class UrgencyError(Exception):
    exit_code = 1


class ParamsError(UrgencyError):
    """The params (or rules) file is missing, not YAML, or does not fit the schema."""

    exit_code = 3


class DataValidationError(UrgencyError):
    """Ticket data failed validation; the message lists every problem with row numbers."""

    exit_code = 4


class ModelNotFoundError(UrgencyError):
    """No model at the given folder, registry name or alias."""

    exit_code = 5


class InputError(UrgencyError):
    """A file to score is missing, unreadable or lacks the text columns."""

    exit_code = 6


class StoreError(UrgencyError):
    """The service's database cannot be reached, or its schema is not the one this version expects."""

    exit_code = 7


class EmptyReport(UrgencyError):
    """No decided ticket in the period: there is nothing to report."""

    exit_code = 8


class ClusterError(UrgencyError):
    """The Dask cluster could not be reached, or a worker died or failed while scoring."""

    exit_code = 9


class OutputError(UrgencyError):
    """An output cannot be written: its folder cannot be made, the disk is full, the file is too
    large, or the file system is read-only or forbids it. An older output at that path is kept."""

    exit_code = 10


class RollbackError(UrgencyError):
    """Nothing to roll back: the champion replaced no earlier version, or the version asked for
    (`--to`) is already the champion."""

    exit_code = 11
