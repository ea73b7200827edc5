"""What every command shares: the command-line error type and the error wrapper.

Commands raise :class:`UserError` (or let an ``AQRInputError``/``OSError`` through) for bad
input; :func:`run_guarded` turns those into one line on stderr and exit code 1. Data goes to
stdout, messages and progress to stderr. ``AQR_DEBUG=1`` shows tracebacks.

The layers below raise errors that state facts about the input and name no flag; the flag that
supplies a missing part is added here (:data:`PART_FLAGS`), the one place that knows the flags.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable

import typer


class UserError(Exception):
    """An expected failure caused by how the command was called (a flag value, a pattern that
    matches nothing); the message may name flags. The layers below raise their own documented
    errors instead (``AQRInputError``, ``LoadError``)."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


def fail(message: str, hint: str | None = None) -> None:
    """Print ``aqr: error: message`` (one line) to stderr and exit 1."""
    from aqr_cli.cli.output import message_line

    line = message_line("error", message)
    if hint:
        line += f" ({' '.join(str(hint).split())})"
    sys.stderr.write(line + "\n")
    raise typer.Exit(code=1)


PART_FLAGS = {
    "embeddings": "pass --checkpoint (its embeddings and reference points)",
    "camera_cells": "pass --checkpoint to recompute them from its reference points",
}
"""How a user supplies what an analysis found missing
(:class:`aqr_cli.analysis.errors.MissingPartError` ``part``), appended to its message."""


def input_error_line(e: Exception) -> str:
    """The message of an input error, with the flag that would supply a missing part, or the
    flag that gave a file (:class:`aqr_cli.inputs.opened.CompanionError` ``role``)."""
    how = PART_FLAGS.get(getattr(e, "part", None) or "")
    text = str(e)
    if how:
        text = text.removesuffix("; none given") + f"; {how}"
    role = getattr(e, "role", None)
    if role:
        text = f"--{role}: {text}"
    return text


def _reader_gone() -> None:
    """stdout's reader closed the pipe (``aqr ... | head``): stop quietly with 141, the code of
    a process ended by SIGPIPE, as ``ls`` or ``git`` would; stdout goes to /dev/null so the
    final flush cannot fail again. Files already written stay (each is whole)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    raise typer.Exit(code=141)


def run_guarded(fn: Callable[[], Any]) -> Any:
    """Run a command body; expected failures become one stderr line and exit code 1."""
    if os.environ.get("AQR_DEBUG"):
        return fn()
    try:
        return fn()
    except typer.Exit:
        raise
    except UserError as e:
        fail(str(e), e.hint)
    except KeyboardInterrupt:
        sys.stderr.write("aqr: error: interrupted\n")
        raise typer.Exit(code=130)
    except BrokenPipeError:
        _reader_gone()
    except Exception as e:  # noqa: BLE001 - the contract is: never a traceback for a user
        from aqr_cli.core.errors import AQRInputError
        from aqr_cli.io.errors import LoadError, OutputError

        if isinstance(e, (AQRInputError, LoadError, OutputError)):
            fail(input_error_line(e), getattr(e, "hint", None))
        if isinstance(e, (OSError, MemoryError)):
            fail(f"{type(e).__name__}: {e}")
        fail(f"internal error ({type(e).__name__}: {e})",
             "this is a bug in aqr; rerun with AQR_DEBUG=1 for the traceback")
