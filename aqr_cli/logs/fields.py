"""The numbers of one log record: ``key: value`` fields of a text record, numeric fields of a
JSON record, and metric names without their evaluator prefix."""

from __future__ import annotations

import re
from typing import Any

_TOKEN_SPLIT = re.compile(r",\s+|\t+|\s{2,}")
_DURATION = re.compile(r"^\d+:\d{2}:\d{2}$|^\d+ days?")
_STRING_FIELDS = {"eta", "mode", "exp_name"}


def strip_prefix(key: str) -> str:
    """``pts_bbox_NuScenes/car_AP_dist_0.5`` -> ``car_AP_dist_0.5`` (last path part)."""
    return key.rsplit("/", 1)[-1].strip()


def json_numbers(obj: dict) -> dict[str, float]:
    """Numeric fields of a JSON record; a dict of learning rates becomes ``lr_<group>`` keys."""
    out: dict[str, float] = {}
    for key, value in obj.items():
        if key in ("mode", "epoch", "iter") or isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            out[key] = float(value)
        elif isinstance(value, dict) and key == "lr":
            out.update((f"lr_{k}", float(v)) for k, v in value.items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool))
    return out


def as_int(x: Any) -> int | None:
    """``int(x)``, or None for None and what is not a number."""
    if x is None:
        return None
    try:
        return int(x)
    except (TypeError, ValueError):
        return None


def record_fields(tail: str) -> tuple[dict[str, float], bool]:
    """``key: value`` pairs of a record tail (mmcv ``, ``/tab or mmengine double-space separated).

    Numbers (``nan``/``inf`` included) become floats; ``eta`` and other known strings are
    dropped; a value that is neither makes the second item True.
    """
    out: dict[str, float] = {}
    bad = False
    tail = tail.strip()
    # mmcv separates with ", " and a tab; mmengine with two spaces (the slower regex split)
    tokens = _TOKEN_SPLIT.split(tail) if "  " in tail else tail.replace("\t", ", ").split(", ")
    for tok in tokens:
        key, sep, value = tok.partition(": ")
        if not sep:
            key, sep, value = tok.partition(":")
            if not sep or not key.strip():
                bad = bad or bool(tok.strip())
                continue
        value = value.strip().rstrip(",")
        if " " in value:
            pairs = re.findall(r"(\S+):\s+(\S+)", tok)
        else:
            pairs = [(key, value)]
        for key, value in pairs:
            try:
                out[key.strip()] = float(value)
            except ValueError:
                if key.strip() not in _STRING_FIELDS and not _DURATION.match(value):
                    bad = True
    return out, bad
