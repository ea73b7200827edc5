"""Window offsets (both parities), the window-size check and the view-overflow merge."""

from __future__ import annotations

import operator

import torch

from ..errors import AQRInputError

PARITIES = ("head", "symmetric")


def window_axis_offsets(window_size: int, parity: str = "head") -> torch.Tensor:
    """Per-axis window offsets [n] int64.

    ``head`` (upstream HEAD): even ``ws`` -> ``-ws/2+1 .. ws/2`` (8 -> -3..4, n = ws);
    ``symmetric`` (``CMTTEST/bias`` snapshot, and odd ``ws`` in both): ``-ws//2 .. ws//2``.
    """
    half = window_size // 2
    if parity == "head" and window_size % 2 == 0:
        return torch.arange(-half + 1, half + 1)
    return torch.arange(-half, half + 1)


def check_window(window_size, parity: str, min_side: int) -> int:
    """Validate ``window_size`` against the smallest feature-map side; return it as int."""
    if parity not in PARITIES:
        raise AQRInputError(f"window_parity: expected one of {PARITIES}, got {parity!r}")
    try:
        ws = operator.index(window_size)
    except TypeError:
        ws = 0
    if isinstance(window_size, bool) or ws < 1:
        raise AQRInputError(f"window_size: expected a positive integer, got {window_size!r}")
    extent = len(window_axis_offsets(ws, parity))
    if extent > min_side:
        raise AQRInputError(
            f"window_size: a {extent}x{extent} window does not fit the smallest feature-map "
            f"side {min_side} (bev_feature_shape / pers_feature_shape); "
            f"expected window_size <= {min_side}")
    return ws


def merge_view_overflow(v: torch.Tensor, num_views: int, raw: torch.Tensor, valid: torch.Tensor):
    """Collapse windows of views outside [0, V) into their first valid slot.

    Such a window's cells all clamp to one camera column, where upstream's ``scatter_add_``
    sums them in slot order; summing with ``scatter_add`` in the same order gives the same
    float32 value. Returns (values, validity) [B, Q, K].
    """
    oob = ((v < 0) | (v >= num_views)).unsqueeze(-1)
    if not bool(oob.any()):
        return raw, valid
    slot = torch.arange(valid.shape[-1], device=valid.device)
    leader = valid.int().argmax(-1, keepdim=True)
    idx = torch.where(oob, leader, slot)
    merged = torch.zeros_like(raw).scatter_add(-1, idx, raw)
    keep = torch.where(oob, (slot == leader) & valid.any(-1, keepdim=True), valid)
    return merged, keep
