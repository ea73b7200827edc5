"""Exceptions and warnings of ``aqr_cli.io``.

``io`` never imports ``cli``: the CLI maps :class:`LoadError` to one stderr line and exit code 1.
"""

from __future__ import annotations

import os


def one_line(text: object) -> str:
    """``text`` with every run of whitespace (newlines included) collapsed to one space."""
    return " ".join(str(text).split())


class LoadError(Exception):
    """A file could not be loaded: missing, unreadable, corrupt, refused or not what was expected.

    ``str(err)`` is one line that starts with the file name, e.g.
    ``epoch_6.pth: refused to unpickle: the file names globals outside the allow-list: posix.system``.
    ``blocked_globals`` lists the refused pickle globals (empty for other failures); ``hint`` is
    an optional suggestion the CLI may print after the message.
    """

    def __init__(self, path: str | os.PathLike | None, reason: str, *,
                 blocked_globals: list[str] | None = None, hint: str | None = None):
        self.path = None if path is None else os.fspath(path)
        self.reason = one_line(reason)
        self.blocked_globals = list(blocked_globals or [])
        self.hint = hint
        super().__init__(self.reason if self.path is None else f"{self.path}: {self.reason}")


class ConfigParseError(LoadError):
    """A config file could not be read or parsed at all (syntax error, missing ``_base_``, cycle).

    Single assignments the walker does not accept are *not* errors: they are listed in
    ``ParsedConfig.unparsed``.
    """


class OutputError(OSError):
    """An output file or folder could not be written (parent missing or not writable, name taken).

    Subclasses ``OSError`` so that a caller that only knows about ``OSError`` still reports it as
    an expected failure.
    """


class ConfigBudgetError(ConfigParseError):
    """A config needs more work or memory than any real config (a hostile or corrupt file).

    Unlike a syntax error, which leaves a checkpoint usable without its stored config, every
    command refuses a file whose config exceeds the budget.
    """
