"""What a view shows on the terminal, as data: the sink calls to make, in order.

A view builds a :class:`Report` (tables, key/value blocks, notes, warnings, quirks, the
"wrote" line) from a result and returns it; the command hands it to its sink
(``aqr_cli.cli.output.Sink.show``), which decides what the mode (human, ``--json``, ``-q``)
prints. Views thus never write, and a notebook can read a report's calls as they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence


class Report:
    """Sink calls recorded in order: ``(method name, args, keyword args)`` in :attr:`calls`."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple, dict[str, Any]]] = []

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[str]], *,
              title: str | None = None, caption: str | None = None,
              right: Sequence[str] = ()) -> None:
        """A table (stdout, human mode)."""
        self.calls.append(("table", (columns, rows), dict(title=title, caption=caption, right=right)))

    def kv(self, pairs: Sequence[tuple[str, str]], *, title: str | None = None) -> None:
        """Aligned key/value lines (stdout, human mode)."""
        self.calls.append(("kv", (pairs,), dict(title=title)))

    def note(self, message: str, source: str | None = None) -> None:
        """An ``aqr: note:`` line (stderr)."""
        self.calls.append(("note", (message,), dict(source=source)))

    def warn(self, message: str, id: str | None = None, source: str | None = None) -> None:
        """An ``aqr: warning:`` line (stderr)."""
        self.calls.append(("warn", (message,), dict(id=id, source=source)))

    def quirks(self, quirks: Sequence[Any], source: str | None = None) -> None:
        """One warning per quirk (stderr)."""
        self.calls.append(("quirks", (quirks,), dict(source=source)))

    def wrote(self, n_files: int, folder: str | Path) -> None:
        """The ``aqr: wrote N files to DIR`` line (stderr)."""
        self.calls.append(("wrote", (n_files, folder), {}))
