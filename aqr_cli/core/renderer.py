"""``WeightRenderer``: splat per-query weights into BEV and camera weight maps (spec section 3).

A vectorised re-implementation of upstream ``weight_renderer.py`` that reproduces its numbers,
including its quirks (spec Q1, Q24-Q26, fixtures README items 2-7):

- a query is skipped when ``float(weight) < min_weight_threshold``, compared in float64 as the
  upstream ``.item()`` does, so a float32 weight of 0.01 (= 0.0099999998) is skipped;
- coordinates go through Python ``int()`` (truncation toward zero): ``-0.4`` lands on cell 0;
- the Gaussian stamp is cropped at the borders, not renormalised; overlapping stamps add up;
- 'direct' keeps the per-cell maximum; 'bilinear' skips the last row/column and extrapolates for
  negative fractional coordinates; 'distance_weighted' has no bounds check on the centre;
- camera maps support only 'gaussian' and 'direct' (the other two give all-zero maps);
- the BEV path clamps the weights to [0, 1] when any is outside. Upstream does this in place on
  the caller's tensor; here the caller's tensor is never modified and a ``QuirkWarning`` (Q1)
  is emitted instead.

Like upstream (which reads weights with ``.item()``), the maps carry no gradient to the weights.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._checks import check_finite, check_positive_shape, check_shape
from .errors import AQRInputError, warn_quirk

RENDER_METHODS = ("gaussian", "bilinear", "direct", "distance_weighted")
PERSPECTIVE_METHODS = ("gaussian", "direct")
_BLOCK_ELEMENTS = 1 << 22  # memory bound of one distance_weighted block


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """Upstream's sum-1 Gaussian kernel ``[k, k]``, ``k = int(6*sigma + 1)`` made odd (float32)."""
    size = int(6 * sigma + 1)
    if size % 2 == 0:
        size += 1
    ax = torch.arange(-size // 2 + 1.0, size // 2 + 1.0, dtype=torch.float32)
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    kernel = torch.exp(-(yy ** 2 + xx ** 2) / (2 * sigma ** 2))
    return kernel / kernel.sum()


def _band(taps: torch.Tensor, size: int) -> torch.Tensor:
    """Banded ``[size, size]`` matrix ``M[i, j] = taps[i - j + half]`` (0 outside the band)."""
    half = taps.shape[0] // 2
    pos = torch.arange(size, device=taps.device)
    diff = pos[:, None] - pos[None, :]
    inside = diff.abs() <= half
    return torch.where(inside, taps[(diff + half).clamp(0, 2 * half)], taps.new_zeros(()))


def _outside_unit(weights: torch.Tensor) -> bool:
    """True when any weight is < 0 or > 1 (upstream's condition for clamping)."""
    return bool((weights < 0).any() or (weights > 1).any())


def _check_real(name: str, value, positive: bool = False, nonneg: bool = False) -> float:
    """Return ``value`` as a finite float, or raise ``AQRInputError`` naming ``name``."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise AQRInputError(f"{name}: expected a number, got {value!r}") from None
    if not math.isfinite(out) or (positive and out <= 0) or (nonneg and out < 0):
        want = "a positive" if positive else "a non-negative" if nonneg else "a finite"
        raise AQRInputError(f"{name}: expected {want} number, got {value!r}")
    return out


class WeightRenderer(nn.Module):
    """Render per-query weights ``[B, Q]`` into BEV ``[B, H, W]`` and camera ``[B, V, h, w]`` maps.

    Constructor arguments and defaults are upstream's, so ``WeightRenderer(**renderer_config)``
    accepts a config dict (without ``type``). ``bilinear_radius`` is accepted but unused, as
    upstream. The buffer ``gaussian_kernel`` exists only for ``render_method='gaussian'``.
    """

    def __init__(self, render_method: str = "gaussian", gaussian_sigma: float = 2.0,
                 bilinear_radius: float = 1.5, distance_decay: float = 0.8,
                 min_weight_threshold: float = 0.01, bev_feature_shape=(180, 180),
                 pers_feature_shape=(6, 40, 100), normalize_weights: bool = True,
                 max_weight_clamp: float = 1.5):
        super().__init__()
        if render_method not in RENDER_METHODS:
            raise AQRInputError(
                f"render_method: expected one of {list(RENDER_METHODS)}, got {render_method!r}")
        self.render_method = render_method
        self.gaussian_sigma = _check_real("gaussian_sigma", gaussian_sigma, positive=True)
        self.bilinear_radius = bilinear_radius
        self.distance_decay = _check_real("distance_decay", distance_decay, positive=True)
        self.min_weight_threshold = _check_real("min_weight_threshold", min_weight_threshold)
        self.bev_feature_shape = check_positive_shape("bev_feature_shape", bev_feature_shape, 2)
        self.pers_feature_shape = check_positive_shape("pers_feature_shape", pers_feature_shape, 3)
        self.normalize_weights = bool(normalize_weights)
        self.max_weight_clamp = _check_real("max_weight_clamp", max_weight_clamp, nonneg=True)
        if render_method == "gaussian":
            self.register_buffer("gaussian_kernel", gaussian_kernel(self.gaussian_sigma))
            self.kernel_size = int(self.gaussian_kernel.shape[0])

    def extra_repr(self) -> str:
        return (f"render_method={self.render_method!r}, gaussian_sigma={self.gaussian_sigma}, "
                f"bev_feature_shape={self.bev_feature_shape}, "
                f"pers_feature_shape={self.pers_feature_shape}, "
                f"normalize_weights={self.normalize_weights}, "
                f"max_weight_clamp={self.max_weight_clamp}")

    # ------------------------------------------------------------------ public API

    def render_bev_weights(self, query_weights: torch.Tensor, pts_bev: torch.Tensor,
                           feature_shape=None) -> torch.Tensor:
        """Return the BEV weight map ``[B, H, W]`` for weights ``[B, Q]`` at ``pts_bev [B, Q, 2]``.

        ``pts_bev`` holds (row, col) cell coordinates. Weights outside [0, 1] are clamped
        (upstream clamps the caller's tensor in place; here a copy is used and a Q1
        ``QuirkWarning`` reports how many values were clamped).
        """
        h, w = self._shape("feature_shape", feature_shape, self.bev_feature_shape, 2)
        weights = self._check_weights(query_weights)
        b, q = weights.shape
        check_shape("pts_bev", pts_bev, (b, q, 2), "[B, Q, 2]")
        check_finite("pts_bev", pts_bev)
        if _outside_unit(weights):
            self._warn_clamp(weights)
            weights = weights.clamp(0, 1)
        pts = pts_bev.detach()
        render = getattr(self, f"_render_{self.render_method}")
        return self._postprocess_weight_map(render(weights, pts[..., 0], pts[..., 1], (h, w)))

    def render_perspective_weights(self, query_weights: torch.Tensor, pts_pers: torch.Tensor,
                                   feature_shape=None) -> torch.Tensor:
        """Return camera maps ``[B, V, h, w]`` for weights ``[B, Q]`` at ``pts_pers [B, Q, 3]``.

        ``pts_pers`` holds (view, h, w). Rows whose view is not exactly one of ``0..V-1`` or
        whose h is NaN are skipped (as upstream). Weights are not clamped. Only 'gaussian' and
        'direct' draw anything; 'bilinear' and 'distance_weighted' give all-zero maps (Q25).
        """
        v, h, w = self._shape("feature_shape", feature_shape, self.pers_feature_shape, 3)
        weights = self._check_weights(query_weights)
        b, q = weights.shape
        check_shape("pts_pers", pts_pers, (b, q, 3), "[B, Q, 3]")
        self._check_pers_coords(pts_pers)
        if self.render_method not in PERSPECTIVE_METHODS:
            return weights.new_zeros(b, v, h, w)
        view, rows, cols = pts_pers.detach().unbind(-1)
        # upstream: view == v (exact float equality) and h not NaN
        keep = (view == view.round()) & (view >= 0) & (view < v) & ~torch.isnan(rows)
        zero = rows.new_zeros(())
        sample = torch.arange(b, device=view.device)[:, None]
        maps = torch.where(keep, view, zero).long() + v * sample
        render = getattr(self, f"_render_{self.render_method}")
        flat = render(weights, torch.where(keep, rows, zero), torch.where(keep, cols, zero),
                      (h, w), maps=maps, num_maps=b * v, keep=keep)
        return self._postprocess_weight_map(flat.view(b, v, h, w))

    def effective_bev_weights(self, query_weights: torch.Tensor) -> torch.Tensor:
        """Return the weights ``[B, Q]`` the BEV path renders (and upstream leaves in the caller's
        tensor): clamped to [0, 1] when any value is outside, else unchanged. Never in place."""
        weights = query_weights.detach()
        return weights.clamp(0, 1) if _outside_unit(weights) else weights.clone()

    # ------------------------------------------------------------------ checks

    @staticmethod
    def _shape(name: str, given, default: tuple, length: int) -> tuple:
        """Return the feature shape to render into (``given`` or the configured default)."""
        return default if given is None else check_positive_shape(name, given, length)

    @staticmethod
    def _check_weights(query_weights) -> torch.Tensor:
        """Validate ``query_weights [B, Q]`` (floating, finite) and return it detached."""
        check_shape("query_weights", query_weights, (None, None), "[B, Q]")
        if not query_weights.is_floating_point():
            raise AQRInputError(
                f"query_weights: expected a floating tensor [B, Q], "
                f"got dtype {query_weights.dtype}")
        check_finite("query_weights", query_weights)
        return query_weights.detach()

    @staticmethod
    def _check_pers_coords(pts_pers: torch.Tensor) -> None:
        """Allow NaN h (upstream's skip marker) but no Inf, and no NaN w next to a real h."""
        if bool(torch.isinf(pts_pers).any()):
            raise AQRInputError(
                f"pts_pers: expected finite (view, h, w) values or NaN h/w for skipped rows, "
                f"got {int(torch.isinf(pts_pers).sum())} Inf values")
        bad = torch.isnan(pts_pers[..., 2]) & ~torch.isnan(pts_pers[..., 1])
        if bool(bad.any()):
            raise AQRInputError(
                f"pts_pers: {int(bad.sum())} rows have NaN w but a real h; mark skipped rows "
                f"with NaN in h (upstream would fail converting NaN w to int)")

    def _warn_clamp(self, weights: torch.Tensor) -> None:
        """Emit the Q1 ``QuirkWarning`` for BEV weights outside [0, 1]."""
        below, above = int((weights < 0).sum()), int((weights > 1).sum())
        warn_quirk("Q1", f"{below + above} LiDAR weights outside [0, 1] clamped before "
                   f"BEV rendering (upstream clamps the caller's tensor in place)",
                   stacklevel=4, count=below + above, below_zero=below, above_one=above,
                   min=float(weights.min()), max=float(weights.max()))

    # ------------------------------------------------------------------ render kernels

    def _drawn(self, weights: torch.Tensor) -> torch.Tensor:
        """Mask ``[B, Q]`` of weights upstream draws: ``float(w) >= threshold`` in float64."""
        return weights.double() >= self.min_weight_threshold

    def _cells(self, weights, rows, cols, shape, maps=None, num_maps=None, keep=None):
        """Flat cell index ``[B, Q]`` of each drawn query, ``N*H*W`` (a spare slot) for the rest.

        Centres are ``int(row), int(col)`` (truncation toward zero; the clamp to [-2, H+1] keeps
        out-of-grid values out of the grid) and must fall inside the ``[H, W]`` grid.
        """
        h, w = shape
        y = rows.clamp(-2, h + 1).long()
        x = cols.clamp(-2, w + 1).long()
        ok = (y >= 0) & (y < h) & (x >= 0) & (x < w) & self._drawn(weights)
        if keep is not None:
            ok &= keep
        if maps is None:
            num_maps = weights.shape[0]
            maps = torch.arange(num_maps, device=weights.device)[:, None]
        spare = num_maps * h * w
        return torch.where(ok, (maps * h + y) * w + x, spare), num_maps

    def _render_gaussian(self, weights, rows, cols, shape, maps=None, num_maps=None,
                         keep=None) -> torch.Tensor:
        """Sum of cropped ``w * K`` stamps at the truncated centres -> ``[N, H, W]``.

        The stamps are a delta map filtered with the kernel; cells beyond the border simply do
        not exist, so the stamp is cropped without renormalising, exactly as upstream's slicing.
        """
        h, w = shape
        cells, n = self._cells(weights, rows, cols, shape, maps, num_maps, keep)
        delta = weights.new_zeros(n * h * w + 1)
        delta.scatter_add_(0, cells.flatten(), weights.flatten())
        return self._filter(delta[:-1].view(n, h, w))

    def _filter(self, delta: torch.Tensor) -> torch.Tensor:
        """Correlate maps ``[N, H, W]`` with the flipped kernel (i.e. stamp it at every cell).

        The reference kernel is separable, ``K = c r^T``; then the result is ``Ay @ D @ Ax^T``
        with banded ``[H, H]`` / ``[W, W]`` matrices, much faster than ``conv2d`` on CPU. A
        kernel that is not separable (e.g. edited in a checkpoint) goes through ``conv2d``.
        """
        bands = self._bands(delta.shape[1], delta.shape[2], delta.dtype)
        if bands is None:
            kernel = self.gaussian_kernel.to(delta.dtype)
            out = F.conv2d(delta[:, None], kernel.flip(0, 1)[None, None],
                           padding=kernel.shape[0] // 2)
            return out[:, 0]
        return bands[0] @ delta @ bands[1]

    def _bands(self, h: int, w: int, dtype: torch.dtype):
        """``(Ay [H, H], Ax^T [W, W])`` for the current kernel, or None if it is not separable.

        Cached; the key includes the buffer's version counter, so ``load_state_dict`` or an
        in-place edit of ``gaussian_kernel`` invalidates it.
        """
        kernel = self.gaussian_kernel
        key = (kernel._version, kernel.data_ptr(), kernel.device, h, w, dtype)
        cached = self.__dict__.get("_band_cache")
        if cached is not None and cached[0] == key:
            return cached[1]
        k = kernel.to(dtype)
        half = k.shape[0] // 2
        col, row = k[:, half], k[half, :] / k[half, half]
        bands = None
        if torch.allclose(torch.outer(col, row), k, rtol=1e-5, atol=1e-10):
            bands = (_band(col, h), _band(row, w).T.contiguous())
        self.__dict__["_band_cache"] = (key, bands)
        return bands

    def _render_direct(self, weights, rows, cols, shape, maps=None, num_maps=None,
                       keep=None) -> torch.Tensor:
        """Per-cell maximum of the drawn weights at the truncated centres -> ``[N, H, W]``."""
        h, w = shape
        cells, n = self._cells(weights, rows, cols, shape, maps, num_maps, keep)
        out = weights.new_zeros(n * h * w + 1)
        out.scatter_reduce_(0, cells.flatten(), weights.flatten(), "amax")
        return out[:-1].view(n, h, w)

    def _render_bilinear(self, weights, rows, cols, shape) -> torch.Tensor:
        """Bilinear deposit around base cell ``(int(y), int(x))`` -> ``[B, H, W]`` (BEV only).

        Base cells on the last row/column are skipped; negative fractional coordinates give
        extrapolated corner weights outside [0, 1]. Corner weights are float64 products, as
        upstream's Python floats, rounded to the map dtype when added.
        """
        h, w = shape
        b, q = weights.shape
        y, x = rows.double(), cols.double()
        y0, x0 = torch.trunc(y), torch.trunc(x)
        sel = (y0 >= 0) & (y0 < h - 1) & (x0 >= 0) & (x0 < w - 1) & self._drawn(weights)
        wy1, wx1 = (y - y0)[sel], (x - x0)[sel]
        wy0, wx0 = 1 - wy1, 1 - wx1
        base = ((torch.arange(b, device=weights.device)[:, None] * h + y0.long()) * w
                + x0.long())[sel]
        wt = weights.double()[sel]
        index = torch.cat([base, base + 1, base + w, base + w + 1])
        value = torch.cat([wt * wy0 * wx0, wt * wy0 * wx1, wt * wy1 * wx0, wt * wy1 * wx1])
        out = torch.zeros(b * h * w, dtype=weights.dtype, device=weights.device)
        out.scatter_add_(0, index, value.to(weights.dtype))
        return out.view(b, h, w)

    def _render_distance_weighted(self, weights, rows, cols, shape) -> torch.Tensor:
        """Sum of ``w * exp(-d / (R * decay))`` for ``d <= R = 0.2*min(H, W)`` -> ``[B, H, W]``.

        The centre is not bounds-checked (upstream). Only the cells of a box around each centre
        can lie within ``R``; everything else upstream adds is exactly 0. Distances and products
        are float32 as upstream, and ``scatter_add_`` over query-major blocks adds them to each
        cell in query order, i.e. in upstream's summation order.
        """
        h, w = shape
        b, q = weights.shape
        radius = min(h, w) * 0.2
        reach = int(math.ceil(radius)) + 1
        offs = torch.arange(-reach, reach + 1, device=weights.device)
        drawn = self._drawn(weights)
        out = torch.zeros(b, h * w + 1, dtype=weights.dtype, device=weights.device)
        step = max(1, _BLOCK_ELEMENTS // (max(b, 1) * offs.numel() ** 2))
        for start in range(0, q, step):  # blocks of queries, bounded memory
            sl = slice(start, start + step)
            cy = rows[:, sl].to(torch.float32)[..., None, None]
            cx = cols[:, sl].to(torch.float32)[..., None, None]
            gy = torch.floor(cy) + offs[:, None]  # [B, q, 2r+1, 1] candidate rows
            gx = torch.floor(cx) + offs[None, :]  # [B, q, 1, 2r+1] candidate cols
            dist = torch.sqrt((gy - cy) ** 2 + (gx - cx) ** 2)
            dw = torch.exp(-dist / (radius * self.distance_decay))
            val = weights[:, sl, None, None] * dw.to(weights.dtype)
            ok = (dist <= radius) & (gy >= 0) & (gy < h) & (gx >= 0) & (gx < w)
            ok &= drawn[:, sl, None, None]
            cell = torch.where(ok, gy.clamp(0, h - 1).long() * w + gx.clamp(0, w - 1).long(), h * w)
            out.scatter_add_(1, cell.flatten(1), val.flatten(1))
        return out[:, :-1].reshape(b, h, w)

    # ------------------------------------------------------------------ postprocess

    def _postprocess_weight_map(self, weight_map: torch.Tensor) -> torch.Tensor:
        """Zero cells below the threshold, then clamp to [0, max_weight_clamp] if configured."""
        out = torch.where(weight_map < self.min_weight_threshold, 0.0, weight_map)
        if self.normalize_weights:
            out = torch.clamp(out, min=0, max=self.max_weight_clamp)
        return out
