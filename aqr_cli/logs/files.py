"""Which files a list of log arguments names: files as given, folders, quoted globs."""

from __future__ import annotations

import glob
import re
from pathlib import Path
from typing import Iterable

from aqr_cli.io.errors import LoadError


def _natural(p: Path):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]


def logs_in_folder(folder: Path) -> list[Path]:
    """``*.log`` files of a folder, plus ``*.log.json`` files whose text log is not there
    (mmcv writes both for one run; the text log holds more: header, config, debug prints)."""
    texts = {p.name for p in folder.glob("*.log") if p.is_file()}
    out = [folder / n for n in texts]
    out += [p for p in folder.glob("*.log.json")
            if p.is_file() and p.name[: -len(".json")] not in texts]
    return sorted(out, key=_natural)


def expand_logs(paths: Iterable[Path]) -> list[Path]:
    """Files as given; a folder gives its logs; an unmatched quoted glob is expanded here.

    The same file named twice is kept once. Raises :class:`LoadError` for a pattern or folder
    that names no log.
    """
    out: list[Path] = []
    for p in paths:
        s = str(p)
        if any(ch in s for ch in "*?[") and not p.exists():
            hits = sorted((Path(h) for h in glob.glob(s) if Path(h).is_file()), key=_natural)
            if not hits:
                raise LoadError(s, "no file matches this pattern")
            out.extend(hits)
        elif p.is_dir():
            hits = logs_in_folder(p)
            if not hits:
                raise LoadError(p, "folder holds no *.log or *.log.json file")
            out.extend(hits)
        else:
            out.append(p)
    seen: set[Path] = set()
    unique = []
    for p in out:
        key = p.resolve() if p.exists() else p
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique
