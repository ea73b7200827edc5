"""Upstream's debug-print statistics of a bias (spec 5.3), over all entries and in-window."""

from __future__ import annotations

import torch

from .sparse import SparseBias


def summary(vals: torch.Tensor, n_total: int, weight: torch.Tensor | None = None) -> dict:
    """Statistics of ``n_total`` entries: ``vals`` (each repeated ``weight`` times) plus zeros.

    std is unbiased like ``torch.std``; ``negative_upstream`` is upstream's printed "Negative"
    (``1 - positive``, zeros included); ``negative`` counts strictly negative entries.
    """
    nan = float("nan")
    if n_total == 0:
        return dict(count=0, mean=nan, std=nan, min=nan, max=nan, positive=nan,
                    negative_upstream=nan, negative=nan, zero=nan, strong_positive=nan,
                    strong_negative=nan, near_zero=nan)
    v = vals.detach().reshape(-1).float()
    wt = None if weight is None else weight.double().reshape(-1).expand(v.numel())

    def total(x: torch.Tensor) -> float:
        return float(x.sum(dtype=torch.float64) if wt is None else (x.double() * wt).sum())

    n_zero = n_total - (v.numel() if wt is None else float(wt.sum()))
    mean = total(v) / n_total
    dev = v.double() - mean
    ss = total(dev.mul_(dev)) + n_zero * mean ** 2
    del dev
    lo = float(v.min()) if v.numel() else float("inf")
    hi = float(v.max()) if v.numel() else float("-inf")
    if n_zero > 0:
        lo, hi = min(lo, 0.0), max(hi, 0.0)

    def frac(cond: torch.Tensor, zero_counts: bool) -> float:
        hits = int(torch.count_nonzero(cond)) if wt is None else total(cond)  # exact counts
        return (hits + (n_zero if zero_counts else 0.0)) / n_total

    positive = frac(v > 0, False)
    return dict(count=n_total, mean=mean, std=(ss / (n_total - 1)) ** 0.5 if n_total > 1 else nan,
                min=lo, max=hi, positive=positive, negative_upstream=1.0 - positive,
                negative=frac(v < 0, False), zero=frac(v == 0, True),
                strong_positive=frac(v > 2.0, False), strong_negative=frac(v < -2.0, False),
                near_zero=frac(v.abs() < 0.1, True))


def weight_summary(w: torch.Tensor) -> dict:
    """mean / unbiased std / min / max of per-query weights."""
    w = w.detach().double().reshape(-1)
    if w.numel() == 0:
        return dict(mean=float("nan"), std=float("nan"), min=float("nan"), max=float("nan"))
    std = float(w.std()) if w.numel() > 1 else float("nan")
    return dict(mean=float(w.mean()), std=std, min=float(w.min()), max=float(w.max()))


def sparse_stats(bias: SparseBias) -> tuple[dict, dict, str]:
    """(all_entries, in_window, basis) statistics of a SparseBias without densifying."""
    b, q, _ = bias.shape
    hw, n_cam, k = bias.num_bev_features, bias.num_camera_features, bias.k_bev
    vals, mask = bias.unclamped_values().detach(), bias.mask
    reps = torch.ones_like(vals)
    if bias.is_global:  # each entry stands for its whole segment
        reps = torch.tensor([float(hw), float(n_cam)], dtype=vals.dtype).expand_as(vals)
    all_e: dict[str, dict] = {}
    in_w: dict[str, dict] = {}
    for name, sl, n in (("overall", slice(None), hw + n_cam), ("bev", slice(None, k), hw),
                        ("camera", slice(k, None), n_cam)):
        m = mask[..., sl]
        v = vals[..., sl][m]
        w = reps[..., sl][m] if bias.is_global else None  # local: every entry counts once
        n_in = int(w.sum()) if w is not None else v.numel()
        all_e[name] = summary(v, b * q * n, w)
        in_w[name] = summary(v, n_in, w)
    return all_e, in_w, "windows"


def dense_stats(bias: torch.Tensor, hw: int) -> tuple[dict, dict, str]:
    """(all_entries, in_window, basis) statistics of a dense [B, Q, F] bias; BEV columns ``[0, hw)``."""
    x = bias.detach().float()
    all_e: dict[str, dict] = {}
    in_w: dict[str, dict] = {}
    for name, part in (("overall", x), ("bev", x[..., :hw]), ("camera", x[..., hw:])):
        flat = part.reshape(-1)
        nz = flat[flat != 0]
        all_e[name] = summary(flat, flat.numel())
        in_w[name] = summary(nz, nz.numel())
    return all_e, in_w, "nonzero"
