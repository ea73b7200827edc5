"""Additive attention bias from per-query modality weights (spec section 5).

:class:`AttentionBiasGenerator` reproduces upstream ``attention_bias_generator.py`` at HEAD: each
query gets a ``ws x ws`` window around its BEV cell (value ``w_lidar * g``) and around its camera
cell (``w_camera * g``), zero elsewhere, then ``* scale``, a final clamp and an optional fp16
cast. ``forward`` returns the dense ``[B, Q, F]`` bias (F = H*W + V*h*w, BEV columns first);
``forward_sparse`` returns the same numbers as a :class:`SparseBias` (window entries only) that
never materialises ``[B, Q, F]``.

Index semantics copied from upstream (fixture README items 8-11):

- BEV: ``qy = floor(p / W)``, ``qx = p mod W`` from the flat index ``p``, so an out-of-grid
  cell such as (y=128, x=128) on a 128x128 grid becomes (129, 0); windows are cut at the true
  2-D bounds (partial windows, no row wrap).
- camera: ``v, h, w = long(pts_pers)`` (truncation); windows cut at the map bounds of view ``v``.
  A view outside ``[0, V)`` sends the whole window to the first (v < 0) or last (v >= V)
  camera column, where upstream's ``scatter_add_`` sums it; the sparse form keeps that sum in
  the first valid slot of the row.
"""

from __future__ import annotations

import functools
import operator
import sys
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import nn

from ._checks import check_finite, check_positive_shape, check_shape
from .errors import AQRInputError, warn_quirk

REDUCES = ("maxabs", "sum", "mean", "count")
PARITIES = ("head", "symmetric")
_GENERATION_HEAD = "head"
_GENERATION_OLD = "bias_snapshot"


def window_axis_offsets(window_size: int, parity: str = "head") -> torch.Tensor:
    """Per-axis window offsets [n] int64.

    ``head`` (upstream HEAD): even ``ws`` -> ``-ws/2+1 .. ws/2`` (8 -> -3..4, n = ws);
    ``symmetric`` (``CMTTEST/bias`` snapshot, and odd ``ws`` in both): ``-ws//2 .. ws//2``.
    """
    half = window_size // 2
    if parity == "head" and window_size % 2 == 0:
        return torch.arange(-half + 1, half + 1)
    return torch.arange(-half, half + 1)


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
        if reduce not in REDUCES:
            raise AQRInputError(f"reduce: expected one of {REDUCES}, got {reduce!r}")
        b, _, f = self.shape
        hw = self.num_bev_features
        if self.is_global:
            vals = _rounded(self.values.detach(), dtype)
            bev = _global_reduce(vals[..., 0], reduce).unsqueeze(-1).expand(b, hw)
            cam = _global_reduce(vals[..., 1], reduce).unsqueeze(-1).expand(b, f - hw)
            return bev.reshape(b, *self.bev_shape), cam.reshape(b, *self.pers_shape)
        if self.layout is not None and self.layout.describes(self):
            blocks = [_box_accumulators(self, block, reduce, dtype) for block in (0, 1)]
        else:
            acc = _entry_accumulators(self, reduce, dtype)
            blocks = [{k: t[:, sl] for k, t in acc.items()} for sl in (slice(hw), slice(hw, f))]
        bev, cam = (_finalize(acc, reduce) for acc in blocks)
        return bev.reshape(b, *self.bev_shape), cam.reshape(b, *self.pers_shape)


@dataclass(eq=False, repr=False)
class WindowLayout:
    """Where the uniform windows of a SparseBias lie (``forward_sparse``, no Gaussian window).

    It lets :meth:`SparseBias.heatmaps` work per query instead of per entry: in each block a
    regular query's window is the ``n x n`` box (``extent`` = n, per-axis offsets starting at
    ``low``) around its cell, cut at the map borders, and every entry holds the same value.
    ``bev_positions [B, Q]`` / ``pers_positions [B, Q, 3]`` are the generator's index inputs
    (copies); :meth:`boxes` derives each block's :class:`_Boxes` once and keeps them.

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

    def boxes(self, sparse: "SparseBias", block: int) -> "_Boxes":
        """The :class:`_Boxes` of block 0 (BEV) or 1 (camera) of ``sparse`` (cached)."""
        if block not in self._cache:
            _, _, grid = _block_geometry(sparse, block)
            if block == 0:
                origins = _bev_origins(self.bev_positions, grid[2], self.low)
            else:
                origins = _camera_origins(self.pers_positions, grid[0], self.low)
            first_slot = 0 if block == 0 else sparse.k_bev
            self._cache[block] = _Boxes(*origins, grid, self.extent, first_slot)
        return self._cache[block]


def _bev_origins(positions: torch.Tensor, width: int, low: int):
    """(map, y0, x0, regular) [B, Q] of each BEV window box (top-left cell, maybe off the map).

    Upstream splits the flat index ``p`` as ``floor(p / W)``, ``p mod W`` and adds the offsets
    to ``p`` in its dtype; the box is exact (regular) when ``p`` is an integer this arithmetic
    handles exactly. The single BEV map needs no map index (None).
    """
    exact = _exact_integers(positions, (abs(low) + 1) * (width + 1))
    p = torch.where(exact, positions, torch.zeros_like(positions)).long()
    y = torch.div(p, width, rounding_mode="floor")
    return None, y + low, torch.add(p, y, alpha=-width).add_(low), exact  # x = p - y*W


def _camera_origins(positions: torch.Tensor, num_views: int, low: int):
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


class _Boxes:
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


# accumulators each reduce needs (see _finalize)
_ACCUMULATORS = {"maxabs": ("keys",), "sum": ("total",), "count": ("count",),
                 "mean": ("total", "count")}


def _rounded(vals: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """``vals`` as float32, rounded to ``dtype`` first if given (the dense bias' values)."""
    return vals.float() if dtype is None else vals.to(dtype).float()


def _query_keys(vals: torch.Tensor, rank: torch.Tensor) -> torch.Tensor:
    """int64 maxabs keys ``|v| bits << 32 | rank << 1 | sign`` for float32 ``vals [..., K]``.

    ``rank [..., 1]`` int32 is ``Q - 1 - q``. The bits of a non-negative float32 order like its
    value, and the rank breaks ties towards the first query, which is what upstream's "strictly
    larger replaces" loop keeps; a query covers a column at most once, so keys never tie. A 0
    entry can only win where every value is 0. Built as two int32 words of one int64 (cheaper
    than int64 arithmetic).
    """
    vals = vals.contiguous()
    words = torch.empty(*vals.shape, 2, dtype=torch.int32, device=vals.device)
    hi = 1 if sys.byteorder == "little" else 0
    torch.bitwise_and(vals.view(torch.int32), 0x7FFFFFFF, out=words[..., hi])
    torch.bitwise_or(torch.signbit(vals), rank << 1, out=words[..., 1 - hi])
    return words.view(torch.int64).squeeze(-1)


def _ranks(q: int, device) -> torch.Tensor:
    """``Q - 1 - q`` for q = 0..Q-1, int32 [Q]."""
    return q - 1 - torch.arange(q, dtype=torch.int32, device=device)


def _decode_keys(best: torch.Tensor) -> torch.Tensor:
    """Signed float32 values of maxabs keys (0 where no key): the high word holds ``|v|``'s
    bits, bit 0 of the low word the sign; ``+ 0.0`` turns a winning -0.0 into 0.0."""
    words = best.view(torch.int32).view(*best.shape, 2)
    hi = 1 if sys.byteorder == "little" else 0
    bits = torch.bitwise_or(words[..., hi], words[..., 1 - hi] << 31)  # sign bit -> bit 31
    return bits.view(torch.float32) + 0.0


def _finalize(acc: dict, reduce: str) -> torch.Tensor:
    """Per-column result [B, N] from accumulators: ``keys`` (maxabs; or its final ``values``),
    ``total``, ``count``."""
    if reduce == "maxabs":
        return acc["values"] if "values" in acc else _decode_keys(acc["keys"])
    if reduce == "count":
        return acc["count"].long()
    if reduce == "sum":
        return acc["total"].float()
    count = acc["count"].float()  # exact: far fewer than 2**24 windows
    covered = count.clamp(max=1)  # 1 where a window covers the cell, else 0 (cheaper than where)
    return acc["total"].float() / count.clamp(min=1) * covered


def _merge(a: dict, b: dict) -> dict:
    """Accumulators of two disjoint sets of entries combined."""
    return {k: torch.maximum(a[k], b[k]) if k == "keys" else a[k] + b[k] for k in a}


def _scatter(idx: torch.Tensor, vals: torch.Tensor, mask: torch.Tensor, keys, width: int,
             reduce: str) -> dict:
    """Accumulators [R, width] of entries [R, N] at columns ``idx``: one scatter each.

    Masked-out slots take part neutrally: their value is 0 and their clamped column in range.
    ``total`` is float32 summed in entry order; ``keys`` (maxabs only) see :func:`_query_keys`.
    """
    zeros = lambda dt: torch.zeros(idx.shape[0], width, dtype=dt, device=idx.device)
    acc = {}
    if "keys" in _ACCUMULATORS[reduce]:
        acc["keys"] = zeros(torch.int64).scatter_reduce_(1, idx, keys, "amax")
    if "total" in _ACCUMULATORS[reduce]:
        acc["total"] = zeros(torch.float32).scatter_add_(1, idx, vals)
    if "count" in _ACCUMULATORS[reduce]:
        acc["count"] = zeros(torch.int64).scatter_add_(1, idx, mask.long())
    return acc


def _entry_accumulators(sparse: "SparseBias", reduce: str, dtype) -> dict:
    """Accumulators [B, F] of all window entries [B, Q, K], entry by entry."""
    b, q, f = sparse.shape
    vals = _rounded(sparse.values.detach(), dtype)
    keys = None
    if reduce == "maxabs":
        keys = _query_keys(vals, _ranks(q, vals.device).view(1, q, 1)).flatten(1)
    return _scatter(sparse.indices.flatten(1), vals.flatten(1), sparse.mask.flatten(1),
                    keys, f, reduce)


def _block_geometry(sparse: "SparseBias", block: int):
    """(slots, first dense column, grid (maps, H, W)) of block 0 (BEV) or 1 (camera)."""
    if block == 0:
        return slice(None, sparse.k_bev), 0, (1, *sparse.bev_shape)
    return slice(sparse.k_bev, None), sparse.num_bev_features, tuple(sparse.pers_shape)


def _box_accumulators(sparse: "SparseBias", block: int, reduce: str, dtype) -> dict:
    """Accumulators [B, maps*H*W] of one block from per-query boxes (+ irregular entries).

    ``total`` and ``count`` come out float32 (exact sums rounded once; counts exact).
    """
    boxes = sparse.layout.boxes(sparse, block)
    vals = _rounded(sparse.values.detach().gather(-1, boxes.leader), dtype)  # [B, Q, 1]
    if reduce == "maxabs":
        keys = _query_keys(vals, _ranks(vals.shape[1], vals.device).view(1, -1, 1))
        acc = _box_maxabs(boxes, vals[..., 0], keys.squeeze(-1))
    else:  # box sums of the values and / or of ones (window counts), in float64
        per_query = {"total": vals[..., 0].double(),
                     "count": torch.ones_like(vals[..., 0], dtype=torch.float64)}
        names = _ACCUMULATORS[reduce]
        acc = dict(zip(names, boxes.sums(torch.stack([per_query[k] for k in names]))))
    if not bool(boxes.regular.all()):
        acc = _merge(acc, _irregular_accumulators(sparse, ~boxes.regular, block, reduce, dtype))
    return acc


def _box_maxabs(boxes: "_Boxes", vals: torch.Tensor, keys: torch.Tensor) -> dict:
    """maxabs accumulators [B, maps*H*W] of one block's boxes (values ``vals``, ``keys`` [B, Q]).

    The sliding maximum runs on int32 positions in the sorted order of the keys (half the
    memory traffic of int64 keys); the winners are looked up by position at the end: their
    values (``values``, final) when every query is regular, else their keys (``keys``, to be
    merged with the irregular entries). Position 0: no box, value 0.
    """
    flat = keys.flatten()
    order = flat.argsort()
    position = torch.empty(flat.numel(), dtype=torch.int32, device=keys.device)
    position[order] = torch.arange(1, flat.numel() + 1, dtype=torch.int32, device=keys.device)
    best = boxes.max(position.view_as(keys))
    width, best = best.shape[1], best.reshape(-1)
    if bool(boxes.regular.all()):  # + 0.0: a winning -0.0 reads 0.0, as in _decode_keys
        by_position = torch.cat([vals.new_zeros(1), vals.flatten()[order] + 0.0])
        return {"values": by_position.index_select(0, best).view(keys.shape[0], width)}
    by_position = torch.cat([flat.new_zeros(1), flat[order]])
    return {"keys": by_position.index_select(0, best).view(keys.shape[0], width)}


def _irregular_accumulators(sparse: "SparseBias", rows: torch.Tensor, block: int, reduce: str,
                            dtype) -> dict:
    """Accumulators [B, maps*H*W] of the block's entries of the queries ``rows [B, Q]``."""
    b, q, _ = sparse.shape
    slots, start, grid = _block_geometry(sparse, block)
    width = grid[0] * grid[1] * grid[2]
    bi, qi = rows.nonzero(as_tuple=True)
    cols = sparse.indices[bi, qi][:, slots] - start + (bi * width).unsqueeze(-1)  # into [B*width]
    vals = _rounded(sparse.values.detach()[bi, qi][:, slots], dtype)
    keys = None
    if reduce == "maxabs":
        keys = _query_keys(vals, (q - 1 - qi).int().unsqueeze(-1)).reshape(1, -1)
    acc = _scatter(cols.reshape(1, -1), vals.reshape(1, -1),
                   sparse.mask[bi, qi][:, slots].reshape(1, -1), keys, b * width, reduce)
    return {k: t.view(b, width) for k, t in acc.items()}


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


def _global_reduce(vals: torch.Tensor, reduce: str) -> torch.Tensor:
    """Aggregate per-query segment values [B, Q] over queries -> [B]."""
    b, q = vals.shape
    if reduce == "count":
        return torch.full((b,), q, dtype=torch.int64, device=vals.device)
    if q == 0:
        return vals.new_zeros(b)
    if reduce == "maxabs":
        a = vals.abs()
        first = (a == a.amax(1, keepdim=True)).int().argmax(1, keepdim=True)
        return vals.gather(1, first).squeeze(1) + 0.0
    total = vals.sum(1)
    return total / q if reduce == "mean" else total


def _summary(vals: torch.Tensor, n_total: int, weight: torch.Tensor | None = None) -> dict:
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
    ss = total((v.double() - mean) ** 2) + n_zero * mean ** 2
    lo = float(v.min()) if v.numel() else float("inf")
    hi = float(v.max()) if v.numel() else float("-inf")
    if n_zero > 0:
        lo, hi = min(lo, 0.0), max(hi, 0.0)

    def frac(cond: torch.Tensor, zero_counts: bool) -> float:
        return (total(cond) + (n_zero if zero_counts else 0.0)) / n_total

    positive = frac(v > 0, False)
    return dict(count=n_total, mean=mean, std=(ss / (n_total - 1)) ** 0.5 if n_total > 1 else nan,
                min=lo, max=hi, positive=positive, negative_upstream=1.0 - positive,
                negative=frac(v < 0, False), zero=frac(v == 0, True),
                strong_positive=frac(v > 2.0, False), strong_negative=frac(v < -2.0, False),
                near_zero=frac(v.abs() < 0.1, True))


def _weight_summary(w: torch.Tensor) -> dict:
    """mean / unbiased std / min / max of per-query weights."""
    w = w.detach().double().reshape(-1)
    if w.numel() == 0:
        return dict(mean=float("nan"), std=float("nan"), min=float("nan"), max=float("nan"))
    std = float(w.std()) if w.numel() > 1 else float("nan")
    return dict(mean=float(w.mean()), std=std, min=float(w.min()), max=float(w.max()))


def _check_window(window_size, parity: str, min_side: int) -> int:
    """Validate ``window_size`` against the smallest feature-map side; return it as int."""
    if parity not in PARITIES:
        raise AQRInputError(f"window_parity: expected one of {PARITIES}, got {parity!r}")
    try:
        ws = operator.index(window_size)
    except TypeError:
        ws = 0
    if isinstance(window_size, bool) or ws < 1:
        raise AQRInputError(f"window_size: expected a positive integer, got {window_size!r}")
    extent = len(window_axis_offsets(ws, parity))
    if extent > min_side:
        raise AQRInputError(
            f"window_size: a {extent}x{extent} window does not fit the smallest feature-map "
            f"side {min_side} (bev_feature_shape / pers_feature_shape); "
            f"expected window_size <= {min_side}")
    return ws


def _check_number(name: str, value, positive: bool = False) -> float:
    """Return ``value`` as a finite float (> 0 when ``positive``), else raise."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise AQRInputError(f"{name}: expected a finite number, got {value!r}") from None
    if out != out or out in (float("inf"), float("-inf")) or (positive and out <= 0):
        kind = "finite positive" if positive else "finite"
        raise AQRInputError(f"{name}: expected a {kind} number, got {value!r}")
    return out


class AttentionBiasGenerator(nn.Module):
    """Upstream ``AttentionBiasGenerator`` (HEAD), CPU/pure torch, without the debug print.

    Constructor arguments and defaults are upstream's (``init_cfg`` is accepted and ignored), so
    ``AttentionBiasGenerator(**attention_bias_config)`` works for the reference configs.
    ``window_parity`` selects the even-window rule: ``'head'`` (-ws/2+1..ws/2) or
    ``'symmetric'`` (the ``CMTTEST/bias`` snapshot, -ws//2..ws//2, (ws+1)^2 cells for even ws).

    State: ``bias_scale`` [1] float32 (Parameter if ``learnable_scale`` else buffer),
    ``y_offsets``, ``x_offsets``, ``window_offsets_bev``, ``window_offsets_pers`` [K] int64,
    ``gaussian_weights`` [K] float32 (ones unless ``use_gaussian_window``); K = ws^2 (head).
    """

    def __init__(self, bev_feature_shape=(180, 180), pers_feature_shape=(6, 40, 100),
                 window_size=15, bias_scale=2.5, learnable_scale=True, min_scale=0.5,
                 max_scale=5.0, use_local_bias=True, use_gaussian_window=False,
                 gaussian_sigma=2.5, debug_print=True, print_interval=1000, fp16=True,
                 init_cfg=None, *, window_parity: str = "head"):
        super().__init__()
        self.bev_h, self.bev_w = check_positive_shape("bev_feature_shape", bev_feature_shape, 2)
        self.num_views, self.pers_h, self.pers_w = check_positive_shape(
            "pers_feature_shape", pers_feature_shape, 3)
        min_side = min(self.bev_h, self.bev_w, self.pers_h, self.pers_w)
        self.window_size = _check_window(window_size, window_parity, min_side)
        self.window_parity = window_parity
        self.min_scale = _check_number("min_scale", min_scale)
        self.max_scale = _check_number("max_scale", max_scale, positive=True)
        if self.min_scale > self.max_scale:
            raise AQRInputError(f"min_scale: expected <= max_scale = {max_scale}, got {min_scale}")
        self.gaussian_sigma = _check_number("gaussian_sigma", gaussian_sigma,
                                            positive=bool(use_gaussian_window))
        if type(print_interval) is not int or print_interval < 1:
            raise AQRInputError(
                f"print_interval: expected a positive integer, got {print_interval!r}")
        self.use_local_bias = bool(use_local_bias)
        self.use_gaussian_window = bool(use_gaussian_window)
        self.learnable_scale = bool(learnable_scale)
        self.debug_print = bool(debug_print)
        self.print_interval = int(print_interval)
        self.fp16 = bool(fp16)
        self._iter_count = 0
        self.last_call_would_print = False
        self.checkpoint_generation = _GENERATION_HEAD
        scale = torch.tensor([_check_number("bias_scale", bias_scale)], dtype=torch.float32)
        if self.learnable_scale:
            self.bias_scale = nn.Parameter(scale)
        else:
            self.register_buffer("bias_scale", scale)
        for name, value in self._window_buffers().items():
            self.register_buffer(name, value)

    def _window_buffers(self) -> dict:
        """Offset and Gaussian buffers for the configured window, as upstream computes them."""
        axis = window_axis_offsets(self.window_size, self.window_parity)
        y, x = torch.meshgrid(axis, axis, indexing="ij")
        y, x = y.reshape(-1), x.reshape(-1)
        if self.use_gaussian_window:
            # Same expression as upstream (sqrt then square), for bit-identical weights.
            dist = torch.sqrt(y.float() ** 2 + x.float() ** 2)
            gauss = torch.exp(-dist ** 2 / (2 * self.gaussian_sigma ** 2))
        else:
            gauss = torch.ones(y.numel(), dtype=torch.float32)
        return dict(y_offsets=y, x_offsets=x, window_offsets_bev=y * self.bev_w + x,
                    window_offsets_pers=y * self.pers_w + x, gaussian_weights=gauss)

    def extra_repr(self) -> str:
        mode = "local" if self.use_local_bias else "global"
        return (f"bev=({self.bev_h}, {self.bev_w}), pers=({self.num_views}, {self.pers_h}, "
                f"{self.pers_w}), window={self.window_size} ({mode}, {self.window_parity}), "
                f"gaussian={self.use_gaussian_window}, learnable_scale={self.learnable_scale}, "
                f"fp16={self.fp16}")

    # ----- scale -----

    @property
    def max_bias(self) -> float:
        """Final clamp bound ``min(5, max_scale)``."""
        return min(5.0, self.max_scale)

    def _scale(self) -> torch.Tensor:
        """Scale as a 0-d tensor: clamped to [min, max] if learnable, raw otherwise (Q13)."""
        s = self.bias_scale.reshape(-1)[0]
        if self.learnable_scale:
            s = torch.clamp(s, min=self.min_scale, max=self.max_scale)
        return s

    def effective_scale(self) -> float:
        """The scale the forward pass multiplies by, as a float."""
        return float(self._scale().detach())

    @property
    def upstream_print_would_crash(self) -> bool:
        """True if upstream's debug print would raise (Q12) whenever it fires.

        Upstream formats the fixed ``[1]`` scale with ``:.4f`` (TypeError), so the head gets no
        bias on every ``print_interval``-th call; ``last_call_would_print`` says whether the
        last call was such a call.
        """
        return self.debug_print and not self.learnable_scale

    def _count_call(self) -> None:
        """Advance upstream's per-process call counter (spec 5.3, Q38)."""
        self.last_call_would_print = False
        if self.debug_print:
            self._iter_count += 1
            self.last_call_would_print = self._iter_count % self.print_interval == 0

    # ----- forward -----

    def forward(self, lidar_weights: torch.Tensor, camera_weights: torch.Tensor,
                pts_bev_indices: torch.Tensor, pts_pers_indices: torch.Tensor) -> torch.Tensor:
        """Dense attention bias [B, Q, F], float16 if ``fp16`` else float32, as upstream.

        lidar_weights, camera_weights: [B, Q]; pts_bev_indices: [B, Q] flat BEV index
        ``y*W + x`` (upstream ``pts_idx``); pts_pers_indices: [B, Q, 3] (view, h, w).
        """
        return self.forward_sparse(lidar_weights, camera_weights, pts_bev_indices,
                                   pts_pers_indices).to_dense()

    def forward_sparse(self, lidar_weights: torch.Tensor, camera_weights: torch.Tensor,
                       pts_bev_indices: torch.Tensor, pts_pers_indices: torch.Tensor) -> SparseBias:
        """The same bias as ``forward`` as a :class:`SparseBias` (no [B, Q, F] tensor)."""
        lw, cw, bev_idx, pers_idx = self._check_inputs(
            lidar_weights, camera_weights, pts_bev_indices, pts_pers_indices)
        self._count_call()
        if self.use_local_bias:
            self._warn_out_of_grid(bev_idx, pers_idx)
            indices, unscaled, mask, k_bev = self._local_entries(lw, cw, bev_idx, pers_idx)
        else:
            indices, unscaled, mask, k_bev = self._global_entries(lw, cw)
        scale = self._scale()
        values = torch.clamp(unscaled * scale, min=-self.max_bias, max=self.max_bias)
        layout = None
        if self.use_local_bias:
            layout = self._window_layout(bev_idx, pers_idx, (indices, values, mask))
        return SparseBias(indices=indices, values=values, mask=mask,
                          bev_shape=(self.bev_h, self.bev_w),
                          pers_shape=(self.num_views, self.pers_h, self.pers_w), k_bev=k_bev,
                          dtype=torch.float16 if self.fp16 else torch.float32,
                          is_global=not self.use_local_bias, unscaled=unscaled,
                          scale=scale.detach(), layout=layout)

    def _local_entries(self, lw, cw, bev_idx, pers_idx):
        """Both windows: (columns, unscaled values, validity) [B, Q, K] and K_bev."""
        parts = (self._bev_window(lw, bev_idx), self._camera_window(cw, pers_idx))
        cols, raw, ok = (torch.cat(t, -1) for t in zip(*parts))
        return cols, raw, ok, parts[0][0].shape[-1]

    def _window_layout(self, bev_idx, pers_idx, entries: tuple):
        """The :class:`WindowLayout` of the windows just built, or None if they are not uniform
        boxes (Gaussian window, or offset buffers other than the ones ``__init__`` makes).

        ``entries``: the (indices, values, mask) it describes; the index inputs are copied.
        """
        if self.use_gaussian_window or not self._standard_offsets():
            return None
        axis = window_axis_offsets(self.window_size, self.window_parity)
        return WindowLayout(bev_idx.detach().clone(), pers_idx.detach().clone(), int(axis[0]),
                            int(axis.numel()), tuple((t, t._version) for t in entries))

    def _standard_offsets(self) -> bool:
        """True if the offset buffers are those ``__init__`` builds (cached per buffer version)."""
        names = ("y_offsets", "x_offsets", "window_offsets_bev", "window_offsets_pers")
        bufs = [getattr(self, name) for name in names]
        key = tuple((t._version, t.data_ptr(), t.device) for t in bufs)
        cached = self.__dict__.get("_standard_offsets_cache")
        if cached is None or cached[0] != key:
            want = self._window_buffers()
            ok = all(torch.equal(t, want[name].to(t.device)) for name, t in zip(names, bufs))
            cached = self.__dict__["_standard_offsets_cache"] = (key, ok)
        return cached[1]

    def _global_entries(self, lw, cw):
        """One entry per segment: the BEV value at column 0, the camera value at column H*W."""
        b, q = lw.shape
        starts = torch.tensor([0, self.bev_h * self.bev_w], device=lw.device).expand(b, q, 2)
        mask = torch.ones(b, q, 2, dtype=torch.bool, device=lw.device)
        return starts, torch.stack([lw, cw], -1), mask, 1

    def _check_inputs(self, lidar_weights, camera_weights, pts_bev_indices, pts_pers_indices):
        """Validate shapes and finiteness; return float32 weights and the untouched indices."""
        if not isinstance(lidar_weights, torch.Tensor) or lidar_weights.dim() != 2:
            is_t = isinstance(lidar_weights, torch.Tensor)
            got = list(lidar_weights.shape) if is_t else type(lidar_weights).__name__
            raise AQRInputError(f"lidar_weights: expected shape [B, Q], got {got}")
        b, q = lidar_weights.shape
        check_shape("camera_weights", camera_weights, (b, q), "[B, Q]")
        check_shape("pts_bev_indices", pts_bev_indices, (b, q), "[B, Q]")
        check_shape("pts_pers_indices", pts_pers_indices, (b, q, 3), "[B, Q, 3]")
        named = dict(lidar_weights=lidar_weights, camera_weights=camera_weights,
                     pts_bev_indices=pts_bev_indices, pts_pers_indices=pts_pers_indices)
        for name, t in named.items():
            if t.is_complex() or t.dtype == torch.bool:
                raise AQRInputError(f"{name}: expected a real-valued tensor, got dtype {t.dtype}")
            check_finite(name, t)
        # Upstream decorates forward with force_fp32: weights are used in float32.
        return lidar_weights.float(), camera_weights.float(), pts_bev_indices, pts_pers_indices

    def _masked_weights(self, weights: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``w * g`` at valid window slots, 0 elsewhere: [B, Q, K] float32."""
        w = weights.unsqueeze(-1).expand(-1, -1, valid.shape[-1])
        if self.use_gaussian_window:
            w = w * self.gaussian_weights
        return torch.where(valid, w, torch.zeros_like(w))

    def _bev_window(self, weights: torch.Tensor, positions: torch.Tensor):
        """BEV window: (dense columns, unscaled values, validity), each [B, Q, K]."""
        n = self.bev_h * self.bev_w
        target = positions.unsqueeze(-1) + self.window_offsets_bev
        qy = torch.div(positions, self.bev_w, rounding_mode="floor").long()
        qx = positions % self.bev_w
        wy = qy.unsqueeze(-1) + self.y_offsets
        wx = qx.unsqueeze(-1) + self.x_offsets
        valid = (wy >= 0) & (wy < self.bev_h) & (wx >= 0) & (wx < self.bev_w)
        return target.clamp(0, n - 1).long(), self._masked_weights(weights, valid), valid

    def _camera_window(self, weights: torch.Tensor, positions: torch.Tensor):
        """Camera window: (dense columns, unscaled values, validity), each [B, Q, K]."""
        hw = self.pers_h * self.pers_w
        v, h, w = (positions[..., i].long() for i in range(3))
        flat = v * self.pers_h * self.pers_w + h * self.pers_w + w
        target = flat.unsqueeze(-1) + self.window_offsets_pers
        wh = h.unsqueeze(-1) + self.y_offsets
        ww = w.unsqueeze(-1) + self.x_offsets
        same_view = torch.div(target, hw, rounding_mode="floor") == v.unsqueeze(-1)
        valid = (wh >= 0) & (wh < self.pers_h) & (ww >= 0) & (ww < self.pers_w) & same_view
        raw = self._masked_weights(weights, valid)
        raw, valid = _merge_view_overflow(v, self.num_views, raw, valid)
        cols = target.clamp(0, self.num_views * hw - 1) + self.bev_h * self.bev_w
        return cols, raw, valid

    def _warn_out_of_grid(self, bev_idx: torch.Tensor, pers_idx: torch.Tensor) -> None:
        """Emit Q2 with counts of BEV indices outside [0, H*W) and camera cells off the maps.

        A flat index inside [0, H*W) whose (y, x) was off the grid (e.g. x = -1) cannot be
        told from an in-grid one here: it silently wraps into the neighbouring row.
        """
        n_bev = int(((bev_idx < 0) | (bev_idx >= self.bev_h * self.bev_w)).sum())
        v, h, w = (pers_idx[..., i].long() for i in range(3))
        inside = ((v >= 0) & (v < self.num_views) & (h >= 0) & (h < self.pers_h)
                  & (w >= 0) & (w < self.pers_w))
        n_cam = int((~inside).sum())
        if n_bev or n_cam:
            warn_quirk("Q2", f"{n_bev} BEV indices outside the {self.bev_h}x{self.bev_w} grid "
                       f"and {n_cam} camera cells outside the maps: upstream keeps their wrapped "
                       f"/ partial windows (wrapped in-range indices are not detectable here)",
                       stacklevel=4, bev_out_of_grid=n_bev, camera_out_of_map=n_cam)

    # ----- statistics, memory -----

    def debug_statistics(self, bias, lidar_weights: torch.Tensor,
                         camera_weights: torch.Tensor) -> dict:
        """Upstream's debug-print statistics (spec 5.3) as a dict, plus in-window ones (Q11).

        ``bias``: a :class:`SparseBias` (preferred; statistics use the pre-clamp values as
        upstream) or a dense [B, Q, F] tensor (its values as given; "in window" then means the
        nonzero entries). ``all_entries`` counts every one of the B*Q*F entries like upstream
        (near-zero ~99% by construction); ``in_window`` only the window cells.
        """
        lw, cw = lidar_weights.detach().float(), camera_weights.detach().float()
        if isinstance(bias, SparseBias):
            all_entries, in_window, basis = self._sparse_stats(bias)
        else:
            all_entries, in_window, basis = self._dense_stats(bias)
        return dict(iteration=self._iter_count, scale=self._scale_stats(),
                    all_entries=all_entries, in_window=in_window,
                    in_window_basis=basis,
                    input_weights=dict(lidar=_weight_summary(lw), camera=_weight_summary(cw)),
                    modality_preference=dict(
                        prefer_lidar=float((lw > cw).float().mean()),
                        prefer_camera=float((cw > lw).float().mean()),
                        balanced=float(((lw - cw).abs() < 0.2).float().mean())))

    def _scale_stats(self) -> dict:
        """Scale, gradient and bound warnings as upstream prints them (bounds: learnable only)."""
        s = self.effective_scale()
        grad = self.bias_scale.grad
        learn = self.learnable_scale
        return dict(value=s, learnable=learn, requires_grad=bool(self.bias_scale.requires_grad),
                    grad=float(grad.reshape(-1)[0]) if learn and grad is not None else None,
                    near_max=learn and s > 0.9 * self.max_scale,
                    near_min=learn and not s > 0.9 * self.max_scale and s < 1.1 * self.min_scale)

    def _sparse_stats(self, bias: SparseBias):
        """(all_entries, in_window, basis) statistics of a SparseBias without densifying."""
        b, q, _ = bias.shape
        hw, n_cam, k = bias.num_bev_features, bias.num_camera_features, bias.k_bev
        vals, mask = bias.unclamped_values().detach(), bias.mask
        reps = torch.ones_like(vals)
        if bias.is_global:  # each entry stands for its whole segment
            reps = torch.tensor([float(hw), float(n_cam)], dtype=vals.dtype).expand_as(vals)
        all_e, in_w = {}, {}
        for name, sl, n in (("overall", slice(None), hw + n_cam), ("bev", slice(None, k), hw),
                            ("camera", slice(k, None), n_cam)):
            m = mask[..., sl]
            v = vals[..., sl][m]
            w = reps[..., sl][m] if bias.is_global else None  # local: every entry counts once
            n_in = int(w.sum()) if w is not None else v.numel()
            all_e[name] = _summary(v, b * q * n, w)
            in_w[name] = _summary(v, n_in, w)
        return all_e, in_w, "windows"

    def _dense_stats(self, bias: torch.Tensor):
        """(all_entries, in_window, basis) statistics of a dense [B, Q, F] bias."""
        hw = self.bev_h * self.bev_w
        x = bias.detach().float()
        all_e, in_w = {}, {}
        for name, part in (("overall", x), ("bev", x[..., :hw]), ("camera", x[..., hw:])):
            flat = part.reshape(-1)
            nz = flat[flat != 0]
            all_e[name] = _summary(flat, flat.numel())
            in_w[name] = _summary(nz, nz.numel())
        return all_e, in_w, "nonzero"

    def get_memory_usage(self, batch_size: int, num_queries: int) -> dict:
        """Size of the dense bias [B, Q, F], exactly as upstream's ``get_memory_usage``."""
        total = self.bev_h * self.bev_w + self.num_views * self.pers_h * self.pers_w
        elements = batch_size * num_queries * total
        fp32, fp16 = elements * 4 / (1024 ** 2), elements * 2 / (1024 ** 2)
        return {"total_features": total, "bias_shape": (batch_size, num_queries, total),
                "memory_fp32_mb": fp32, "memory_fp16_mb": fp16,
                "current_dtype": "fp16" if self.fp16 else "fp32",
                "estimated_memory_mb": fp16 if self.fp16 else fp32}

    # ----- checkpoints -----

    @classmethod
    def from_state_dict(cls, state_dict: dict, prefix: str | None = None,
                        window_parity: str | None = None, **config) -> "AttentionBiasGenerator":
        """Build from a checkpoint of either generation; stored buffers win (Q14).

        ``prefix`` defaults to whatever precedes ``bias_scale`` (e.g.
        ``'pts_bbox_head.attention_bias_generator.'``). The window parity is read from the
        stored offsets; an explicit ``window_parity`` that disagrees gives a Q14 warning. The
        ``CMTTEST/bias`` generation (0-d ``bias_scale``, no ``gaussian_weights``) is loaded with
        ``bias_scale`` reshaped to [1], window weights computed from ``config`` (uniform unless
        ``use_gaussian_window``) and a Q14 warning;
        ``checkpoint_generation`` records ``'head'`` or ``'bias_snapshot'``.
        """
        sd = _strip_prefix(state_dict, prefix)
        ws = config.get("window_size", 15)
        stored = _infer_parity(sd["y_offsets"], ws)
        old = sd["bias_scale"].dim() == 0 or "gaussian_weights" not in sd
        module = cls(**config, window_parity=stored)
        sd["bias_scale"] = sd["bias_scale"].detach().reshape(1).float()
        sd.setdefault("gaussian_weights", module.gaussian_weights.clone())
        module._check_stored_offsets(sd)
        module.load_state_dict(sd, strict=True)
        module.checkpoint_generation = _GENERATION_OLD if old else _GENERATION_HEAD
        if old:
            warn_quirk("Q14", f"checkpoint is the CMTTEST/bias generation (0-d bias_scale or no "
                       f"gaussian_weights); using its stored {stored} offsets "
                       f"({sd['y_offsets'].numel()} cells)", stacklevel=3,
                       generation=_GENERATION_OLD, parity=stored, cells=sd["y_offsets"].numel())
        if window_parity is not None and window_parity != stored:
            warn_quirk("Q14", f"window_parity={window_parity!r} requested but the checkpoint "
                       f"stores {stored} offsets; the stored offsets are used", stacklevel=3,
                       generation=module.checkpoint_generation, parity=stored)
        return module

    def _check_stored_offsets(self, sd: dict) -> None:
        """Raise if stored offset buffers do not match this module's shapes (wrong config)."""
        for name, mine in self._window_buffers().items():
            if name == "gaussian_weights":
                check_shape(name, sd[name], tuple(mine.shape), "[K]")
            elif not torch.equal(sd[name].long(), mine):
                raise AQRInputError(
                    f"{name}: stored offsets differ from those for window_size={self.window_size}, "
                    f"bev_feature_shape=({self.bev_h}, {self.bev_w}), pers_feature_shape=("
                    f"{self.num_views}, {self.pers_h}, {self.pers_w}); expected "
                    f"{mine.tolist()[:8]}...")


def _strip_prefix(state_dict: dict, prefix: str | None) -> dict:
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


def _infer_parity(y_offsets: torch.Tensor, window_size: int) -> str:
    """'head' or 'symmetric' from the stored per-axis offsets, else raise."""
    axis = torch.unique(y_offsets.long())
    for parity in PARITIES:
        want = window_axis_offsets(int(window_size), parity)
        if torch.equal(axis, want) and y_offsets.numel() == want.numel() ** 2:
            return parity
    raise AQRInputError(f"y_offsets: stored offsets {axis.tolist()} fit window_size={window_size} "
                        f"under neither parity {PARITIES}")


def _merge_view_overflow(v: torch.Tensor, num_views: int, raw: torch.Tensor, valid: torch.Tensor):
    """Collapse windows of views outside [0, V) into their first valid slot.

    Such a window's cells all clamp to one camera column, where upstream's ``scatter_add_``
    sums them in slot order; summing with ``scatter_add`` in the same order gives the same
    float32 value. Returns (values, validity) [B, Q, K].
    """
    oob = ((v < 0) | (v >= num_views)).unsqueeze(-1)
    if not bool(oob.any()):
        return raw, valid
    slot = torch.arange(valid.shape[-1], device=valid.device)
    leader = valid.int().argmax(-1, keepdim=True)
    idx = torch.where(oob, leader, slot)
    merged = torch.zeros_like(raw).scatter_add(-1, idx, raw)
    keep = torch.where(oob, (slot == leader) & valid.any(-1, keepdim=True), valid)
    return merged, keep
