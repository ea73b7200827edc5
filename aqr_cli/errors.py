"""User-facing errors shared by the library layers and the CLI."""

from __future__ import annotations


class UserError(Exception):
    """An expected failure caused by the user's input; the CLI shows one line and exits 1."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint
