"""Feature statistics of the multiplicative and additive AQR paths, per modality (spec 6.2, 10.1).

The multiplicative path replaces the features by ``FeatureModulator`` output (``f * g`` with
the per-cell gain ``g = m + r``, Q27); the additive path feeds the unchanged features to the
decoder. Both are measured the same way, from the features each path actually uses, so the
additive path's zero change is computed, not assumed.

Per modality (BEV ``[B, C, H, W]``, camera ``[B*V, C, h, w]`` sample-major):

- mean / std / min / max before and after;
- upstream's ``modulation_effect``: ``mean_change = mean(d)``, ``std_change = std(d)``
  (unbiased), ``max_change = max|d|``, ``relative_change = mean(|d| / (|f| + 1e-8))`` with
  ``d = after - before``;
- cosine similarity of before and after, flattened per sample (all channels, cells and, for
  cameras, views of one sample), averaged over samples;
- the gain per cell as a histogram with the shares of attenuated (< 1) and amplified (> 1) cells;
- energy retained inside object boxes (sum of squared features after / before over the cells
  of rotated GT boxes) for small (pedestrian, traffic_cone, bicycle, motorcycle) and large
  objects, and outside all boxes;
- weight coverage on objects: rendered weight-map mass inside boxes / total (the researchers
  read < 0.3 as poor and > 0.6 as good, spec 10.1 item 5).

Box cells: BEV cells whose centre lies inside the rotated footprint (row = y, col = x, row 0
at ``pc_range[1]``); a box that covers no cell centre (a traffic cone on 0.84 m cells) gets the
cell holding its centre. Cameras: the 2-D bounding rectangle of the projected box corners, as
the feature cells it overlaps.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from aqr_cli.analysis.attention import WindowBias, is_small_label
from aqr_cli.core.configs import CLASS_NAMES
from aqr_cli.core.errors import AQRInputError
from aqr_cli.core.geometry import box_corners_3d, boxes_array

REL_EPS = 1e-8
DEFAULT_BINS = 60
COVERAGE_BANDS = ((0.3, "poor (< 0.3)"), (0.6, "fair (0.3-0.6)"), (math.inf, "good (> 0.6)"))


def _f(x) -> float | None:
    v = float(x)
    return v if math.isfinite(v) else None


def _moments(x: torch.Tensor) -> dict:
    """mean / std (unbiased) / min / max of a tensor, as floats."""
    x = x.detach().double().reshape(-1)
    if x.numel() == 0:
        return dict(mean=None, std=None, min=None, max=None)
    return dict(mean=_f(x.mean()), std=_f(x.std()) if x.numel() > 1 else None,
                min=_f(x.min()), max=_f(x.max()))


def bit_identical(before: torch.Tensor, after: torch.Tensor) -> bool:
    """Whether two float tensors of one shape hold the same bits in every element (any layout):
    then every statistic of ``after`` equals that of ``before``, computed once."""
    if before.shape != after.shape or before.dtype != after.dtype or not before.is_floating_point():
        return False
    as_int = {8: torch.int64, 4: torch.int32, 2: torch.int16}.get(before.element_size())
    return as_int is not None and torch.equal(before.detach().view(as_int), after.detach().view(as_int))


def change_stats(before: torch.Tensor, after: torch.Tensor, num_samples: int | None = None,
                 identical: bool | None = None) -> dict:
    """Feature statistics before/after and upstream's modulation-effect numbers (float64).

    ``num_samples``: how many samples the leading dimension holds (B for BEV ``[B, C, H, W]``,
    also B for cameras ``[B*V, C, h, w]``, whose V views then form one sample); default: the
    leading dimension. ``identical`` is True when every element is bit-equal. Passing it
    (:func:`bit_identical`) saves the check; bit-identical finite features (the additive path's)
    take the statistics of ``before`` once: the full computation would give the same numbers
    (same values reduced in the same order; a zero change; a cosine of exactly 1).
    """
    if not isinstance(before, torch.Tensor) or not isinstance(after, torch.Tensor):
        raise AQRInputError("features: expected torch tensors before and after")
    if before.shape != after.shape:
        raise AQRInputError(f"features: after {list(after.shape)} must have the shape of "
                            f"before {list(before.shape)}")
    n = before.shape[0] if num_samples is None else int(num_samples)
    if n < 1 or before.shape[0] % n:
        raise AQRInputError(f"num_samples: {num_samples} does not divide the leading dimension "
                            f"{before.shape[0]}")
    # Two float64 buffers (66 MB each for BEV at 1600x640) instead of up to seven: `before` is
    # converted again where its float64 copy was overwritten (exact). Each reduction runs on the
    # same values in the same (logical, contiguous) order as on whole float64 copies.
    f0 = torch.empty(before.shape, dtype=torch.float64)
    f0.copy_(before.detach())
    moments0 = _moments(f0)
    if (bit_identical(before, after) if identical is None else identical) and moments0["mean"] is not None:
        return _unchanged(f0, n, moments0)
    work = torch.empty_like(f0)
    n0 = torch.mul(f0, f0, out=work).view(n, -1).sum(1)
    f1 = work.copy_(after.detach())
    moments1 = _moments(f1)
    n1 = torch.mul(f1, f1, out=f0).view(n, -1).sum(1)
    dot = f0.copy_(before.detach()).mul_(f1).view(n, -1).sum(1)
    f0.copy_(before.detach())
    d = f1.sub_(f0)
    ok = (n0 > 0) & (n1 > 0)
    # (dot / n0) * sqrt(n0 / n1) == dot / (|a0| |a1|), and exactly 1 for identical features
    cos = (dot[ok] / n0[ok]) * torch.sqrt(n0[ok] / n1[ok])
    out = dict(numel=int(before.numel()), num_samples=n, before=moments0, after=moments1,
               mean_change=_f(d.mean()), std_change=_f(d.std()) if d.numel() > 1 else None)
    d.abs_()
    out["max_change"] = _f(d.max()) if d.numel() else None
    d.div_(f0.abs_().add_(REL_EPS))
    out["relative_change"] = _f(d.mean()) if d.numel() else None
    out["cosine_similarity"] = _f(cos.mean()) if cos.numel() else None
    out["identical"] = bool(torch.equal(before, after))
    return out


def _unchanged(f0: torch.Tensor, n: int, moments0: dict) -> dict:
    """:func:`change_stats` of finite features against their bit-identical copy (``f0``: the
    float64 features, which this overwrites)."""
    n0 = f0.mul_(f0).view(n, -1).sum(1)
    ok = int((n0 > 0).sum())
    size = f0.numel()
    return dict(numel=size, num_samples=n, before=moments0, after=dict(moments0),
                mean_change=0.0, std_change=0.0 if size > 1 else None,
                max_change=0.0 if size else None, relative_change=0.0 if size else None,
                cosine_similarity=1.0 if ok else None, identical=True)


def quantiles(x: torch.Tensor, qs: Sequence[float]) -> torch.Tensor:
    """``torch.quantile(x, qs)`` (linear interpolation) of a 1-D float64 tensor, bit for bit, by
    selection (``numpy.partition``, linear time) instead of a full sort: 10x faster on the 2M
    values of a feature histogram. A tensor holding NaN goes to ``torch.quantile`` (NaN out)."""
    q = torch.tensor(list(qs), dtype=torch.float64)
    if x.numel() == 0 or bool(torch.isnan(x).any()):
        return torch.quantile(x, q)
    ranks = q * (x.numel() - 1)
    below, above = ranks.long(), ranks.ceil().long()
    part = torch.from_numpy(np.partition(x.numpy(), sorted({*below.tolist(), *above.tolist()})))
    return part[below].lerp(part[above], ranks - below)


def value_histograms(before: torch.Tensor, after: torch.Tensor, bins: int = DEFAULT_BINS,
                     clip: float = 0.001, identical: bool = False) -> dict:
    """Shared-edge histograms of feature values before and after.

    The range spans the ``clip`` and ``1 - clip`` quantiles of both (estimated on at most 2^20
    evenly strided values) so a few outliers do not squeeze the plot; values outside are
    counted in ``below`` / ``above``. Returns edges [bins + 1], before / after counts [bins].
    ``identical``: the two are bit-identical (:func:`bit_identical`), so ``after`` is counted
    once, as ``before``.
    """
    flat0 = before.detach().float().reshape(-1)
    flat1 = flat0 if identical else after.detach().float().reshape(-1)
    step = max(1, flat0.numel() // (1 << 20))
    sample = torch.cat([flat0[::step], flat1[::step]]).double()
    lo, hi = (float(v) for v in quantiles(sample, (clip, 1 - clip)))
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = torch.linspace(lo, hi, bins + 1, dtype=torch.float64)

    def count(x):
        return dict(counts=torch.histc(x, bins, lo, hi).long().tolist(),
                    below=int(torch.count_nonzero(x < lo)), above=int(torch.count_nonzero(x > hi)))

    counted = count(flat0)
    return dict(edges=edges.tolist(), before=counted, after=dict(counted) if identical else count(flat1))


def gain_stats(gain: torch.Tensor, bins: int = DEFAULT_BINS) -> dict:
    """Histogram of per-cell gains and the shares of attenuated (< 1), unity and amplified (> 1) cells.

    The bin edges always include 1.0, so no bin mixes attenuated and amplified cells.
    """
    g = gain.detach().double().reshape(-1)
    if g.numel() == 0:
        raise AQRInputError("gain: expected a non-empty gain map")
    lo, hi = min(float(g.min()), 1.0), max(float(g.max()), 1.0)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.05, hi + 0.05
    n_lo = max(1, round(bins * (1.0 - lo) / (hi - lo))) if lo < 1.0 else 0
    n_hi = max(1, bins - n_lo) if hi > 1.0 else 0
    parts = []
    if n_lo:
        parts.append(torch.linspace(lo, 1.0, n_lo + 1, dtype=torch.float64))
    if n_hi:
        parts.append(torch.linspace(1.0, hi, n_hi + 1, dtype=torch.float64)[1 if parts else 0:])
    edges = torch.cat(parts)
    idx = torch.bucketize(g, edges, right=True).clamp(1, edges.numel() - 1) - 1
    counts = torch.bincount(idx, minlength=edges.numel() - 1)
    return dict(edges=edges.tolist(), counts=counts.tolist(), numel=int(g.numel()),
                share_attenuated=float((g < 1).double().mean()),
                share_unity=float((g == 1).double().mean()),
                share_amplified=float((g > 1).double().mean()),
                min=float(g.min()), max=float(g.max()), mean=float(g.mean()),
                median=float(torch.quantile(g[:: max(1, g.numel() // (1 << 22))], 0.5)))


def rasterize_boxes_bev(boxes, bev_shape: Sequence[int], pc_range: Sequence[float],
                        min_one_cell: bool = True) -> torch.Tensor:
    """Cells of each rotated box footprint on the BEV grid: ``[N, H, W]`` bool.

    A cell belongs to a box when its centre ``(x, y)`` lies inside the rotated rectangle
    (``|local x| <= dx/2`` and ``|local y| <= dy/2``). Row = y, col = x, row 0 at
    ``pc_range[1]``. With ``min_one_cell`` a box covering no cell centre gets the cell holding
    its centre (when that is on the grid).
    """
    b = boxes_array(boxes)
    h, w = (int(v) for v in bev_shape)
    x0, y0, x1, y1 = float(pc_range[0]), float(pc_range[1]), float(pc_range[3]), float(pc_range[4])
    xs = x0 + (np.arange(w) + 0.5) * (x1 - x0) / w
    ys = y0 + (np.arange(h) + 0.5) * (y1 - y0) / h
    dx = xs[None, None, :] - b[:, 0, None, None]                 # [N, 1, W]
    dy = ys[None, :, None] - b[:, 1, None, None]                 # [N, H, 1]
    cos, sin = np.cos(b[:, 6])[:, None, None], np.sin(b[:, 6])[:, None, None]
    lx = dx * cos + dy * sin
    ly = -dx * sin + dy * cos
    inside = (np.abs(lx) <= b[:, 3, None, None] / 2) & (np.abs(ly) <= b[:, 4, None, None] / 2)
    if min_one_cell:
        col = np.floor((b[:, 0] - x0) / (x1 - x0) * w).astype(int)
        row = np.floor((b[:, 1] - y0) / (y1 - y0) * h).astype(int)
        for i in np.nonzero(~inside.reshape(len(b), -1).any(1))[0]:  # few tiny boxes
            if 0 <= row[i] < h and 0 <= col[i] < w:
                inside[i, row[i], col[i]] = True
    return torch.from_numpy(np.ascontiguousarray(inside))


def rasterize_boxes_camera(boxes, lidar2img, img_hw: Sequence[int], pers_shape: Sequence[int],
                           min_depth: float = 0.1) -> torch.Tensor:
    """Feature cells of each box's projected 2-D bounding rectangle per view: ``[N, V, h, w]`` bool.

    Corners with depth <= ``min_depth`` are dropped (a box crossing the image plane gets the
    rectangle of its visible corners); the rectangle is clipped to the image ``img_hw`` (the
    padded network input) and every feature cell it overlaps is marked. ``lidar2img``
    ``[V, 4, 4]``; ``pers_shape`` ``(h, w)`` or ``(V, h, w)``.
    """
    mats = np.asarray(lidar2img, dtype=np.float64)
    if mats.ndim != 3 or mats.shape[1:] != (4, 4):
        raise AQRInputError(f"lidar2img: expected shape [V, 4, 4], got {list(mats.shape)}")
    fh, fw = (int(v) for v in tuple(pers_shape)[-2:])
    ih, iw = (float(v) for v in tuple(img_hw)[:2])
    corners = box_corners_3d(boxes)
    n, v = corners.shape[0], mats.shape[0]
    out = np.zeros((n, v, fh, fw), dtype=bool)
    if n == 0:
        return torch.from_numpy(out)
    hom = np.concatenate([corners, np.ones((n, 8, 1))], -1)       # [N, 8, 4]
    proj = np.einsum("vij,nkj->nvki", mats, hom)                   # [N, V, 8, 4]
    depth = proj[..., 2]
    front = depth > min_depth
    safe = np.where(front, depth, 1.0)
    u = np.where(front, proj[..., 0] / safe, np.nan)
    r = np.where(front, proj[..., 1] / safe, np.nan)
    with np.errstate(all="ignore"):
        u0, u1 = np.nanmin(np.where(front, u, np.inf), -1), np.nanmax(np.where(front, u, -np.inf), -1)
        r0, r1 = np.nanmin(np.where(front, r, np.inf), -1), np.nanmax(np.where(front, r, -np.inf), -1)
    u0, u1 = np.clip(u0, 0, iw), np.clip(u1, 0, iw)
    r0, r1 = np.clip(r0, 0, ih), np.clip(r1, 0, ih)
    seen = front.any(-1) & (u1 > u0) & (r1 > r0)
    c_lo = np.floor(u0 * fw / iw).astype(int)
    c_hi = np.minimum(np.ceil(u1 * fw / iw).astype(int), fw)
    r_lo = np.floor(r0 * fh / ih).astype(int)
    r_hi = np.minimum(np.ceil(r1 * fh / ih).astype(int), fh)
    rows, cols = np.arange(fh), np.arange(fw)
    in_r = (rows[None, None] >= r_lo[..., None]) & (rows[None, None] < r_hi[..., None])
    in_c = (cols[None, None] >= c_lo[..., None]) & (cols[None, None] < c_hi[..., None])
    out = seen[..., None, None] & in_r[..., :, None] & in_c[..., None, :]
    return torch.from_numpy(out)


def size_names(labels) -> list[str]:
    """``'small'`` / ``'large'`` per label (indices into CLASS_NAMES, or class names)."""
    return ["small" if s else "large" for s in is_small_label(labels)]


def _class_name(label) -> str:
    if isinstance(label, str):
        return label
    i = int(label)
    return CLASS_NAMES[i] if 0 <= i < len(CLASS_NAMES) else f"label_{i}"


def _cell_energy(features: torch.Tensor, num_samples: int, cell_shape) -> torch.Tensor:
    """Sum of squares over channels per cell, as ``[B, *cell_shape]`` (``(H, W)`` or ``(V, h, w)``)."""
    # contiguous whatever the features' layout (views of a memory tensor): the channel sums
    # then run in one order
    e = torch.empty(features.shape, dtype=torch.float64).copy_(features.detach()).pow_(2).sum(1)
    if e.numel() != num_samples * math.prod(cell_shape):
        raise AQRInputError(f"masks: cell shape {list(cell_shape)} does not fit features "
                            f"{list(features.shape)} with {num_samples} samples")
    return e.reshape(num_samples, *cell_shape)


def _add_energy(acc: list, f0: torch.Tensor, f1: torch.Tensor, cells: torch.Tensor) -> None:
    """Add the before/after energy and the count of ``cells`` (a bool mask) to ``acc``."""
    acc[0] += float(f0[cells].sum())
    acc[1] += float(f1[cells].sum())
    acc[2] += int(cells.sum())


def _sample_energy(b: int, m: torch.Tensor, labels, e0: torch.Tensor, e1: torch.Tensor,
                   groups: dict, per_object: list) -> None:
    """Energy of sample ``b`` (box masks ``m [N, ...]``) into ``groups`` and ``per_object``."""
    if m.shape[1:] != e0.shape[1:]:
        raise AQRInputError(f"masks[{b}]: expected [N, {', '.join(map(str, e0.shape[1:]))}], "
                            f"got {list(m.shape)}")
    sizes = size_names(labels)
    flat = m.reshape(m.shape[0], -1)
    f0, f1 = e0[b].reshape(-1), e1[b].reshape(-1)
    obj0, obj1 = flat.double() @ f0, flat.double() @ f1
    for i in range(m.shape[0]):
        per_object.append(dict(sample=b, label=_class_name(np.asarray(labels).reshape(-1)[i]),
                               size=sizes[i], cells=int(flat[i].sum()),
                               retained=_f(obj1[i] / obj0[i]) if obj0[i] > 0 else None))
    for g, sel in (("small", [s == "small" for s in sizes]), ("large", [s == "large" for s in sizes]),
                   ("objects", [True] * len(sizes))):
        keep = torch.tensor(sel, dtype=torch.bool)
        union = flat[keep].any(0) if bool(keep.any()) else torch.zeros_like(f0, dtype=torch.bool)
        _add_energy(groups[g], f0, f1, union)
    bg = ~flat.any(0) if flat.shape[0] else torch.ones_like(f0, dtype=torch.bool)
    _add_energy(groups["background"], f0, f1, bg)


def energy_in_boxes(before: torch.Tensor, after: torch.Tensor, masks: Sequence[torch.Tensor],
                    labels: Sequence, identical: bool = False) -> dict:
    """Energy retained (after / before, sum of squared features) inside and outside boxes.

    ``before``/``after``: BEV ``[B, C, H, W]`` or camera ``[B*V, C, h, w]``; ``masks[b]``: box
    cells of sample b, ``[N_b, H, W]`` or ``[N_b, V, h, w]`` (:func:`rasterize_boxes_bev`,
    :func:`rasterize_boxes_camera`); ``labels[b]`` ``[N_b]``. Groups ``small``, ``large``,
    ``objects`` (all boxes) pool the energy of the union of their boxes' cells;
    ``background`` is every cell outside all boxes. ``per_object`` lists each box with cells.
    ``identical``: the two are bit-identical (:func:`bit_identical`): one energy map serves both.
    """
    n = len(masks)
    if n == 0 or len(labels) != n or before.shape != after.shape:
        raise AQRInputError(f"masks, labels: expected one entry per sample, got {len(masks)} masks "
                            f"and {len(labels)} label arrays")
    cell_shape = tuple(masks[0].shape[1:])
    e0 = _cell_energy(before, n, cell_shape)
    e1 = e0 if identical else _cell_energy(after, n, cell_shape)
    groups = {g: [0.0, 0.0, 0] for g in ("small", "large", "objects", "background")}
    per_object: list[dict] = []
    for b in range(n):  # per sample: its own boxes
        _sample_energy(b, masks[b].bool(), labels[b], e0, e1, groups, per_object)
    out = {g: dict(energy_before=v[0], energy_after=v[1], cells=v[2],
                   retained=(v[1] / v[0]) if v[0] > 0 else None) for g, v in groups.items()}
    for g in ("small", "large"):
        r = [o["retained"] for o in per_object if o["size"] == g and o["retained"] is not None]
        out[g]["count"] = sum(o["size"] == g for o in per_object)
        out[g]["median_object_retained"] = float(np.median(r)) if r else None
    out["per_object"] = per_object
    return out


def weight_coverage(weight_map: torch.Tensor, masks: Sequence[torch.Tensor], labels: Sequence) -> dict:
    """Share of the weight-map mass inside object boxes: overall, small and large objects.

    ``weight_map`` ``[B, H, W]`` (BEV) or ``[B, V, h, w]`` (camera); ``masks[b]`` as in
    :func:`energy_in_boxes`. ``band`` reads the overall coverage as the researchers do.
    """
    w = weight_map.detach().double()
    total = float(w.sum())
    inside = {"objects": 0.0, "small": 0.0, "large": 0.0}
    for b in range(len(masks)):
        m = masks[b].bool().reshape(masks[b].shape[0], -1)
        sizes = size_names(labels[b])
        flat = w[b].reshape(-1)
        for g in inside:
            keep = [True] * len(sizes) if g == "objects" else [s == g for s in sizes]
            sel = torch.tensor(keep, dtype=torch.bool)
            if bool(sel.any()):
                inside[g] += float(flat[m[sel].any(0)].sum())
    cov = {g: (v / total if total != 0 else None) for g, v in inside.items()}
    overall = cov["objects"]
    band = None if overall is None else next(lab for up, lab in COVERAGE_BANDS if overall < up)
    return dict(coverage=overall, small=cov["small"], large=cov["large"], total_mass=total,
                band=band)


def bias_coverage(bias, bev_masks: Sequence[torch.Tensor]) -> dict:
    """Share of the BEV window bias mass (sum of |b| over window cells) inside object boxes.

    ``bias``: SparseBias / WindowBias / triple; ``bev_masks[b]`` ``[N_b, H, W]``. Only the BEV
    block is used (dense columns below H*W).
    """
    wb = WindowBias.from_sparse(bias)
    if wb.is_global:
        return dict(coverage=None, note="global bias: no windows")
    b = wb.values.shape[0]
    covered, total = 0.0, 0.0
    for i in range(b):  # per sample: its own boxes
        m = bev_masks[i].bool()
        hw = m.shape[-2] * m.shape[-1]
        union = m.reshape(m.shape[0], -1).any(0) if m.shape[0] else torch.zeros(hw, dtype=torch.bool)
        sel = wb.valid[i] & (wb.indices[i] < hw)
        vals = wb.values[i].abs()
        total += float(vals[sel].sum())
        covered += float(vals[sel & union[wb.indices[i].clamp(0, hw - 1)]].sum())
    cov = covered / total if total > 0 else None
    band = None if cov is None else next(lab for up, lab in COVERAGE_BANDS if cov < up)
    return dict(coverage=cov, total_abs_bias=total, band=band)


def modality_stats(before: torch.Tensor, after: torch.Tensor, *, num_samples: int,
                   gain: torch.Tensor | None = None, masks: Sequence[torch.Tensor] | None = None,
                   labels: Sequence | None = None, weight_map: torch.Tensor | None = None,
                   bins: int = DEFAULT_BINS) -> dict:
    """All feature statistics of one modality under one path (JSON-ready dict).

    Keys: the :func:`change_stats` fields, ``histogram`` (:func:`value_histograms`), ``gain``
    (:func:`gain_stats`, None without a gain map), ``energy`` (:func:`energy_in_boxes`, None
    without boxes), ``weight_coverage`` (None without a weight map or boxes).
    """
    same = bit_identical(before, after)   # same bits: histogram and energies computed once too
    out = change_stats(before, after, num_samples, identical=same)
    out["histogram"] = value_histograms(before, after, bins, identical=same)
    out["gain"] = gain_stats(gain, bins) if gain is not None else None
    have_boxes = masks is not None and labels is not None
    out["energy"] = energy_in_boxes(before, after, masks, labels, identical=same) if have_boxes else None
    out["weight_coverage"] = (weight_coverage(weight_map, masks, labels)
                              if have_boxes and weight_map is not None else None)
    return out


def compare_features(bev: torch.Tensor, cam: torch.Tensor, *, bev_multiplicative: torch.Tensor,
                     cam_multiplicative: torch.Tensor, bev_additive: torch.Tensor | None = None,
                     cam_additive: torch.Tensor | None = None, bev_gain: torch.Tensor | None = None,
                     cam_gain: torch.Tensor | None = None, bev_weight_map: torch.Tensor | None = None,
                     cam_weight_map: torch.Tensor | None = None, bev_masks=None, cam_masks=None,
                     labels=None, bins: int = DEFAULT_BINS) -> dict:
    """``{'multiplicative': {'bev', 'camera'}, 'additive': {'bev', 'camera'}}`` of :func:`modality_stats`.

    ``bev [B, C, H, W]``, ``cam [B*V, C, h, w]``: the original features. ``*_multiplicative``:
    FeatureModulator output; ``*_additive``: the features the additive path hands the decoder
    (default: the originals themselves; their change is computed either way). Gains
    (``FeatureModulator.gain``) and weight maps belong to the multiplicative path; box masks
    and ``labels`` (per sample) are shared. Camera masks may be None (no camera energy).
    """
    b = bev.shape[0]
    bev_add = bev if bev_additive is None else bev_additive
    cam_add = cam if cam_additive is None else cam_additive
    out = {}
    for path, fb, fc, gb, gc, wb, wc in (
            ("multiplicative", bev_multiplicative, cam_multiplicative, bev_gain, cam_gain,
             bev_weight_map, cam_weight_map),
            ("additive", bev_add, cam_add, None, None, None, None)):
        out[path] = {
            "bev": modality_stats(bev, fb, num_samples=b, gain=gb, masks=bev_masks, labels=labels,
                                  weight_map=wb, bins=bins),
            "camera": modality_stats(cam, fc, num_samples=b, gain=gc, masks=cam_masks,
                                     labels=labels if cam_masks is not None else None,
                                     weight_map=wc, bins=bins),
        }
    return out


def apply_multiplicative(renderer, modulator, lidar_weights: torch.Tensor, camera_weights: torch.Tensor,
                         pts_bev: torch.Tensor, pts_pers: torch.Tensor, bev: torch.Tensor,
                         cam: torch.Tensor) -> dict:
    """The old scheme on these features: render maps, modulate, and the per-cell gains.

    Returns ``bev``, ``camera`` (modulated features), ``bev_map [B, H, W]``, ``pers_map
    [B, V, h, w]``, ``bev_gain``, ``pers_gain`` (``FeatureModulator.gain``, same shapes as the
    maps). ``pts_bev [B, Q, 2]`` (row, col), ``pts_pers [B, Q, 3]`` (view, h, w).
    """
    with torch.no_grad():
        bev_map = renderer.render_bev_weights(lidar_weights, pts_bev, feature_shape=tuple(bev.shape[-2:]))
        v = cam.shape[0] // bev.shape[0]
        pers_map = renderer.render_perspective_weights(camera_weights, pts_pers,
                                                       feature_shape=(v, *cam.shape[-2:]))
        return dict(bev=modulator(bev, bev_map, "bev"), camera=modulator(cam, pers_map, "perspective"),
                    bev_map=bev_map, pers_map=pers_map, bev_gain=modulator.gain(bev_map, "bev"),
                    pers_gain=modulator.gain(pers_map, "perspective"))
