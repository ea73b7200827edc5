"""The one output sink of every command: data to stdout, messages to stderr.

Modes: human (tables and key/value blocks on stdout), ``--json`` (one JSON document on stdout,
nothing else there) and ``-q/--quiet`` (no tables, notes, warnings or progress; errors and
``--json`` documents still print). Every message is one line, never wrapped:

    aqr: warning: [SOURCE: ]ID: message
    aqr: note: [SOURCE: ]message
    aqr: wrote N files to DIR
    aqr: error: message          (exit code 1, see :mod:`aqr_cli.cli._common`)

Human tables never cut a value: a table that does not fit the terminal (``COLUMNS`` when piped,
80 by default) is shown as stacked key/value blocks, and long values wrap with a hanging indent.
Only typer-free, light imports here: rich is imported when something is printed.
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from aqr_cli.views.text import fitted_table, kv_block


def output_dir(out, command: str):
    """The ``--out`` contract (:func:`aqr_cli.io.outdir.output_folder`), imported when used."""
    from aqr_cli.io.outdir import output_folder

    return output_folder(out, command)


def one_line(text: object) -> str:
    """``text`` with every run of whitespace (newlines included) folded to one space."""
    return " ".join(str(text).split())


def message_line(kind: str, message: str, *, id: str | None = None,
                 source: str | None = None) -> str:
    """``aqr: KIND: [SOURCE: ][ID: ]message`` as one line."""
    parts = [f"aqr: {kind}:"]
    if source:
        parts.append(f"{one_line(source)}:")
    if id:
        parts.append(f"{id}:")
    parts.append(one_line(message))
    return " ".join(parts)


class Sink:
    """Where a command's output goes; one per command run."""

    def __init__(self, *, json_mode: bool = False, quiet: bool = False):
        self.json_mode, self.quiet = json_mode, quiet
        self._said: set[str] = set()

    def _err(self, line: str) -> None:
        if line in self._said:
            return
        self._said.add(line)
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def warn(self, message: str, id: str | None = None, source: str | None = None) -> None:
        """One ``aqr: warning:`` line on stderr (silent with --quiet; repeats dropped)."""
        if not self.quiet:
            self._err(message_line("warning", message, id=id, source=source))

    def note(self, message: str, source: str | None = None) -> None:
        """One ``aqr: note:`` line on stderr (silent with --quiet)."""
        if not self.quiet:
            self._err(message_line("note", message, source=source))

    def wrote(self, n_files: int, folder: str | Path) -> None:
        """``aqr: wrote N files to DIR`` on stderr (silent with --quiet)."""
        if not self.quiet:
            self._err(f"aqr: wrote {n_files} file{'s' if n_files != 1 else ''} to {folder}")

    def quirks(self, quirks: Sequence[Any], source: str | None = None) -> None:
        """One warning per quirk (objects with ``quirk_id``/``message`` or dicts ``id``/``message``)."""
        for q in quirks:
            qid = q["id"] if isinstance(q, dict) else q.quirk_id
            msg = q["message"] if isinstance(q, dict) else q.message
            self.warn(msg, id=qid, source=source)

    def json(self, doc: Any) -> None:
        """One JSON document on stdout (NaN/Inf are refused: convert them to null first)."""
        sys.stdout.write(json.dumps(doc, indent=2, allow_nan=False) + "\n")
        sys.stdout.flush()

    def data(self, renderable: Any) -> None:
        """A table, key/value block or text on stdout (human mode only)."""
        if self.json_mode or self.quiet:
            return
        console().print(renderable)

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[str]], *,
              title: str | None = None, caption: str | None = None,
              right: Sequence[str] = ()) -> None:
        """A table that never cuts a value (stacked blocks when it does not fit); human mode."""
        if self.json_mode or self.quiet:
            return
        con = console()
        con.print(fitted_table(columns, rows, width=con.width, title=title, caption=caption,
                               right=right))
        con.print()

    def kv(self, pairs: Sequence[tuple[str, str]], *, title: str | None = None) -> None:
        """Aligned ``key  value`` lines, values wrapped with a hanging indent; human mode."""
        if self.json_mode or self.quiet:
            return
        con = console()
        con.print(kv_block(pairs, width=con.width, title=title))

    def show(self, report: Any) -> None:
        """Make the calls a view recorded (:class:`aqr_cli.views.terminal.Report`), in order."""
        for name, args, kw in report.calls:
            getattr(self, name)(*args, **kw)

    @contextmanager
    def progress(self, total: int, label: str = "working") -> Iterator[Any]:
        """A transient progress bar on stderr when it is a terminal; yields ``advance()``."""
        if self.quiet or self.json_mode or total <= 2 or not sys.stderr.isatty():
            yield lambda: None
            return
        from rich.console import Console
        from rich.progress import Progress

        bar = Progress(console=Console(stderr=True), transient=True)
        task = bar.add_task(label, total=total)
        bar.start()
        try:
            yield lambda: bar.advance(task)
        finally:
            bar.stop()


class _Console:
    """A Rich console on stdout that, when piped, writes lines without trailing blanks."""

    def __init__(self):
        from rich.console import Console

        self.rich = Console(file=sys.stdout, highlight=False, soft_wrap=False, emoji=False)
        self.width = self.rich.width

    def print(self, *objects: Any, **kw: Any) -> None:
        if self.rich.is_terminal:
            self.rich.print(*objects, **kw)
            return
        with self.rich.capture() as cap:
            self.rich.print(*objects, **kw)
        text = "\n".join(line.rstrip() for line in cap.get().split("\n"))
        sys.stdout.write(text)
        sys.stdout.flush()


def console() -> _Console:
    """The stdout console: terminal width, or ``COLUMNS`` (80 by default) when piped."""
    return _Console()
