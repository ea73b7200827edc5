"""Per-query weight statistics and the researchers' reading bands (spec 10.1 items 1-3)."""

from __future__ import annotations

import math

import torch

# Reading bands of the design notes (spec 10.1 item 1), as (upper bound, label); first match wins.
MEAN_BANDS = (
    (0.35, "low: below neutral (suppressing)"),
    (0.60, "neutral (~0.5)"),
    (0.85, "relies on the modality (~0.7)"),
    (math.inf, "over-reliance (~1.0)"),
)
STD_BANDS = (
    (0.05, "AQR learnt nothing (std ~0.01)"),
    (0.12, "weak discrimination"),
    (0.22, "good discrimination (std 0.15-0.17)"),
    (math.inf, "extreme (std ~0.3)"),
)
BALANCED_DIFF = 0.2


def band(value: float, bands) -> str:
    for upper, label in bands:
        if value < upper:
            return label
    return bands[-1][1]


def _f(x) -> float:
    return float(x)


def weight_stats(w: torch.Tensor) -> dict:
    """mean/std (unbiased, as upstream)/min/max of per-query weights [B, Q], with reading bands."""
    w = w.detach().float().reshape(-1)
    mean, std = _f(w.mean()), _f(w.std()) if w.numel() > 1 else 0.0
    return {
        "mean": mean, "std": std, "min": _f(w.min()), "max": _f(w.max()),
        "share_negative": _f((w < 0).float().mean()),
        "mean_band": band(mean, MEAN_BANDS), "std_band": band(std, STD_BANDS),
    }


def preference_shares(lidar: torch.Tensor, camera: torch.Tensor) -> dict:
    """Shares of queries with LiDAR > camera, camera > LiDAR, and |diff| < 0.2 (spec 10.1 item 2)."""
    lw, cw = lidar.detach().float().reshape(-1), camera.detach().float().reshape(-1)
    prefer_lidar = _f((lw > cw).float().mean())
    out = {
        "prefer_lidar": prefer_lidar,
        "prefer_camera": _f((cw > lw).float().mean()),
        "balanced": _f(((lw - cw).abs() < BALANCED_DIFF).float().mean()),
        "collapse": None,
    }
    if prefer_lidar > 0.9:
        out["collapse"] = "LiDAR (>90% of queries prefer LiDAR)"
    elif prefer_lidar < 0.1:
        out["collapse"] = "camera (<10% of queries prefer LiDAR)"
    return out


def map_stats(weight_map: torch.Tensor, query_weights: torch.Tensor) -> dict:
    """max, mean, share of non-zero cells and rendered-mean / query-mean of a weight map."""
    m = weight_map.detach().float()
    qmean = _f(query_weights.detach().float().mean())
    mean = _f(m.mean())
    return {
        "max": _f(m.max()), "mean": mean, "min": _f(m.min()),
        "nonzero_share": _f((m != 0).float().mean()),
        "rendered_over_query_mean": (mean / qmean) if qmean != 0 else None,
    }


def split_dn(num_queries: int, num_matching: int = 900) -> dict:
    """DN share of a query set (spec Q19): the first ``Nq - 900`` queries are denoising queries."""
    dn = max(num_queries - num_matching, 0)
    return {"num_queries": num_queries, "num_dn": dn, "num_matching": num_queries - dn,
            "dn_share": dn / num_queries if num_queries else 0.0}


