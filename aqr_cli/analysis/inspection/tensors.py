"""Values a checkpoint's tensors hold: the learned bias scale, the weight head, NaN/Inf counts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from aqr_cli.analysis.inspection.reports import BiasScaleReport, NonFiniteReport, WeightHeadReport
from aqr_cli.inputs.checks import sourced, tensor_at

UPSTREAM_BIAS_DEFAULTS = dict(bias_scale=2.5, learnable_scale=True, min_scale=0.5, max_scale=5.0)


def bias_scale_report(sd, pre, cfg) -> BiasScaleReport | None:
    """The learned bias scale and its clamp settings (config, else upstream defaults)."""
    t = tensor_at(sd, pre + "attention_bias_generator.bias_scale")
    if t is None or t.numel() != 1:
        return None
    raw = float(t.detach().float().reshape(-1)[0])
    vals, src = {}, "config"
    for key, dflt in UPSTREAM_BIAS_DEFAULTS.items():
        item = sourced(cfg, "attention_bias_config", key)
        vals[key] = dflt if item is None or item.value is None else item.value
    if cfg is None:
        src = "upstream defaults (no config)"
    learnable = bool(vals["learnable_scale"])
    lo, hi = float(vals["min_scale"]), float(vals["max_scale"])
    eff = float(np.clip(np.float32(raw), np.float32(lo), np.float32(hi))) if learnable else raw
    return BiasScaleReport(raw=raw, effective=eff, init=float(vals["bias_scale"]), min=lo, max=hi,
                           learnable=learnable, shape=list(t.shape), settings_source=src)


def weight_head_report(sd, pre) -> WeightHeadReport | None:
    """The generator's ``weight_predictor`` bias and row norms (None without a 2-row head)."""
    b = tensor_at(sd, pre + "aqr_weight_generator.weight_predictor.bias")
    w = tensor_at(sd, pre + "aqr_weight_generator.weight_predictor.weight")
    if b is None or b.numel() != 2:
        return None
    norms = [float(x) for x in w.float().norm(dim=1)] if w is not None and w.dim() == 2 else []
    return WeightHeadReport(bias_raw=[float(x) for x in b.float()], weight_row_norm=norms)


def nonfinite_report(tensors: Mapping[str, Any]) -> NonFiniteReport:
    """NaN/Inf per floating tensor; one batched test for the many small ones, each tensor once."""
    floats: dict[int, Any] = {}
    kind: dict[int, bool] = {}  # id -> a non-empty floating tensor (asked once per tensor)
    keys: list[tuple[str, int]] = []
    for key, t in tensors.items():
        i = id(t)
        if i not in kind:
            kind[i] = isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel() > 0
            if kind[i]:
                floats[i] = t
        if kind[i]:
            keys.append((key, i))
    small = [t for t in floats.values() if t.numel() <= 4096]
    suspects = {i for i, t in floats.items() if t.numel() > 4096}
    if small:
        flat = torch.cat([t.detach().reshape(-1).float() for t in small])
        if not bool(torch.isfinite(flat).all()):
            suspects |= {id(t) for t in small}
    bad = []
    for key, i in keys:
        t = floats[i]
        if i in suspects and not bool(torch.isfinite(t).all()):
            bad.append({"key": key, "nan": int(torch.isnan(t).sum()), "inf": int(torch.isinf(t).sum())})
    return NonFiniteReport(len(keys), bad)
