"""Query groups for the attention summaries: LiDAR/camera preference and the size class of the
nearest object (spec 10.1 items 9 and 14)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from aqr_cli.core.configs import CLASS_NAMES, SMALL_CLASSES

BALANCED_DIFF = 0.2


NEAREST_OBJECT_RADIUS = 3.0


def preference_groups(lidar_weights: torch.Tensor, camera_weights: torch.Tensor) -> dict:
    """Query masks ``[B, Q]``: ``prefer_lidar`` (lw > cw), ``prefer_camera`` (cw > lw) and
    ``balanced`` (|lw - cw| < 0.2; overlaps the other two, as upstream's debug print)."""
    lw, cw = lidar_weights.detach().float(), camera_weights.detach().float()
    return {"prefer_lidar": lw > cw, "prefer_camera": cw > lw,
            "balanced": (lw - cw).abs() < BALANCED_DIFF}


def distance_to_boxes(xy: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Distance (m) from points ``[Q, 2]`` to rotated box footprints ``[N, >=7]``: ``[Q, N]``, 0 inside."""
    boxes = boxes.double()
    d = xy.double()[:, None, :] - boxes[None, :, :2]
    cos, sin = torch.cos(boxes[:, 6]), torch.sin(boxes[:, 6])
    lx = d[..., 0] * cos + d[..., 1] * sin
    ly = -d[..., 0] * sin + d[..., 1] * cos
    ex = (lx.abs() - boxes[:, 3] / 2).clamp_min(0)
    ey = (ly.abs() - boxes[:, 4] / 2).clamp_min(0)
    return torch.sqrt(ex ** 2 + ey ** 2)


def is_small_label(labels) -> np.ndarray:
    """True for labels (indices into CLASS_NAMES or names) of small classes (spec 10.1 item 14)."""
    out = []
    for lab in np.asarray(labels).reshape(-1).tolist():
        name = lab if isinstance(lab, str) else (CLASS_NAMES[lab] if 0 <= int(lab) < len(CLASS_NAMES) else "")
        out.append(name in SMALL_CLASSES)
    return np.asarray(out, dtype=bool)


def size_groups(query_xy: torch.Tensor, boxes: Sequence, labels: Sequence,
                radius: float = NEAREST_OBJECT_RADIUS) -> dict:
    """Query masks ``[B, Q]`` by the size class of the nearest object footprint within ``radius`` m.

    ``query_xy [B, Q, 2]`` metres; ``boxes[b] [N, 9]``, ``labels[b] [N]`` per sample. Groups:
    ``small`` (pedestrian, traffic_cone, bicycle, motorcycle), ``large`` (the other classes),
    ``none`` (no footprint within ``radius``).
    """
    b, q, _ = query_xy.shape
    small = torch.zeros(b, q, dtype=torch.bool)
    large = torch.zeros(b, q, dtype=torch.bool)
    for i in range(b):  # per sample: its own boxes (few samples)
        bx = torch.as_tensor(np.asarray(boxes[i], dtype=np.float64)).reshape(-1, 9) if len(boxes[i]) else None
        if bx is None or bx.shape[0] == 0:
            continue
        dist = distance_to_boxes(query_xy[i], bx)
        best = dist.argmin(1)
        near = dist.gather(1, best[:, None]).squeeze(1) <= radius
        is_small = torch.from_numpy(is_small_label(labels[i]))[best]
        small[i] = near & is_small
        large[i] = near & ~is_small
    return {"small": small, "large": large, "none": ~(small | large)}


def query_groups(lidar_weights: torch.Tensor | None = None, camera_weights: torch.Tensor | None = None,
                 query_xy: torch.Tensor | None = None, boxes=None, labels=None,
                 radius: float = NEAREST_OBJECT_RADIUS) -> dict:
    """``{'by_preference': ..., 'by_size': ...}`` for :meth:`AttentionResult.summary` (each optional)."""
    out = {}
    if lidar_weights is not None and camera_weights is not None:
        out["by_preference"] = preference_groups(lidar_weights, camera_weights)
    if query_xy is not None and boxes is not None and labels is not None:
        out["by_size"] = size_groups(query_xy, boxes, labels, radius)
    return out
