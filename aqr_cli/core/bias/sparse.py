"""The attention bias as window entries (:class:`SparseBias`), never ``[B, Q, F]``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from .boxes import WindowLayout
from .heatmaps import REDUCES, heatmaps

__all__ = ["REDUCES", "BlockEntries", "SparseBias"]


class BlockEntries(NamedTuple):
    """Window entries of one block: cell index inside the block, value, validity, each [B, Q, K]."""

    cells: torch.Tensor
    values: torch.Tensor
    mask: torch.Tensor


@dataclass(repr=False)
class SparseBias:
    """The attention bias as window entries, without the dense ``[B, Q, F]`` tensor.

    Local mode: ``indices[b, q, k]`` is the dense column of entry k (the first ``k_bev`` slots
    are the BEV window, the rest the camera window; ``F``-layout, camera columns start at
    ``H*W``), ``values`` the exact dense value there (float32, scaled and clamped, before any
    fp16 cast), ``mask`` tells which slots are real window cells. Masked-out slots hold value 0
    and an in-range (clamped) column; ``heatmaps`` relies on both. Within a row the valid
    columns are distinct, so ``to_dense`` is ``zeros`` plus one ``index_put_``.

    Global mode (``is_global``): K = 2; slot 0 is the value of the whole BEV segment (columns
    ``[0, H*W)``), slot 1 the value of the whole camera segment; ``indices`` hold the segment
    starts. Every query "covers" every cell of both segments.

    ``unscaled`` and ``scale`` keep ``values`` before scaling, so that upstream's debug
    statistics (computed before the final clamp) can be reproduced. ``layout`` (optional, from
    ``forward_sparse``) describes uniform windows as boxes, for fast :meth:`heatmaps`.
    """

    indices: torch.Tensor
    values: torch.Tensor
    mask: torch.Tensor
    bev_shape: tuple[int, int]
    pers_shape: tuple[int, int, int]
    k_bev: int
    dtype: torch.dtype = torch.float32
    is_global: bool = False
    unscaled: torch.Tensor | None = None
    scale: torch.Tensor | None = None
    layout: "WindowLayout | None" = None

    @property
    def num_bev_features(self) -> int:
        """H*W, the length of the BEV block."""
        return self.bev_shape[0] * self.bev_shape[1]

    @property
    def num_camera_features(self) -> int:
        """V*h*w, the length of the camera block."""
        v, h, w = self.pers_shape
        return v * h * w

    @property
    def shape(self) -> tuple[int, int, int]:
        """(B, Q, F) of the dense form."""
        b, q = self.values.shape[:2]
        return b, q, self.num_bev_features + self.num_camera_features

    def __repr__(self) -> str:
        b, q, f = self.shape
        k = self.values.shape[-1]
        mode = "global" if self.is_global else f"local, K={k} ({self.k_bev} BEV)"
        return (f"SparseBias(B={b}, Q={q}, F={f}, {mode}, entries={int(self.mask.sum())}, "
                f"dense dtype={self.dtype})")

    def unclamped_values(self) -> torch.Tensor:
        """Values before the final clamp, [B, Q, K] float32 (what upstream's statistics see)."""
        if self.unscaled is None or self.scale is None:
            return self.values
        return self.unscaled * self.scale

    def to_dense(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The dense bias [B, Q, F], equal to ``AttentionBiasGenerator.forward`` (default dtype)."""
        dtype = self.dtype if dtype is None else dtype
        b, q, f = self.shape
        hw = self.num_bev_features
        vals = self.values.to(dtype)
        if self.is_global:
            return torch.cat([vals[..., :1].expand(b, q, hw),
                              vals[..., 1:].expand(b, q, f - hw)], -1)
        out = torch.zeros(b, q, f, dtype=dtype, device=self.values.device)
        rows = torch.arange(b * q, device=self.indices.device).view(b, q, 1) * f
        out.view(-1).index_put_(((rows + self.indices)[self.mask],), vals[self.mask])
        return out

    def bev_values(self) -> BlockEntries:
        """BEV window entries [B, Q, K_bev]; ``cells`` = y*W + x (0 for the global segment)."""
        return self._block(slice(None, self.k_bev), 0)

    def camera_values(self) -> BlockEntries:
        """Camera window entries [B, Q, K_cam]; ``cells`` = v*h*w + r*w + c (0 for global)."""
        return self._block(slice(self.k_bev, None), self.num_bev_features)

    def _block(self, sl: slice, start: int) -> BlockEntries:
        cols = self.indices[..., sl]
        cells = torch.zeros_like(cols) if self.is_global else cols - start
        return BlockEntries(cells, self.values[..., sl], self.mask[..., sl])

    def heatmaps(self, reduce: str = "maxabs", dtype: torch.dtype | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-cell aggregate over all queries: (bev [B, H, W], pers [B, V, h, w]).

        ``reduce``: ``maxabs`` (signed value of largest |b|; ties -> first query, as upstream's
        "strictly larger replaces" loop; uncovered cells 0), ``sum``, ``mean`` (over the queries
        whose window covers the cell; 0 elsewhere) or ``count`` (windows covering the cell,
        int64). ``dtype`` rounds the values first (e.g. ``torch.float16`` for the values of the
        fp16 dense bias); results are float32.

        Cells are the dense columns each query's bias lands in. For in-range views this equals
        upstream's picture (spec 6.3: each query's own view slice); a query whose view lies
        outside [0, V) contributes its collapsed entry at the first / last camera cell, where
        its dense bias row holds it (upstream's picture skips such queries).

        With a valid :class:`WindowLayout` (uniform windows from ``forward_sparse``) the work is
        per query, not per entry: each window is one value on a box, so sums and counts come
        from a difference array of the boxes' corners and ``maxabs`` from a sliding maximum.
        Sums are then accumulated in float64 and rounded once (exact for fp16-rounded values),
        instead of in float32 in query order; ``maxabs`` and ``count`` are identical.
        """
        return heatmaps(self, reduce, dtype)
