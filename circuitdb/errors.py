"""The exception types the CLI turns into one-line errors and exit codes.

Library code raises these; only :mod:`circuitdb.cli` turns them into exits.
Every message names the problem *and* the fix, on one line.
"""

from __future__ import annotations


class CircuitDBError(Exception):
    """Base class. ``exit_code`` is what the CLI exits with."""

    exit_code: int = 2


class UsageError(CircuitDBError):
    """The command line itself is wrong (exit 1)."""

    exit_code = 1


class InputError(CircuitDBError):
    """A data file, model directory, parameter value or config is bad (exit 2)."""

    exit_code = 2


class BackendUnavailable(CircuitDBError):
    """The graph backend cannot be reached or refused us (exit 3)."""

    exit_code = 3
