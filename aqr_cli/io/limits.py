"""Work and memory budgets for untrusted input, and bounded reads of small text files.

A file from another machine must not buy more work than its size can honestly justify. The
limits here are deliberately far above anything a real config, rig or checkpoint needs:

- ``AQR_MEMORY_BUDGET`` (environment, bytes; ``K``/``M``/``G`` suffixes allowed; default 8G):
  the most memory a command may plan to allocate for dense per-query tensors, estimated from
  the feature shapes, the batch and the query count before anything is allocated.
- config files (``--config``, every ``_base_``, a checkpoint's ``meta['config']``): at most
  ``MAX_CONFIG_BYTES``; rig files at most ``MAX_RIG_BYTES``; both must be regular files.
- loaded objects: at most ``MAX_NESTING`` levels deep and ``MAX_NODES`` containers and values
  when expanded (shared references counted every time they are reached).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from aqr_cli.io.errors import LoadError

MAX_CONFIG_BYTES = 8 * 2**20
MAX_RIG_BYTES = 2**20
MAX_NESTING = 100
MAX_NODES = 5_000_000
DEFAULT_MEMORY_BUDGET = 8 * 2**30
MEMORY_ENV = "AQR_MEMORY_BUDGET"

_SUFFIX = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def memory_budget() -> int:
    """Bytes a command may plan to allocate (``AQR_MEMORY_BUDGET``, default 8 GiB)."""
    text = os.environ.get(MEMORY_ENV, "").strip().upper().removesuffix("IB").removesuffix("B")
    if not text:
        return DEFAULT_MEMORY_BUDGET
    unit = text[-1] if text[-1] in _SUFFIX else ""
    number = text[:-1] if unit else text
    try:
        value = float(number) * _SUFFIX[unit]
    except ValueError:
        raise LoadError(None, f"{MEMORY_ENV}={os.environ[MEMORY_ENV]!r} is not a size "
                              "(e.g. 16G)") from None
    return int(value)


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def regular_file(path: str | os.PathLike, max_bytes: int, what: str,
                 error: type[LoadError] = LoadError) -> int:
    """Size of ``path`` if it is an existing regular file of at most ``max_bytes``, else ``error``.

    Checked with ``os.stat`` before anything opens the file, so a FIFO, a device such as
    ``/dev/zero`` or a huge file is refused without blocking or reading.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(path, "no such file") from None
    except OSError as e:
        raise error(path, f"cannot access the file: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise error(path, f"is a directory, not {what}")
    if not stat.S_ISREG(st.st_mode):
        raise error(path, f"is not a regular file (a pipe, socket or device?), not {what}")
    if st.st_size > max_bytes:
        raise error(path, f"{format_bytes(st.st_size)} is too large for {what} "
                          f"(at most {format_bytes(max_bytes)})")
    return st.st_size


def read_text_bounded(path: str | os.PathLike, max_bytes: int, what: str,
                      error: type[LoadError] = LoadError) -> str:
    """UTF-8 text of a regular file of at most ``max_bytes`` (checked before and while reading)."""
    regular_file(path, max_bytes, what, error)
    try:
        with open(Path(path), "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise error(path, f"cannot read: {e.strerror or e}") from None
    if len(data) > max_bytes:
        raise error(path, f"grew past {format_bytes(max_bytes)} while being read")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise error(path, "not UTF-8 text") from None
