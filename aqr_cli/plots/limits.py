"""Colour limits of figures, computed where the view is made (numpy only: a view names its
figures without importing matplotlib, which only the process that draws them loads)."""

from __future__ import annotations

from typing import Iterable

import numpy as np


def symmetric_limit(*arrays: Iterable, floor: float = 1e-6) -> float:
    """max |x| over all arrays (at least ``floor``), for a shared signed colour range."""
    m = max((float(np.nanmax(np.abs(a))) if np.size(a) else 0.0) for a in arrays)
    return max(m, floor)


def bias_limit(max_scale: float | None, mode: str, *arrays) -> float:
    """Colour range of bias heatmaps: ``fixed`` = the final clamp bound min(5, max_scale), so two
    runs compare by eye; ``auto`` = max |b| of the arrays."""
    if mode == "auto":
        return symmetric_limit(*arrays)
    return min(5.0, float(max_scale)) if max_scale else 5.0
