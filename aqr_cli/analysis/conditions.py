"""Whether a rendered weight map says anything (numpy only: the figure workers use it without
torch)."""

from __future__ import annotations

import numpy as np

SATURATED_SHARE = 0.5


def map_condition(weight_map, clamp: float | None) -> dict:
    """Whether a rendered weight map (any shape) says nothing: all zero, or saturated at the clamp.

    ``{'all_zero': bool, 'saturated_share': share of cells at ``clamp`` (None without clamp),
    'saturated': more than half the cells at the clamp, 'note': one line or None}``.
    """
    m = np.asarray(weight_map.detach().cpu().numpy() if hasattr(weight_map, "detach") else weight_map,
                   dtype=float)
    all_zero = not bool(np.any(m))
    share = float(np.mean(m >= clamp * (1 - 1e-6))) if clamp and m.size else None
    saturated = bool(share is not None and share > SATURATED_SHARE)
    note = ("all zero" if all_zero else
            f"saturated: {100 * share:.0f}% of cells at the clamp {clamp:g}" if saturated else None)
    return {"all_zero": all_zero, "saturated_share": share, "saturated": saturated, "note": note}
