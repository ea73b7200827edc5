"""Queries and ground-truth objects: DN vs matching rows, nearest-object assignment, per-class and
per-size modality preference with bootstrap intervals (spec 10.1 items 1 and 2).

A query belongs to the object whose BEV footprint (rotated rectangle) is nearest to the query's
BEV cell centre, when that distance is at most :data:`ASSIGN_RADIUS_M` metres (0 inside the
footprint); otherwise to no object. Size groups follow the design notes: ``small`` =
pedestrian, traffic_cone, bicycle, motorcycle; ``large`` = the other classes.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from aqr_cli.analysis.attention import NEAREST_OBJECT_RADIUS, distance_to_boxes
from aqr_cli.analysis.stats import preference_shares, weight_stats
from aqr_cli.core.configs import CLASS_NAMES, SMALL_CLASSES
from aqr_cli.core.errors import AQRInputError

ASSIGN_RADIUS_M = NEAREST_OBJECT_RADIUS
BOOTSTRAP_SAMPLES = 2000
CONFIDENCE = 0.95


def query_rows(num_queries: int, num_query: int) -> dict[str, slice]:
    """Row ranges of ``matching``, ``dn`` and ``all`` queries: the first ``Nq - num_query`` are DN."""
    dn = max(num_queries - num_query, 0)
    return {"matching": slice(dn, num_queries), "dn": slice(0, dn), "all": slice(0, num_queries)}


def weights_by_query_group(lidar: torch.Tensor, camera: torch.Tensor, num_query: int) -> dict:
    """``{matching, dn, all}`` -> count, per-modality statistics and preference; ``dn`` None when absent.

    ``lidar``/``camera`` ``[B, Nq]``; statistics pool the batch.
    """
    out: dict = {}
    for name, rows in query_rows(lidar.shape[1], num_query).items():
        lw, cw = lidar[:, rows], camera[:, rows]
        if lw.numel() == 0:
            out[name] = None
            continue
        out[name] = {"count": int(lw.numel()), "lidar": weight_stats(lw), "camera": weight_stats(cw),
                     "preference": preference_shares(lw, cw)}
    return out


def class_name(label) -> str:
    """Class name of a label (an index into CLASS_NAMES, or a name)."""
    if isinstance(label, str):
        return label
    i = int(label)
    return CLASS_NAMES[i] if 0 <= i < len(CLASS_NAMES) else f"label_{i}"


def assign_queries(query_xy: torch.Tensor, boxes, radius: float = ASSIGN_RADIUS_M) -> torch.Tensor:
    """Index ``[Q]`` of the nearest box footprint within ``radius`` metres of each query, else -1.

    ``query_xy [Q, 2]`` metres; ``boxes [N, >=7]`` (x, y, z, dx, dy, dz, yaw, ...). Ties go to
    the lower box index.
    """
    arr = np.asarray(boxes, dtype=np.float64)
    q = query_xy.shape[0]
    if arr.size == 0:
        return torch.full((q,), -1, dtype=torch.long)
    if arr.ndim != 2 or arr.shape[1] < 7:
        raise AQRInputError(f"boxes: expected shape [N, >=7] (x, y, z, dx, dy, dz, yaw, ...), "
                            f"got {list(arr.shape)}")
    bx = torch.from_numpy(arr)
    dist = distance_to_boxes(query_xy, bx)                       # [Q, N]
    best = dist.argmin(1)
    near = dist.gather(1, best[:, None]).squeeze(1) <= radius
    return torch.where(near, best, torch.full_like(best, -1))


def bootstrap_share(hits: torch.Tensor, *, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0,
                    confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean of a bool vector; None when it is empty."""
    n = int(hits.numel())
    if n == 0:
        return None
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, n, (samples, n), generator=g)
    means = hits.double()[idx].mean(1)
    lo, hi = torch.quantile(means, torch.tensor([(1 - confidence) / 2, (1 + confidence) / 2],
                                                dtype=torch.float64))
    return float(lo), float(hi)


def _group_doc(lw: torch.Tensor, cw: torch.Tensor, seed: int) -> dict:
    n = int(lw.numel())
    prefer = lw > cw
    ci = bootstrap_share(prefer, seed=seed)
    return {
        "count": n,
        "lidar_mean": float(lw.mean()), "lidar_std": float(lw.std()) if n > 1 else None,
        "camera_mean": float(cw.mean()), "camera_std": float(cw.std()) if n > 1 else None,
        "prefer_lidar": float(prefer.double().mean()),
        "prefer_camera": float((cw > lw).double().mean()),
        "balanced": float(((lw - cw).abs() < 0.2).double().mean()),
        "prefer_lidar_ci95": list(ci) if ci is not None else None,
    }


def preference_by_object(lidar: torch.Tensor, camera: torch.Tensor, query_xy: torch.Tensor,
                         boxes: Sequence, labels: Sequence, *, num_query: int,
                         radius: float = ASSIGN_RADIUS_M, seed: int = 0) -> dict:
    """Per class and per size group: count, weight mean/std, preference shares and a 95% CI.

    ``lidar``/``camera`` ``[B, Nq]``, ``query_xy [B, Nq, 2]`` metres, ``boxes[b] [N_b, >=7]``,
    ``labels[b] [N_b]`` per sample. Matching queries only (DN rows have no reference point of
    their own), pooled over the batch. ``none`` collects the queries near no object.
    """
    rows = query_rows(lidar.shape[1], num_query)["matching"]
    lw_all, cw_all, names_all = [], [], []
    for b in range(lidar.shape[0]):  # per sample: its own boxes (a handful of samples)
        xy = query_xy[b, rows]
        idx = assign_queries(xy, boxes[b], radius) if len(boxes[b]) else torch.full((xy.shape[0],), -1)
        labs = [class_name(v) for v in np.asarray(labels[b]).reshape(-1).tolist()] if len(boxes[b]) else []
        names_all += [labs[i] if i >= 0 else None for i in idx.tolist()]
        lw_all.append(lidar[b, rows].float())
        cw_all.append(camera[b, rows].float())
    lw, cw = torch.cat(lw_all), torch.cat(cw_all)
    by_class, by_size = {}, {}
    classes = [c for c in CLASS_NAMES if c in names_all] + sorted(
        {c for c in names_all if c is not None and c not in CLASS_NAMES})
    names = np.asarray([n if n is not None else "" for n in names_all], dtype=object)
    for i, c in enumerate(classes):
        sel = torch.from_numpy(names == c)
        by_class[c] = _group_doc(lw[sel], cw[sel], seed + i)
    small = torch.from_numpy(np.isin(names, list(SMALL_CLASSES)))
    assigned = torch.from_numpy(names != "")
    for j, (g, sel) in enumerate((("small", small), ("large", assigned & ~small), ("none", ~assigned))):
        if bool(sel.any()):
            by_size[g] = _group_doc(lw[sel], cw[sel], seed + 100 + j)
    return {"by_class": by_class, "by_size": by_size, "radius_m": radius,
            "scope": "matching queries, whole batch", "bootstrap_samples": BOOTSTRAP_SAMPLES}
