"""Figures of ``aqr render-weights``: BEV and camera weight maps, bias heatmaps, per-query panel.

All builders take numpy arrays of ONE sample and return a Figure.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from aqr_cli.core.configs import CAMERA_NAMES
from aqr_cli.core.geometry import bev_cell_centres
from aqr_cli.analysis.conditions import map_condition
from aqr_cli.plots.limits import symmetric_limit
from aqr_cli.plots.style import (
    SIGNED_CMAP, bev_extent, camera_label, camera_mosaic, caption_title, draw_boxes_bev,
    draw_boxes_mosaic, new_figure, signed_norm, styled, tile_cells, unsigned_norm,
    weight_scale,
)


def _map_norm(maps: Sequence[np.ndarray], clamp: float | None):
    """Signed norm if any map is negative, else [0, map max] (``clamp`` only labels the bar)."""
    lo = min(float(np.min(m)) for m in maps)
    hi = max(float(np.max(m)) for m in maps)
    if lo < 0:
        return SIGNED_CMAP, signed_norm(max(abs(lo), hi))
    if hi <= 0:   # all zero: a 1e-6 range would dress an empty map up as data
        return "magma", unsigned_norm(clamp or 1.0)
    return "magma", unsigned_norm(hi)


def _flag(ax, text: str | None, *, loc: str = "top") -> None:
    """A red boxed warning on an axis (all-zero or saturated map), inside its top edge."""
    if not text:
        return
    import textwrap

    y, va = (0.97, "top") if loc == "top" else (0.03, "bottom")
    ax.text(0.5, y, "\n".join(textwrap.wrap(text, 46, break_on_hyphens=False)), transform=ax.transAxes, ha="center", va=va, fontsize=7.5, color="darkred",
            bbox=dict(boxstyle="round,pad=0.25", fc="white", ec="darkred", alpha=0.92), zorder=10)


def _map_flag(weight_map, clamp, method: str | None = None) -> str | None:
    cond = map_condition(weight_map, clamp)
    if cond["note"] is None:
        return None
    why = ""
    if cond["all_zero"] and method in ("bilinear", "distance_weighted"):
        why = f" ({method} is not implemented for cameras upstream, Q25)"
    elif cond["saturated"] and method == "distance_weighted":
        why = " (distance_weighted sums every query within 0.2 min(H, W) cells, Q25)"
    return cond["note"] + why


def _bev_cells_to_metres(pts_bev: np.ndarray, bev_hw, pc_range) -> np.ndarray:
    """(row, col) cell indices [Q, 2] -> (x, y) metres of the cell centres [Q, 2]."""
    return np.stack(bev_cell_centres(pts_bev[:, 0], pts_bev[:, 1], bev_hw, pc_range), axis=1)


def _bev_axis(ax, pc_range, title: str) -> None:
    ax.set_title(title)
    ax.set_xlabel("x (m, right)")
    ax.set_ylabel("y (m, forward)")
    ax.set_xlim(pc_range[0], pc_range[3])
    ax.set_ylim(pc_range[1], pc_range[4])
    ax.set_aspect("equal")


def _clamp_text(clamp: float | None) -> str:
    return f", clamp {clamp:g})" if clamp else ")"


@styled
def bev_weight_figure(weight_map: np.ndarray, lidar_weights: np.ndarray, pts_bev: np.ndarray,
                      pc_range, *, boxes: np.ndarray | None = None, box_labels=None,
                      clamp: float | None = 1.5, activation: str = "tanh", method: str | None = None,
                      title: str = "", subtitle: str = "") -> Figure:
    """Rendered BEV map [H, W] next to the per-query LiDAR weights at their BEV cells.

    The per-query panel follows ``activation`` (tanh: [-1, 1] diverging; sigmoid: [0, 1]
    sequential). An all-zero or saturated map is flagged on its panel.
    """
    fig = new_figure(12.5, 6.2, layout=None)
    ax_map, ax_q = fig.subplots(1, 2)
    top = caption_title(fig, title or "LiDAR weights in BEV", subtitle)
    fig.subplots_adjust(left=0.06, right=0.97, bottom=0.09, top=top, wspace=0.25)
    cmap, norm = _map_norm([weight_map], clamp)
    im = ax_map.imshow(weight_map, origin="lower", extent=bev_extent(pc_range), cmap=cmap, norm=norm,
                       interpolation="nearest")
    fig.colorbar(im, ax=ax_map, shrink=0.85, label="rendered LiDAR weight map (unitless"
                 + _clamp_text(clamp))
    _bev_axis(ax_map, pc_range, f"Rendered BEV weight map [{weight_map.shape[0]}x{weight_map.shape[1]}]"
              + (f", {method}" if method else ""))
    _flag(ax_map, _map_flag(weight_map, clamp, method))
    xy = _bev_cells_to_metres(pts_bev, weight_map.shape, pc_range)
    inside = np.isfinite(xy).all(axis=1)
    ax_map.scatter(xy[inside, 0], xy[inside, 1], s=2, c="white", alpha=0.35, linewidths=0)
    w_cmap, w_norm, _, w_label = weight_scale(activation)
    sc = ax_q.scatter(xy[inside, 0], xy[inside, 1], c=lidar_weights[inside], cmap=w_cmap,
                      norm=w_norm, s=9, edgecolors="0.3", linewidths=0.2)
    fig.colorbar(sc, ax=ax_q, shrink=0.85, label="per-query LiDAR " + w_label)
    off = int((~inside).sum())
    _bev_axis(ax_q, pc_range, f"Per-query LiDAR weights ({int(inside.sum())} queries on the grid"
              + (f", {off} off it)" if off else ")"))
    ax_q.set_facecolor("0.92" if activation == "tanh" else "0.45")  # contrast with the colour map's ends
    if boxes is not None and len(boxes):
        for ax, color in ((ax_map, "cyan"), (ax_q, "black" if activation == "tanh" else "white")):
            draw_boxes_bev(ax, boxes, box_labels, color=color)
    return fig


@styled
def camera_weight_figure(pers_map: np.ndarray, camera_weights: np.ndarray, pts_pers: np.ndarray | None,
                         *, camera_names: Sequence[str] = CAMERA_NAMES, unseen: np.ndarray | None = None,
                         clamp: float | None = 1.5, activation: str = "tanh", method: str | None = None,
                         boxes=None, rig=None, title: str = "", subtitle: str = "") -> Figure:
    """Six rendered camera maps [V, h, w] in the named grid; queries marked at their cells.

    ``pts_pers`` None: camera cells unknown (a dump without its checkpoint), so no markers and
    per-view query counts read "unknown". Markers carry their own colour key (``activation``).
    """
    fig = new_figure(14.0, 5.8, layout=None)
    notes = []
    if pts_pers is None:
        notes.append("camera cells unknown (a dump stores no pts_pers; pass --checkpoint): maps as "
                     "stored in the dump, no query markers")
    flag = _map_flag(pers_map, clamp, method)
    if flag:
        notes.insert(0, f"camera maps {flag}")
    if pts_pers is not None and unseen is not None and unseen.any():
        notes.append(f"red x at FRONT (0, 0): {int(unseen.sum())} queries no camera sees are drawn "
                     "there by upstream's sentinel (Q3); they are not marked as queries")
    top = caption_title(fig, title or "Camera weight maps", subtitle, notes)
    ax = fig.add_axes((0.05, 0.09, 0.75, top - 0.09))
    cmap, norm = _map_norm([pers_map], clamp)
    w_cmap, w_norm, _, w_label = weight_scale(activation)
    seen = None
    if pts_pers is not None:
        seen = np.ones(len(pts_pers), dtype=bool) if unseen is None else ~np.asarray(unseen, dtype=bool)
    titles = []
    for v, name in enumerate(camera_names):
        count = (f"{int((seen & (pts_pers[:, 0] == v)).sum())} queries" if seen is not None
                 else "queries unknown")
        titles.append(f"{camera_label(name)}  ({count}, max {pers_map[v].max():.2f})")
    origins = camera_mosaic(ax, pers_map, titles, cmap=cmap, norm=norm, camera_names=camera_names,
                            gap=(0.2, 0.6), title_size=10, label_size=9,
                            xlabel="feature column w (cells)", ylabel="row h (cells)")
    im, sc = ax.images[-1], None
    if seen is not None:
        x, y = tile_cells(origins, pts_pers[seen, 0], pts_pers[seen, 1], pts_pers[seen, 2])
        sc = ax.scatter(x, y, c=camera_weights[seen], cmap=w_cmap, norm=w_norm, s=10,
                        edgecolors="white", linewidths=0.3)
    if rig is not None:  # cyan reads on the dark end of the map's colour scale
        draw_boxes_mosaic(ax, origins, boxes, rig.lidar2img, rig.img_shape, pers_map.shape[-2:],
                          color="#00e5ff")
    if seen is not None and not seen.all() and 0 in origins:
        ax.scatter([origins[0][0]], [origins[0][1]], marker="x", c="red", s=40, zorder=5)
    fig.colorbar(im, cax=fig.add_axes((0.83, 0.12, 0.012, top - 0.2)),
                 label="rendered camera weight map (unitless" + _clamp_text(clamp))
    if sc is not None:
        fig.colorbar(sc, cax=fig.add_axes((0.91, 0.12, 0.012, top - 0.2)),
                     label="markers: per-query camera " + w_label)
    return fig


@styled
def bias_heatmap_figure(bev: np.ndarray, pers: np.ndarray, pc_range, scale: float, *,
                        limit: float | None = None, range_mode: str = "fixed",
                        camera_names: Sequence[str] = CAMERA_NAMES, boxes=None, box_labels=None,
                        rig=None, reduce_label: str = "signed max-|b| over queries", title: str = "",
                        subtitle: str = "", notes: Sequence[str] = ()) -> Figure:
    """Signed attention-bias heatmaps: BEV [H, W] on the left, six cameras [V, h, w] on the right.

    One colour range ``[-limit, limit]`` for all panels (default: max |b| when ``range_mode`` is
    ``auto``, else 5); the effective ``scale`` is marked on the colour bar.
    """
    fig = new_figure(16.0, 6.6, layout=None)
    top = caption_title(fig, title or "AQR attention bias", subtitle,
                        ["red = attract attention to the window, blue = repel; one colour scale "
                         "for all panels", *notes])
    outer = fig.add_gridspec(1, 2, width_ratios=[1.0, 2.2], left=0.1, right=0.98, bottom=0.09,
                             top=top, wspace=0.12)
    ax_bev = fig.add_subplot(outer[0])
    lim = float(limit) if limit else (symmetric_limit(bev, pers) if range_mode == "auto" else 5.0)
    norm = signed_norm(lim)
    im = ax_bev.imshow(bev, origin="lower", extent=bev_extent(pc_range), cmap=SIGNED_CMAP, norm=norm,
                       interpolation="nearest")
    _bev_axis(ax_bev, pc_range, f"BEV bias [{bev.shape[0]}x{bev.shape[1]}]")
    if boxes is not None and len(boxes):
        draw_boxes_bev(ax_bev, boxes, box_labels, color="black")
    ax_cam = fig.add_subplot(outer[1])
    origins = camera_mosaic(ax_cam, pers, [camera_label(n) for n in camera_names], cmap=SIGNED_CMAP,
                            norm=norm, camera_names=camera_names, gap=(0.2, 0.6), title_size=10,
                            label_size=9)
    if rig is not None:
        draw_boxes_mosaic(ax_cam, origins, boxes, rig.lidar2img, rig.img_shape, pers.shape[-2:])
    cax = fig.add_axes((0.045, 0.15, 0.01, top - 0.25))
    rng = ("fixed: final clamp" if range_mode == "fixed" else "auto: max |b|")
    cbar = fig.colorbar(im, cax=cax, location="left",
                        label=f"attention bias (logits), {reduce_label}\ncolour range +-{lim:.3g} ({rng}); "
                              f"dashes: effective scale +-{scale:.3g}")
    for y in (scale, -scale):
        if abs(y) <= lim:
            cbar.ax.axhline(y, color="k", lw=1.2, ls="--")
    return fig


@styled
def query_panel_figure(lidar: np.ndarray, camera: np.ndarray, shares: dict, title: str = "", *,
                       activation: str = "tanh", subtitle: str = "") -> Figure:
    """LiDAR vs camera weight scatter, both histograms and the modality preference shares.

    Everything is of the sample given (``shares`` must be that sample's shares); axes follow
    ``activation``.
    """
    fig = new_figure(14.0, 5.0, layout=None)
    ax_sc, ax_h, ax_bar = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.1, 1.3, 0.9]})
    top = caption_title(fig, title or "Per-query AQR weights", subtitle)
    fig.subplots_adjust(left=0.05, right=0.98, bottom=0.2, top=top, wspace=0.28)
    _, _, (lo, hi), _ = weight_scale(activation)
    pad = 0.02 * (hi - lo)
    diff = lidar - camera
    colors = np.where(np.abs(diff) < 0.2, "0.55", np.where(diff > 0, "tab:orange", "tab:blue"))
    ax_sc.scatter(camera, lidar, c=colors, s=6, linewidths=0)
    ax_sc.plot([lo, hi], [lo, hi], color="k", lw=0.7)
    ax_sc.fill_between([lo, hi], [lo - 0.2, hi - 0.2], [lo + 0.2, hi + 0.2], color="0.5", alpha=0.12, lw=0)
    ax_sc.set(xlim=(lo - pad, hi + pad), ylim=(lo - pad, hi + pad), aspect="equal",
              xlabel=f"camera weight ({activation})", ylabel=f"LiDAR weight ({activation})",
              title=f"Per-query weights (n = {lidar.size})")
    ax_sc.legend(handles=[Line2D([], [], ls="", marker="o", color=c, label=l) for c, l in
                          (("tab:orange", "LiDAR > camera"), ("tab:blue", "camera > LiDAR"),
                           ("0.55", "|diff| < 0.2"))], fontsize=7, ncol=3, handletextpad=0.2,
                 columnspacing=0.8, loc="upper center", bbox_to_anchor=(0.5, -0.16))  # off the data
    bins = np.linspace(lo, hi, 41)
    ax_h.hist(lidar, bins=bins, histtype="step", lw=1.8, color="tab:orange", label="LiDAR")
    ax_h.hist(camera, bins=bins, histtype="step", lw=1.8, color="tab:blue", label="camera")
    ax_h.set(xlabel=f"weight ({activation})", ylabel="queries", title="Weight histograms", xlim=(lo, hi))
    ax_h.legend(fontsize=8)
    names = ["LiDAR > camera", "camera > LiDAR", "|diff| < 0.2"]
    vals = [shares["prefer_lidar"], shares["prefer_camera"], shares["balanced"]]
    bars = ax_bar.bar(names, vals, color=["tab:orange", "tab:blue", "0.55"])
    for b_, v in zip(bars, vals):
        ax_bar.annotate(f"{100 * v:.1f}%", (b_.get_x() + b_.get_width() / 2, v), ha="center",
                        va="bottom", fontsize=8)
    ax_bar.set(ylim=(0, 1.1), ylabel="share of queries", title="Modality preference (this sample)")
    ax_bar.tick_params(axis="x", labelsize=7)
    return fig


def _mosaic(pers: np.ndarray, camera_names: Sequence[str]) -> np.ndarray:
    """Tile [V, h, w] camera maps into the 2x3 named layout (one-cell NaN gutters)."""
    from aqr_cli.core.configs import CAMERA_GRID

    v, h, w = pers.shape
    out = np.full((2 * h + 1, 3 * w + 2), np.nan, dtype=float)
    names = list(camera_names)
    for r, row in enumerate(CAMERA_GRID):
        for c, name in enumerate(row):
            if name in names:
                out[r * (h + 1): r * (h + 1) + h, c * (w + 1): c * (w + 1) + w] = pers[names.index(name)]
    return out


@styled
def methods_figure(results: dict, pc_range, *, camera_names: Sequence[str] = CAMERA_NAMES,
                   clamp: float | None = 1.5, title: str = "", subtitle: str = "") -> Figure:
    """The four render methods side by side: BEV maps (top) and camera mosaics (bottom).

    ``results`` maps method name -> (bev [H, W], pers [V, h, w]). Shared colour range per row;
    all-zero and saturated maps are flagged on their panel.
    """
    fig = new_figure(16.0, 6.0, layout=None)
    methods = list(results)
    axes = fig.subplots(2, len(methods), squeeze=False, gridspec_kw={"height_ratios": [1.0, 0.42]})
    top = caption_title(fig, title or "WeightRenderer methods on the same per-query weights", subtitle)
    fig.subplots_adjust(left=0.04, right=0.97, bottom=0.09, top=top, wspace=0.3, hspace=0.22)
    cmap_b, norm_b = _map_norm([results[m][0] for m in methods], clamp)
    cmap_p, norm_p = _map_norm([results[m][1] for m in methods], clamp)
    for i, m in enumerate(methods):
        bev, pers = results[m]
        im_b = axes[0, i].imshow(bev, origin="lower", extent=bev_extent(pc_range), cmap=cmap_b,
                                 norm=norm_b, interpolation="nearest")
        _bev_axis(axes[0, i], pc_range, f"{m}: BEV (max {bev.max():.2f}, mean {bev.mean():.4f})")
        cond_b = map_condition(bev, clamp)
        _flag(axes[0, i], cond_b["note"])
        im_p = axes[1, i].imshow(_mosaic(pers, camera_names), cmap=cmap_p, norm=norm_p,
                                 interpolation="nearest")
        cond_p = map_condition(pers, clamp)
        empty = f" - {cond_p['note']} (Q25)" if cond_p["note"] else ""
        axes[1, i].set_title(f"{m}: cameras{empty}", fontsize=9,
                             color="darkred" if cond_p["note"] else "black")
        axes[1, i].set_xlabel("FL | F | FR  (top),  BL | B | BR  (bottom); cells")
        axes[1, i].set_yticks([])
    fig.colorbar(im_b, ax=list(axes[0]), shrink=0.8, label="BEV weight map" + (f" (clamp {clamp:g})" if clamp else ""))
    fig.colorbar(im_p, ax=list(axes[1]), shrink=0.8, label="camera weight map")
    return fig
