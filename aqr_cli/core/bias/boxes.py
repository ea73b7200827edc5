"""Uniform windows as boxes: where each query's window lies, and box sums / maxima per cell.

A window without Gaussian weights holds one value on an ``n x n`` box, so reductions over the
queries can work per query (difference arrays, sliding maxima) instead of per window entry.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .sparse import SparseBias

# (map [B, Q] or None for a single map, y0, x0, regular [B, Q]) of the boxes of one block
_Origins = tuple["torch.Tensor | None", torch.Tensor, torch.Tensor, torch.Tensor]


@dataclass(eq=False, repr=False)
class WindowLayout:
    """Where the uniform windows of a SparseBias lie (``forward_sparse``, no Gaussian window).

    It lets :meth:`SparseBias.heatmaps` work per query instead of per entry: in each block a
    regular query's window is the ``n x n`` box (``extent`` = n, per-axis offsets starting at
    ``low``) around its cell, cut at the map borders, and every entry holds the same value.
    ``bev_positions [B, Q]`` / ``pers_positions [B, Q, 3]`` are the generator's index inputs
    (copies); :meth:`boxes` derives each block's :class:`Boxes` once and keeps them.

    ``source`` holds the ``(indices, values, mask)`` tensors with their version counters at
    creation: a SparseBias whose tensors were replaced or modified in place since is reduced
    entry by entry (:meth:`describes`).
    """

    bev_positions: torch.Tensor
    pers_positions: torch.Tensor
    low: int
    extent: int
    source: tuple
    _cache: dict = field(default_factory=dict, init=False)

    def describes(self, sparse: "SparseBias") -> bool:
        """True if ``sparse`` still holds the very tensors, unmodified, this layout was made for."""
        current = (sparse.indices, sparse.values, sparse.mask)
        return all(t is s and t._version == v for t, (s, v) in zip(current, self.source))

    def boxes(self, sparse: "SparseBias", block: int) -> "Boxes":
        """The :class:`Boxes` of block 0 (BEV) or 1 (camera) of ``sparse`` (cached)."""
        if block not in self._cache:
            _, _, grid = block_geometry(sparse, block)
            if block == 0:
                origins = _bev_origins(self.bev_positions, grid[2], self.low)
            else:
                origins = _camera_origins(self.pers_positions, grid[0], self.low)
            first_slot = 0 if block == 0 else sparse.k_bev
            self._cache[block] = Boxes(*origins, grid, self.extent, first_slot)
        return self._cache[block]


def _bev_origins(positions: torch.Tensor, width: int, low: int) -> _Origins:
    """(map, y0, x0, regular) [B, Q] of each BEV window box (top-left cell, maybe off the map).

    Upstream splits the flat index ``p`` as ``floor(p / W)``, ``p mod W`` and adds the offsets
    to ``p`` in its dtype; the box is exact (regular) when ``p`` is an integer this arithmetic
    handles exactly. The single BEV map needs no map index (None).
    """
    exact = _exact_integers(positions, (abs(low) + 1) * (width + 1))
    p = torch.where(exact, positions, torch.zeros_like(positions)).long()
    y = torch.div(p, width, rounding_mode="floor")
    return None, y + low, torch.add(p, y, alpha=-width).add_(low), exact  # x = p - y*W


def _camera_origins(positions: torch.Tensor, num_views: int, low: int) -> _Origins:
    """(map, y0, x0, regular) [B, Q] of each camera window box (top-left cell, maybe off the
    map). Truncated like upstream's ``.long()``; regular for views in [0, V) (others collapse
    into one column)."""
    vhw = positions.long()
    view = vhw[..., 0]
    regular = (view >= 0) & (view < num_views)
    return torch.where(regular, view, 0), vhw[..., 1] + low, vhw[..., 2] + low, regular


def _exact_integers(p: torch.Tensor, margin: int) -> torch.Tensor:
    """Mask [B, Q]: ``p`` is an integer and ``|p| + margin`` is exact in its dtype.

    float16 / bfloat16 are never exact here (upstream adds the offsets in that dtype).
    """
    if not p.is_floating_point():
        limit = 2 ** 62 - margin
        return (p.long() > -limit) & (p.long() < limit)
    if p.dtype not in (torch.float32, torch.float64):
        return torch.zeros_like(p, dtype=torch.bool)
    limit = (2 ** 24 if p.dtype == torch.float32 else 2 ** 53) - margin
    return (p == p.floor()) & (p.abs() < limit)


class Boxes:
    """Per-query ``n x n`` boxes of one block (see WindowLayout) and their scatter indices.

    ``view`` map of each box (None: one map), ``y0``, ``x0`` its top-left cell (possibly off
    the map), ``regular`` whether the block's entries are the box (else they are reduced entry
    by entry), all [B, Q]; ``grid = (maps, H, W)``. Boxes that are irregular or miss their map
    take part with weight / key 0 (``on_map``). The indices each reduction needs are computed
    on first use and kept; all arithmetic is on contiguous [B, Q] tensors with scalars (small
    broadcasts are slow on CPU).
    """

    def __init__(self, view, y0, x0, regular, grid: tuple, n: int, first_slot: int):
        self.view, self.y0, self.x0, self.regular = view, y0, x0, regular
        self.grid, self.extent, self.first_slot = grid, n, first_slot

    def _with_view(self, index: torch.Tensor, map_size: int) -> torch.Tensor:
        """``index`` within a map plus ``map_size`` times each box's map (in place)."""
        return index if self.view is None else index.add_(self.view, alpha=map_size)

    @functools.cached_property
    def on_map(self) -> torch.Tensor:
        """[B, Q]: regular boxes with at least one cell on their map."""
        _, h, w = self.grid
        y0, x0, n = self.y0, self.x0, self.extent
        return self.regular & (y0 > -n) & (y0 < h) & (x0 > -n) & (x0 < w)

    @functools.cached_property
    def leader(self) -> torch.Tensor:
        """``[B, Q, 1]`` a window slot holding the query's value: the box's first cell on the
        map (slots run over rows, then columns)."""
        n = self.extent
        slot = torch.add((-self.x0).clamp_(0, n - 1), (-self.y0).clamp_(0, n - 1), alpha=n)
        return slot.add_(self.first_slot).unsqueeze(-1)

    @functools.cached_property
    def anchor(self) -> torch.Tensor:
        """[B, Q]: index of ``(map, y0 + n - 1, x0 + n - 1)`` in the sliding-maximum grid
        ``[maps, H + n - 1, W + n - 1]`` (clamped into it for boxes off the map)."""
        _, h, w = self.grid
        n = self.extent
        rows, cols = h + n - 1, w + n - 1
        y = (self.y0 + (n - 1)).clamp_(0, rows - 1)
        x = (self.x0 + (n - 1)).clamp_(0, cols - 1)
        return self._with_view(torch.add(x, y, alpha=cols), rows * cols)

    @functools.cached_property
    def corners(self) -> torch.Tensor:
        """``[B, Q*4]``: the corners (first / end row x first / end column, end-exclusive;
        signs ``+ - - +``) of each box's part on the map in the difference grid
        ``[maps, H + 1, W + 1]``."""
        _, h, w = self.grid
        n = self.extent
        # rows of the stacked maps (map v starts at row v * (H + 1))
        rows = [self._with_view(y.clamp_(0, h), h + 1) for y in (self.y0.clone(), self.y0 + n)]
        cols = [self.x0.clamp(0, w), (self.x0 + n).clamp_(0, w)]
        return torch.stack([torch.add(c, r, alpha=w + 1) for r in rows for c in cols],
                           -1).flatten(1)

    def sums(self, weights: torch.Tensor) -> list:
        """Per cell the sum of ``weights [C, B, Q]`` (float64) of the boxes covering it ->
        C tensors [B, maps*H*W], rounded to float32 once at the end.

        A 2-D difference array: each box adds ``+w, -w, -w, +w`` at the corners of its part on
        the map; cumulative sums along both axes then hold at every cell the sum over the boxes
        containing it. The float64 partial sums are exact for the fp16-rounded values of the
        dense bias (integers in units of 2**-24) and for counts; otherwise they differ from the
        exact sum by float64 roundings only.
        """
        maps, h, w = self.grid
        c, b, q = weights.shape
        weights = weights * self.on_map
        signed = torch.stack([weights, -weights, -weights, weights], -1).view(c, b, 4 * q)
        grid = weights.new_zeros(c, b, maps, h + 1, w + 1)
        grid.view(c, b, -1 if b else 0).scatter_add_(
            2, self.corners.view(1, b, 4 * q).expand(c, b, 4 * q), signed)
        sums = grid.cumsum_(-2).cumsum_(-1)[..., :h, :w].to(torch.float32)
        return list(sums.view(c, b, maps * h * w))

    def max(self, keys: torch.Tensor) -> torch.Tensor:
        """Per cell the largest of ``keys [B, Q]`` (integers >= 0) of the boxes covering it, 0
        where none -> [B, maps*H*W].

        The anchors of the boxes covering cell ``(y, x)`` are rows ``y .. y+n-1`` and columns
        ``x .. x+n-1`` of the anchor grid: a separable sliding maximum.
        """
        maps, h, w = self.grid
        n, b = self.extent, keys.shape[0]
        grid = keys.new_zeros(b, maps, h + n - 1, w + n - 1)
        keys = torch.where(self.on_map, keys, 0)
        grid.view(b, -1 if b else 0).scatter_reduce_(1, self.anchor, keys, "amax")
        best = _sliding_max(_sliding_max(grid, n, -2), n, -1)
        return best.reshape(b, maps * h * w)


def block_geometry(sparse: "SparseBias", block: int):
    """(slots, first dense column, grid (maps, H, W)) of block 0 (BEV) or 1 (camera)."""
    if block == 0:
        return slice(None, sparse.k_bev), 0, (1, *sparse.bev_shape)
    return slice(sparse.k_bev, None), sparse.num_bev_features, tuple(sparse.pers_shape)


def _sliding_max(x: torch.Tensor, n: int, dim: int) -> torch.Tensor:
    """Maximum over every window of ``n`` consecutive entries along ``dim`` (length L - n + 1).

    Doubling: after the loop ``x[i]`` is the maximum of ``[i, i + span)``; two overlapping
    spans then cover ``n``. ``ceil(log2 n)`` elementwise maxima in all.
    """
    span = 1
    while 2 * span <= n:
        size = x.shape[dim] - span
        x = torch.maximum(x.narrow(dim, 0, size), x.narrow(dim, span, size))
        span *= 2
    if span < n:
        size = x.shape[dim] - (n - span)
        x = torch.maximum(x.narrow(dim, 0, size), x.narrow(dim, n - span, size))
    return x
