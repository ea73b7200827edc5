"""JSON documents without NaN or Inf: such floats become null and are counted."""

from __future__ import annotations

import math
from typing import Any


def finite_json(doc: Any) -> tuple[Any, int]:
    """``(doc with every NaN/Inf float replaced by None, how many were replaced)``.

    Tuples become lists; numpy and torch scalars become Python numbers. Iterative, so deep
    documents cannot exhaust the stack.
    """
    count = 0

    def leaf(v: Any) -> Any:
        nonlocal count
        if hasattr(v, "item") and not isinstance(v, (dict, list, tuple)) and getattr(v, "ndim", 0) == 0:
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            count += 1
            return None
        return v

    root: list = [doc]
    stack: list = [(root, 0)]
    while stack:
        parent, key = stack.pop()
        value = parent[key]
        if isinstance(value, dict):
            value = dict(value)
            stack.extend((value, k) for k in value)
        elif isinstance(value, (list, tuple)):
            value = list(value)
            stack.extend((value, i) for i in range(len(value)))
        else:
            value = leaf(value)
        parent[key] = value
    return root[0], count
