"""What the attention engine returns: :class:`AttentionResult` (per-query statistics of every
path, selected rows, settings) and :func:`summarize_metrics` (means, medians, saturation)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Mapping

import torch

DEFAULT_TOPK = 10


SATURATION_LEVELS = (0.9, 0.7)


METRICS = ("entropy", "entropy_norm", "max_attention", "window_mass", "lidar_share",
           "camera_share", "mean_abs_delta", "l1_delta", "kl_from_reference", "topk_overlap")


@dataclass
class AttentionResult:
    """Per-query statistics of every path, selected attention rows, and how they were computed.

    ``per_query[path][metric]`` is ``[B, Q]`` float32 (metrics in :data:`METRICS`);
    ``rows[path]`` is ``[B, len(row_queries), F]`` head-averaged attention of the selected
    queries. ``status`` is ``'ok'`` or ``'skipped'`` (then ``reason`` says why and the dicts are
    empty).
    """

    status: str = "ok"
    reason: str | None = None
    per_query: dict = field(default_factory=dict)
    rows: dict = field(default_factory=dict)
    row_queries: list = field(default_factory=list)
    reference: str = "baseline"
    num_keys: int = 0
    num_bev: int = 0
    num_queries: int = 0
    batch_size: int = 0
    top_k: int = DEFAULT_TOPK
    chunk_size: int = 0
    weights: dict = field(default_factory=dict)
    projection: dict | None = None
    readout: dict = field(default_factory=dict)

    @classmethod
    def skipped(cls, reason: str, projection: dict | None = None, weights: dict | None = None):
        return cls(status="skipped", reason=reason, projection=projection, weights=weights or {})

    @property
    def paths(self) -> list[str]:
        return list(self.per_query)

    def select(self, paths, **changes) -> "AttentionResult":
        """The same run restricted to ``paths`` (in that order), with ``changes`` to other fields
        (e.g. ``projection``, ``readout``): one pass computing several comparisons, split."""
        return replace(self, per_query={p: self.per_query[p] for p in paths},
                       rows={p: self.rows[p] for p in paths if p in self.rows}, **changes)

    def summary(self, groups: Mapping[str, Mapping[str, torch.Tensor]] | None = None) -> dict:
        """``{path: {'overall': ..., <family>: {<group>: ...}}}`` of :func:`summarize_metrics`."""
        out = {}
        for path, metrics in self.per_query.items():
            entry = {"overall": summarize_metrics(metrics)}
            for family, members in (groups or {}).items():
                entry[family] = {g: summarize_metrics(metrics, mask) for g, mask in members.items()}
            out[path] = entry
        return out

    def settings(self) -> dict:
        return dict(status=self.status, reason=self.reason, reference=self.reference,
                    num_keys=self.num_keys, num_bev_keys=self.num_bev,
                    num_camera_keys=self.num_keys - self.num_bev, num_queries=self.num_queries,
                    batch_size=self.batch_size, top_k=self.top_k, chunk_size=self.chunk_size,
                    weights=self.weights, projection=self.projection,
                    logits="softmax(q k^T / sqrt(d_head) + bias), bias identical for every head")

    def to_dict(self, groups=None) -> dict:
        """JSON-ready: ``settings`` and ``paths`` (the summary); no per-query arrays.

        Wall time (``seconds``) is left out so the same input gives the same document.
        """
        return dict(settings=self.settings(), paths=self.summary(groups) if self.status == "ok" else {})


def _finite_or_none(x: float):
    return float(x) if math.isfinite(x) else None


def summarize_metrics(metrics: Mapping[str, torch.Tensor], mask: torch.Tensor | None = None) -> dict:
    """mean and median of each metric over the (masked) queries, saturation shares, count.

    JSON-ready: empty groups and undefined values (no window) give None.
    """
    sel = None if mask is None else mask.reshape(-1).bool()
    count = int(next(iter(metrics.values())).numel() if sel is None else sel.sum())
    out = {"count": count}
    for name, values in metrics.items():
        v = values.reshape(-1).double()
        v = v if sel is None else v[sel]
        v = v[torch.isfinite(v)]
        out[name] = ({"mean": None, "median": None} if v.numel() == 0 else
                     {"mean": _finite_or_none(float(v.mean())),
                      "median": _finite_or_none(float(torch.quantile(v, 0.5)))})
    mx = metrics["max_attention"].reshape(-1)
    mx = mx if sel is None else mx[sel]
    for level in SATURATION_LEVELS:
        out[f"share_max_gt_{level}"] = float((mx > level).float().mean()) if mx.numel() else None
    return out
