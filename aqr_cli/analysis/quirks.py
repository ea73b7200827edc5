"""Quirk warnings as data: collected while a source is loaded or analysed, merged, and written
into summary documents in quirk-number order."""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Iterator

from aqr_cli.core.errors import QuirkWarning


@contextmanager
def collect_quirks() -> Iterator[list]:
    """Collect :class:`QuirkWarning`s raised inside the block (other warnings pass through)."""
    found: list = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", QuirkWarning)
        yield found
    for w in caught:
        if isinstance(w.message, QuirkWarning):
            if not any(q.quirk_id == w.message.quirk_id and q.message == w.message.message for q in found):
                found.append(w.message)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def merge_quirks(first: list, more: list) -> list:
    """``first`` plus the quirks of ``more`` whose id is not in ``first`` yet."""
    ids = {q.quirk_id for q in first}
    return first + [q for q in more if q.quirk_id not in ids]


def quirk_number(qid: str) -> int:
    """``'Q13'`` -> 13; ids without a number sort last."""
    return int(qid[1:]) if qid[1:].isdigit() else 999


@contextmanager
def collect_own_warnings() -> Iterator[list[str]]:
    """The distinct messages (one line each) of aqr's own ``UserWarning``s raised in the block,
    such as a trusted load; filled when the block ends.

    Quirk warnings of the core are left out (the findings report them), and so are warnings of
    third-party libraries, which a user cannot act on.
    """
    found: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield found
    for w in caught:
        if isinstance(w.message, QuirkWarning):
            continue
        if "aqr_cli" not in str(w.filename) or not issubclass(w.category, UserWarning):
            continue
        text = " ".join(str(w.message).split())
        if text not in found:
            found.append(text)
