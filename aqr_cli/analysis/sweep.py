"""Bias-scale sweep: the additive path repeated per scale, with its attention statistics.

Scale semantics (spec 5.2 steps 2 and 4, Q13): a sweep treats every scale as a fixed scale,
so the effective scale is the value as given (upstream clamps the scale to
[min_scale, max_scale] only when it is learnable). The bias is ``clamp(s * u, -m, m)`` with
``u = w * g`` the unit-scale window values (weight times window weight) and ``m = min(5,
max_scale)`` upstream's final clamp, which bites only for fixed scales above 5: beyond it the
window values of queries with ``|w| >= 5 / s`` all saturate at +-5. Optionally the values are
rounded to float16 as upstream's fp16 dense bias is.

All scales run in one pass over query chunks: the baseline logits of a chunk are computed
once and every scale adds its own bias to a copy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch

from aqr_cli.analysis.attention import (
    DEFAULT_TOPK, AttentionPath, CrossAttentionWeights, WindowBias, compute_attention,
)
from aqr_cli.core.errors import AQRInputError

FINAL_CLAMP = 5.0
SCALE_BANDS = ((2.0, "sensitive"), (3.0, "safe"), (5.0, "edge"), (math.inf, "saturated"))
"""The researchers' softmax-sensitivity zones for |bias| in logits (spec 10.1 item 7)."""


def scale_band(value: float) -> str:
    """``sensitive`` (|b| <= 2), ``safe`` (<= 3), ``edge`` (<= 5) or ``saturated`` (> 5)."""
    a = abs(float(value))
    return next(label for upper, label in SCALE_BANDS if a <= upper)


def unit_bias(bias) -> WindowBias:
    """Unit-scale window values ``w * g`` from a SparseBias (its ``unscaled``), or a WindowBias /
    ``(indices, values, valid)`` triple whose values are already at unit scale."""
    if isinstance(bias, (WindowBias, tuple)):
        return WindowBias.from_sparse(bias)
    unscaled = getattr(bias, "unscaled", None)
    if unscaled is None:
        raise AQRInputError("bias: this SparseBias keeps no unscaled values; pass the generator "
                            "inputs to unit_bias_from_generator instead")
    return WindowBias.from_sparse(bias, values=unscaled, round_to_dtype=False)


def unit_bias_from_generator(generator, lidar_weights: torch.Tensor, camera_weights: torch.Tensor,
                             pts_bev_indices: torch.Tensor, pts_pers_indices: torch.Tensor) -> WindowBias:
    """Unit-scale windows of ``AttentionBiasGenerator.forward_sparse`` for these weights."""
    with torch.no_grad():
        sparse = generator.forward_sparse(lidar_weights, camera_weights, pts_bev_indices,
                                          pts_pers_indices)
    return unit_bias(sparse)


def scaled_bias(unit: WindowBias, scale: float, max_bias: float = FINAL_CLAMP,
                dtype: torch.dtype = torch.float32) -> WindowBias:
    """``clamp(scale * u, -max_bias, max_bias)``, rounded through ``dtype`` (e.g. float16)."""
    vals = torch.clamp(unit.values * float(scale), -max_bias, max_bias)
    if dtype != torch.float32:
        vals = vals.to(dtype).float()
    return unit.with_values(vals)


def _bias_stats(unit: WindowBias, scale: float, max_bias: float, biased: WindowBias) -> dict:
    """Window-entry statistics of one scale: max / mean |b|, share of entries at the clamp."""
    valid = unit.valid
    raw = (unit.values * float(scale))[valid].abs()
    eff = biased.values[valid].abs()
    n = int(raw.numel())
    return dict(max_abs=float(eff.max()) if n else 0.0, mean_abs=float(eff.mean()) if n else 0.0,
                share_clamped=float((raw > max_bias).float().mean()) if n else 0.0,
                entries=n)


@dataclass
class SweepResult:
    """Attention statistics of the additive path per bias scale (JSON view: :meth:`to_dict`)."""

    scales: list
    bands: list
    max_bias: float
    bias: list
    attention: list
    baseline: dict
    settings: dict = field(default_factory=dict)

    def curve(self, metric: str, stat: str = "mean", family: str | None = None,
              group: str | None = None) -> np.ndarray:
        """One statistic per scale, e.g. ``curve('entropy_norm')`` or
        ``curve('share_max_gt_0.9')``; ``family``/``group`` pick a query group (e.g.
        ``'by_size'``, ``'small'``). None values become NaN."""
        out = []
        for summary in self.attention:
            entry = summary["overall"] if family is None else summary.get(family, {}).get(group, {})
            value = entry.get(metric)
            if isinstance(value, dict):
                value = value.get(stat)
            out.append(np.nan if value is None else float(value))
        return np.asarray(out, dtype=float)

    def to_dict(self) -> dict:
        points = [dict(scale=s, band=b, bias=bs, attention=a)
                  for s, b, bs, a in zip(self.scales, self.bands, self.bias, self.attention)]
        return dict(scales=self.scales, max_bias=self.max_bias, points=points,
                    baseline=self.baseline, settings=self.settings)


def _check_scales(scales: Sequence[float]) -> list[float]:
    out = []
    for s in scales:
        try:
            v = float(s)
        except (TypeError, ValueError):
            raise AQRInputError(f"scales: expected numbers, got {s!r}") from None
        if not math.isfinite(v):
            raise AQRInputError(f"scales: expected finite numbers, got {s!r}")
        if v not in out:
            out.append(v)
    if not out:
        raise AQRInputError("scales: expected at least one scale")
    return out


def bias_scale_sweep(query: torch.Tensor, keys: torch.Tensor, weights: CrossAttentionWeights,
                     unit, scales: Sequence[float], *, num_bev: int,
                     max_bias: float = FINAL_CLAMP, bias_dtype: torch.dtype = torch.float32,
                     groups: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
                     top_k: int = DEFAULT_TOPK, chunk_size: int | None = None) -> SweepResult:
    """Run the additive path at every scale against the unbiased baseline.

    ``query [B, Q, C]``, ``keys [B, F, C]`` and ``weights`` as for
    :func:`~aqr_cli.analysis.attention.compute_attention`; ``unit``: unit-scale window values
    (:func:`unit_bias`, :func:`unit_bias_from_generator`); ``scales``: fixed scales, used as
    given (duplicates dropped); ``max_bias``: the final clamp (``min(5, max_scale)``);
    ``bias_dtype``: ``torch.float16`` to round like upstream's fp16 bias; ``groups``: query
    groups for the summaries (:func:`~aqr_cli.analysis.attention.query_groups`).
    """
    scales, paths = sweep_paths(unit, scales, max_bias, bias_dtype)
    result = compute_attention(query, keys, weights, num_bev=num_bev,
                               paths=[AttentionPath("baseline"), *paths], window=unit_bias(unit),
                               reference="baseline", top_k=top_k, chunk_size=chunk_size)
    return sweep_result(result, unit, scales, paths, max_bias, bias_dtype, groups)


def sweep_paths(unit, scales: Sequence[float], max_bias: float = FINAL_CLAMP,
                bias_dtype: torch.dtype = torch.float32) -> tuple[list[float], list[AttentionPath]]:
    """(scales, paths) of a sweep: one additive path ``additive@<scale>`` per distinct scale,
    with the scaled, clamped bias and no readout, to run against a ``baseline`` path (the
    reference) whose window cells are ``unit``'s; :func:`sweep_result` reads the run."""
    scales = _check_scales(scales)
    if not (isinstance(max_bias, (int, float)) and max_bias > 0 and math.isfinite(max_bias)):
        raise AQRInputError(f"max_bias: expected a positive number, got {max_bias!r}")
    unit = unit_bias(unit)
    return scales, [AttentionPath(f"additive@{s:g}", bias=scaled_bias(unit, s, max_bias, bias_dtype),
                                  readout=False) for s in scales]


def sweep_result(result, unit, scales: list[float], paths: Sequence[AttentionPath],
                 max_bias: float = FINAL_CLAMP, bias_dtype: torch.dtype = torch.float32,
                 groups: Mapping[str, Mapping[str, torch.Tensor]] | None = None) -> SweepResult:
    """The :class:`SweepResult` of a run holding ``baseline`` and ``(scales, paths)``, what
    :func:`sweep_paths` returned (other paths are ignored; its settings are those of the run as
    a sweep's own); ``max_bias`` and ``bias_dtype`` as given to :func:`sweep_paths`."""
    unit = unit_bias(unit)
    names = [p.name for p in paths]
    result = result.select(["baseline", *names], projection=None, readout={})
    biased = [p.bias for p in paths]   # built once, by sweep_paths
    summary = result.summary(groups)
    settings = dict(result.settings(), bias_dtype=str(bias_dtype).replace("torch.", ""),
                    scale_semantics=("scale used as given (fixed-scale semantics, no [min_scale, "
                                     "max_scale] clamp); bias = clamp(scale * w * g, -max_bias, "
                                     "max_bias)"))
    return SweepResult(scales=scales, bands=[scale_band(s) for s in scales], max_bias=float(max_bias),
                       bias=[_bias_stats(unit, s, max_bias, b) for s, b in zip(scales, biased)],
                       attention=[summary[n] for n in names], baseline=summary["baseline"],
                       settings=settings)
