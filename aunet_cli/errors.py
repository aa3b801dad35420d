"""User-facing errors: one line, the offending place, what to do, and an exit code."""

from __future__ import annotations

# Exit codes (documented in the README).
EXIT_OK = 0
EXIT_INTERNAL = 1  # a bug in aunet: the traceback is shown
EXIT_USAGE = 2  # bad option, unknown splitter, missing or unreadable path
EXIT_BAD_INPUT = 3  # a bad record or corrupt stream under --on-error fail
EXIT_OUTPUT_CONFLICT = 4  # output directory holds other work
EXIT_OUTPUT_WRITE = 5  # the system refused a write: disk full, file too large, no permission
EXIT_INTERRUPTED = 130


class AunetError(Exception):
    """An error caused by input or usage, shown as one line without a traceback."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class BadInputError(AunetError):
    exit_code = EXIT_BAD_INPUT


class OutputConflictError(AunetError):
    exit_code = EXIT_OUTPUT_CONFLICT


class OutputWriteError(AunetError):
    exit_code = EXIT_OUTPUT_WRITE
