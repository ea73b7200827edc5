"""Terminal text that never cuts a value: tables that fall back to stacked key/value blocks when
they do not fit the width, key/value blocks and wrapped text (rich renderables; rich is imported
when something is built)."""

from __future__ import annotations

import textwrap
from typing import Any, Sequence


def _cell_width(text: str) -> int:
    return max((len(line) for line in str(text).split("\n")), default=0)


def fitted_table(columns: Sequence[str], rows: Sequence[Sequence[str]], *, width: int,
                 title: str | None = None, caption: str | None = None,
                 right: Sequence[str] = ()) -> Any:
    """A Rich table when every cell fits on one line within ``width``, else stacked blocks."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    natural = [max([_cell_width(c)] + [_cell_width(r[i]) for r in rows]) for i, c in enumerate(columns)]
    gaps = 2 * (len(columns) - 1)
    head = sum(natural[:-1]) + gaps
    if head + natural[-1] <= width or (len(columns) > 1 and head + 16 <= width):
        t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                  show_edge=False, collapse_padding=True)
        for i, col in enumerate(columns):
            last = i == len(columns) - 1
            t.add_column(col, justify="right" if col in right else "left",
                         no_wrap=not last, overflow="fold",
                         min_width=natural[i] if not last else min(natural[i], 16))
        for r in rows:
            t.add_row(*(Text(str(c)) for c in r))
        if caption:
            from rich.console import Group

            return Group(t, wrap_text(caption, width))
        return t
    return stacked_blocks(columns, rows, width=width, title=title, caption=caption)


def stacked_blocks(columns: Sequence[str], rows: Sequence[Sequence[str]], *, width: int,
                   title: str | None = None, caption: str | None = None) -> Any:
    """One block per row: the first cell as a heading, then ``column  value`` lines."""
    from rich.text import Text

    out = Text()
    if title:
        out.append(title + "\n", style="bold")
    for r in rows:
        out.append(wrap_text(str(r[0]), width).plain + "\n", style="bold")
        pairs = [(c, str(v)) for c, v in zip(columns[1:], r[1:]) if str(v) != ""]
        out.append_text(kv_block(pairs, width=width, indent=2))
    if caption:
        out.append_text(wrap_text(caption, width))
    out.rstrip()
    return out


def kv_block(pairs: Sequence[tuple[str, str]], *, width: int, title: str | None = None,
             indent: int = 0) -> Any:
    """``key  value`` lines, values wrapped (never cut) with a hanging indent."""
    from rich.text import Text

    out = Text()
    if title:
        out.append(title + "\n", style="bold")
    pad = indent + max((len(k) for k, _ in pairs), default=0) + 2
    for key, value in pairs:
        lines = _wrapped(str(value), width - pad)
        out.append(" " * indent)
        out.append(key.ljust(pad - indent), style="bold")
        out.append(lines[0] + "\n")
        for line in lines[1:]:
            out.append(" " * pad + line + "\n")
    return out


def wrap_text(text: str, width: int) -> Any:
    """Plain text wrapped at ``width`` (words kept whole where they fit)."""
    from rich.text import Text

    return Text("\n".join(_wrapped(str(text), width)))


def _wrapped(text: str, width: int) -> list[str]:
    """Lines of ``text`` wrapped at ``width`` (at least 20), words kept whole where they fit."""
    lines: list[str] = []
    for part in text.split("\n"):
        lines += textwrap.wrap(part, max(20, width), break_on_hyphens=False) or [""]
    return lines
