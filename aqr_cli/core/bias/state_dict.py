"""Checkpoint keys of the bias generator: prefix detection and the stored window parity."""

from __future__ import annotations

import torch

from ..errors import AQRInputError
from .windows import PARITIES, window_axis_offsets


def strip_prefix(state_dict: dict, prefix: str | None) -> dict:
    """Keys of the generator without ``prefix`` (auto-detected from ``...bias_scale``)."""
    if prefix is None:
        hits = [k[: -len("bias_scale")] for k in state_dict if k.endswith("bias_scale")]
        if len(hits) != 1:
            raise AQRInputError(
                f"state_dict: expected exactly one '*bias_scale' key, found {len(hits)}")
        prefix = hits[0]
    sd = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    for key in ("bias_scale", "y_offsets", "x_offsets", "window_offsets_bev",
                "window_offsets_pers"):
        if key not in sd:
            raise AQRInputError(f"state_dict: missing '{prefix}{key}'")
    return sd


def infer_parity(y_offsets: torch.Tensor, window_size: int) -> str:
    """'head' or 'symmetric' from the stored per-axis offsets, else raise."""
    axis = torch.unique(y_offsets.long())
    for parity in PARITIES:
        want = window_axis_offsets(int(window_size), parity)
        if torch.equal(axis, want) and y_offsets.numel() == want.numel() ** 2:
            return parity
    raise AQRInputError(f"y_offsets: stored offsets {axis.tolist()} fit window_size={window_size} "
                        f"under neither parity {PARITIES}")
