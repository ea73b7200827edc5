"""Figures of ``aqr compare-modes``: multiplicative modulation vs additive attention bias.

Builders take the plain results of :mod:`aqr_cli.analysis.features`,
:mod:`aqr_cli.analysis.attention` and :mod:`aqr_cli.analysis.sweep` (dicts / numpy arrays of
ONE sample where maps are drawn) and return a Figure; they never save.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
from matplotlib.colors import LogNorm, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from aqr_cli.core.configs import CAMERA_NAMES
from aqr_cli.plots.style import (
    SIGNED_CMAP, bev_extent, camera_label, camera_mosaic, caption_title, draw_boxes_bev,
    new_figure, signed_norm, styled,
)

PATH_COLORS = {"baseline": "0.35", "multiplicative": "tab:orange", "additive": "tab:blue"}
GAIN_LABEL = "feature gain g = m + r (x; 1 = unchanged, blue < 1 attenuated, red > 1 amplified)"
ATTN_LABEL = "head-averaged attention weight (log scale; sums to 1 over all BEV + camera tokens)"
BANDS = ((0.0, 2.0, "sensitive |b| <= 2", "#d9f0d3"), (2.0, 3.0, "safe |b| <= 3", "#deebf7"),
         (3.0, 5.0, "edge |b| <= 5", "#fee6ce"), (5.0, math.inf, "saturated |b| > 5", "#fcbba1"))
SWEEP_METRICS = (
    ("entropy_norm", "entropy / log(#keys)", "normalised entropy (0 = one key, 1 = uniform)"),
    ("max_attention", "max attention", "largest weight of a query (share of its attention)"),
    ("window_mass", "mass in own window", "attention share on the query's bias window"),
    ("lidar_share", "LiDAR share", "attention share on BEV tokens (rest: camera)"),
    ("mean_abs_delta", "mean |d attention|", "mean over keys of |p - p_baseline|"),
    ("kl_from_reference", "KL(baseline || additive)", "nats"),
    ("topk_overlap", "top-k overlap with baseline", "share of the baseline's top-k keys kept"),
)


def _val(entry, stat: str = "mean") -> float:
    """A statistic from a summary entry (``{'mean': .., 'median': ..}`` or a number); NaN if absent."""
    if isinstance(entry, dict):
        entry = entry.get(stat)
    return np.nan if entry is None else float(entry)


def _bev_axis(ax, pc_range, title: str) -> None:
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.set_xlim(pc_range[0], pc_range[3])
    ax.set_ylim(pc_range[1], pc_range[4])
    ax.set_aspect("equal")


@styled
def feature_histogram_figure(features: Mapping, title: str = "", subtitle: str = "") -> Figure:
    """Feature-value histograms before/after: rows BEV and camera, columns multiplicative and additive.

    ``features``: :func:`~aqr_cli.analysis.features.compare_features` output.
    """
    fig = new_figure(12.5, 7.5, layout=None)
    paths = [p for p in ("multiplicative", "additive") if p in features]
    top = caption_title(fig, title or "Feature values before and after AQR: multiplicative modulation "
                        "vs additive bias", subtitle)
    axes = fig.subplots(2, len(paths), squeeze=False, gridspec_kw=dict(
        left=0.065, right=0.985, bottom=0.075, top=top - 0.01, wspace=0.18, hspace=0.38))
    for j, path in enumerate(paths):
        for i, mod in enumerate(("bev", "camera")):
            ax = axes[i, j]
            st = features[path][mod]
            hist = st["histogram"]
            edges = np.asarray(hist["edges"])
            before = np.asarray(hist["before"]["counts"], dtype=float)
            after = np.asarray(hist["after"]["counts"], dtype=float)
            ax.stairs(before, edges, fill=True, color="0.75", label="before (original features)")
            ax.stairs(after, edges, color=PATH_COLORS[path], linewidth=1.4,
                      label=f"after ({path} path)")
            ax.set_yscale("log")
            ax.set_xlabel("feature value (activation, unitless)")
            ax.set_ylabel("count (cells x channels)")
            rel, cos = st.get("relative_change"), st.get("cosine_similarity")
            text = (f"relative change {100 * rel:.2f}%\n" if rel is not None else "") + \
                   (f"cosine similarity {cos:.5f}\n" if cos is not None else "") + \
                   f"max |change| {st.get('max_change') or 0:.3g}" + \
                   ("\nfeatures bit-identical" if st.get("identical") else "")
            ax.text(0.02, 0.97, text, transform=ax.transAxes, va="top", fontsize=7,
                    bbox=dict(boxstyle="round", fc="white", ec="0.8", alpha=0.9))
            name = "BEV (LiDAR)" if mod == "bev" else "camera"
            ax.set_title(f"{name} features, {path} path")
            ax.legend(fontsize=7, loc="upper right")
    return fig


def gain_norm(*gains: np.ndarray) -> TwoSlopeNorm:
    """Diverging norm centred at gain 1 over the range of all ``gains``."""
    lo = min(float(np.nanmin(g)) for g in gains)
    hi = max(float(np.nanmax(g)) for g in gains)
    return TwoSlopeNorm(vmin=min(lo, 1.0 - 1e-3), vcenter=1.0, vmax=max(hi, 1.0 + 1e-3))


@styled
def gain_map_figure(bev_gain: np.ndarray, pers_gain: np.ndarray, pc_range, *,
                    camera_names: Sequence[str] = CAMERA_NAMES, boxes=None, box_labels=None,
                    gain_stats: Mapping | None = None, title: str = "", subtitle: str = "") -> Figure:
    """Per-cell feature gain of the multiplicative path: BEV ``[H, W]`` and six cameras ``[V, h, w]``.

    One diverging scale centred at 1 for all panels. ``gain_stats``: optional
    ``{'bev': gain_stats, 'camera': gain_stats}`` (:func:`~aqr_cli.analysis.features.gain_stats`)
    for a histogram panel with the attenuated / amplified shares.
    """
    width = 17.0 if gain_stats else 14.0
    fig = new_figure(width, 6.2, layout=None)
    top = caption_title(fig, title or "Multiplicative path: per-cell feature gain g = m + r (spec Q27)",
                        subtitle)
    ratios = [1.0, 2.2, 0.05] + ([0.3, 0.9] if gain_stats else [])   # a gap for the bar's label
    outer = fig.add_gridspec(1, len(ratios), width_ratios=ratios, left=0.55 / width,
                             right=1 - 0.15 / width, bottom=0.09, top=top - 0.01, wspace=0.2)
    norm = gain_norm(bev_gain, pers_gain)
    ax_bev = fig.add_subplot(outer[0])
    im = ax_bev.imshow(bev_gain, origin="lower", extent=bev_extent(pc_range), cmap=SIGNED_CMAP,
                       norm=norm, interpolation="nearest")
    _bev_axis(ax_bev, pc_range, f"BEV gain [{bev_gain.shape[0]}x{bev_gain.shape[1]} cells]")
    if boxes is not None and len(boxes):
        draw_boxes_bev(ax_bev, boxes, box_labels, color="black")
    camera_mosaic(fig.add_subplot(outer[1]), pers_gain,
                  [f"{camera_label(n)} (max {float(np.max(g)):.2f})" for n, g in zip(camera_names, pers_gain)],
                  cmap=SIGNED_CMAP, norm=norm, camera_names=camera_names, gap=(0.2, 0.6))
    fig.colorbar(im, cax=fig.add_subplot(outer[2]), label=GAIN_LABEL)
    if gain_stats:
        ax_h = fig.add_subplot(outer[4])
        for mod, color in (("bev", "tab:green"), ("camera", "tab:purple")):
            st = gain_stats.get(mod)
            if not st:
                continue
            counts = np.asarray(st["counts"], dtype=float)
            ax_h.stairs(counts / max(counts.sum(), 1), np.asarray(st["edges"]), color=color,
                        linewidth=1.3, label=(f"{'BEV' if mod == 'bev' else 'camera'}: "
                                              f"{100 * st['share_attenuated']:.1f}% < 1, "
                                              f"{100 * st['share_amplified']:.1f}% > 1"))
        ax_h.axvline(1.0, color="k", lw=0.8, ls="--")
        ax_h.set_yscale("log")
        ax_h.set(xlabel="gain g (x)", ylabel="share of cells", title="Gain histogram")
        ax_h.legend(fontsize=7)
    return fig


def _split_row(row: np.ndarray, bev_shape, pers_shape) -> tuple[np.ndarray, np.ndarray]:
    h, w = bev_shape
    v, ph, pw = pers_shape
    hw = h * w
    if row.shape[-1] != hw + v * ph * pw:
        raise ValueError(f"attention row has {row.shape[-1]} keys, expected {hw} + {v * ph * pw}")
    return row[:hw].reshape(h, w), row[hw:].reshape(v, ph, pw)


def attention_norm(rows: Sequence[np.ndarray], dynamic_range: float = 1e4) -> LogNorm:
    """Log norm shared by all ``rows``: top = largest weight, bottom = top / ``dynamic_range``
    (or the smallest positive weight if larger)."""
    top = max(float(np.max(r)) for r in rows)
    top = top if top > 0 else 1.0
    pos = [float(np.min(r[r > 0])) for r in rows if np.any(r > 0)]
    bottom = max(top / dynamic_range, min(pos) if pos else top / dynamic_range)
    return LogNorm(vmin=min(bottom, top * 0.999), vmax=top)


def _path_stats(path: str, s: Mapping | None, reference: str) -> str:
    """``': LiDAR 72%, window 0.6%, H/logF 0.999, KL 5e-06'`` of one path's panel title."""
    if s is None:
        return ""
    head = (f": LiDAR {100 * s.get('lidar_share', np.nan):.0f}%, window "
            f"{100 * s.get('window_mass', np.nan):.1f}%, H/logF "
            f"{s.get('entropy_norm', np.nan):.3f}")
    if path != reference and "kl_from_reference" in s:
        head += f", KL {s['kl_from_reference']:.3g}"
    return head


def _mark_bev(ax, is_diff: bool, *, query_xy, query_cell, boxes, box_labels) -> None:
    """GT boxes and the query's cell on a BEV attention panel."""
    if boxes is not None and len(boxes):
        draw_boxes_bev(ax, boxes, box_labels, color="black" if is_diff else "cyan")
    if query_xy is not None:
        ax.plot([query_xy[0]], [query_xy[1]], marker="x", color="lime", ms=9, mew=2)


def _camera_row(ax, pers, camera_names, norm, is_diff: bool, query_cell) -> None:
    """The six camera tiles of one attention row (a path, or a path minus the reference)."""
    if is_diff:
        titles = [f"{camera_label(n)} ({100 * float(p.sum()):+.2f} pts)" for n, p in zip(camera_names, pers)]
        origins = camera_mosaic(ax, pers, titles, cmap=SIGNED_CMAP, norm=norm, camera_names=camera_names)
    else:
        titles = [f"{camera_label(n)} ({100 * float(p.sum()):.1f}% of attention)"
                  for n, p in zip(camera_names, pers)]
        origins = camera_mosaic(ax, np.clip(pers, norm.vmin, None), titles, cmap="magma", norm=norm,
                                camera_names=camera_names)
    if query_cell is not None and int(query_cell[0]) in origins:
        x0, y0 = origins[int(query_cell[0])]
        ax.plot([x0 + query_cell[2]], [y0 + query_cell[1]], marker="x", color="lime", ms=8, mew=2)


@styled
def attention_heatmap_figure(rows: Mapping[str, np.ndarray], bev_shape, pers_shape, pc_range, *,
                             query_xy=None, query_cell=None, query_index: int | None = None,
                             stats: Mapping[str, Mapping] | None = None, boxes=None, box_labels=None,
                             camera_names: Sequence[str] = CAMERA_NAMES, title: str = "",
                             subtitle: str = "", notes: Sequence[str] = (),
                             reference: str = "baseline") -> Figure:
    """Attention of ONE query under each path, then each path minus the reference (one row each).

    ``rows[path]``: head-averaged attention ``[F]`` (``AttentionResult.rows[path][b, i]``);
    ``query_xy``: the query's (x, y) in metres (green x on BEV); ``query_cell``: its camera
    cell (view, h, w), or None when no camera sees it; ``stats[path]``: per-query metrics for
    the panel titles. Path rows share one log scale; difference rows (path - ``reference``)
    share one diverging scale centred at 0.
    """
    paths = list(rows)
    diffs = [p for p in paths if p != reference] if reference in rows else []
    n_rows = len(paths) + len(diffs)
    height = 3.7 * n_rows + 1.6
    # Manual margins: constrained layout over 7 axes per row is several seconds per figure.
    fig = new_figure(16.0, height, layout=None)
    marks = "green x: the query's BEV cell and camera cell" + (
        "" if query_cell is not None or query_xy is None else " (no camera sees it: BEV only)")
    top = caption_title(fig, title or f"Cross-attention of query {query_index}", subtitle,
                        [marks, *notes])
    outer = fig.add_gridspec(n_rows, 3, width_ratios=[1.0, 2.4, 0.04], left=0.05, right=0.9,
                             bottom=0.6 / height, top=top, wspace=0.15, hspace=0.42)
    norm = attention_norm([np.asarray(rows[p]) for p in paths])
    delta = {p: np.asarray(rows[p], dtype=float) - np.asarray(rows[reference], dtype=float) for p in diffs}
    lim = max([float(np.max(np.abs(d))) for d in delta.values()] + [1e-12])
    dnorm = signed_norm(lim)
    panels = [(p, np.asarray(rows[p], dtype=float), False) for p in paths] + \
             [(p, delta[p], True) for p in diffs]
    im = im_d = None
    marks_at = dict(query_xy=query_xy, query_cell=query_cell, boxes=boxes, box_labels=box_labels)
    for i, (path, row, is_diff) in enumerate(panels):
        bev, pers = _split_row(row, bev_shape, pers_shape)
        ax = fig.add_subplot(outer[i, 0])
        if is_diff:
            im_d = ax.imshow(bev, origin="lower", extent=bev_extent(pc_range), cmap=SIGNED_CMAP,
                             norm=dnorm, interpolation="nearest")
            head = (f"{path} - {reference}: BEV {100 * float(bev.sum()):+.2f} pts, "
                    f"max |d| {float(np.max(np.abs(row))):.2g}")
        else:
            im = ax.imshow(np.clip(bev, norm.vmin, None), origin="lower", extent=bev_extent(pc_range),
                           cmap="magma", norm=norm, interpolation="nearest")
            head = path + _path_stats(path, (stats or {}).get(path), reference)
        _bev_axis(ax, pc_range, head)
        _mark_bev(ax, is_diff, **marks_at)
        _camera_row(fig.add_subplot(outer[i, 1]), pers, camera_names, dnorm if is_diff else norm,
                    is_diff, query_cell)
    n_p = len(paths)
    fig.colorbar(im, cax=fig.add_subplot(outer[:n_p, 2]), label=ATTN_LABEL)
    if im_d is not None:
        fig.colorbar(im_d, cax=fig.add_subplot(outer[n_p:, 2]),
                     label=f"attention difference (path - {reference}; red = more attention)")
    return fig


def _sweep_dict(sweep) -> dict:
    return sweep.to_dict() if hasattr(sweep, "to_dict") else dict(sweep)


def shade_bands(ax, xmax: float, xmin: float = 0.0, labels: bool = True) -> None:
    """Shade the researchers' |bias| zones on a scale axis (both signs when xmin < 0)."""
    for lo, hi, label, color in BANDS:
        for sign in ((1, -1) if xmin < 0 else (1,)):
            a, b = sorted((sign * lo, sign * min(hi, max(abs(xmin), abs(xmax)) * 1.1)))
            ax.axvspan(a, b, color=color, alpha=0.6, lw=0, zorder=0,
                       label=label if labels and sign == 1 else None)


@styled
def sweep_figure(sweep, title: str = "", subtitle: str = "", notes: Sequence[str] = ()) -> Figure:
    """Attention statistics of the additive path against the bias scale, with the |b| zones.

    ``sweep``: a :class:`~aqr_cli.analysis.sweep.SweepResult` or its ``to_dict()``. Solid =
    mean over queries, dashed = median, dotted grey = baseline (no bias).
    """
    d = _sweep_dict(sweep)
    points = d["points"]
    scales = np.asarray([p["scale"] for p in points], dtype=float)
    order = np.argsort(scales)
    scales = scales[order]
    fig = new_figure(17.0, 8.0, layout=None)
    top = caption_title(fig, title or "Bias-scale sweep: additive path vs scale (fixed-scale semantics)",
                        subtitle, [f"WARNING: {n}" for n in notes])
    axes = fig.subplots(2, 4, gridspec_kw=dict(left=0.045, right=0.965, bottom=0.16, top=top + 0.01,
                                               wspace=0.3, hspace=0.38)).reshape(-1)
    xmin, xmax = min(0.0, float(scales.min())), max(float(scales.max()), 1.0)
    for ax, (metric, label, unit) in zip(axes, SWEEP_METRICS):
        shade_bands(ax, xmax, xmin, labels=False)
        mean = np.asarray([_val(points[i]["attention"]["overall"].get(metric)) for i in order])
        med = np.asarray([_val(points[i]["attention"]["overall"].get(metric), "median") for i in order])
        ax.plot(scales, mean, "o-", color="tab:blue", ms=4, label="mean")
        ax.plot(scales, med, "s--", color="tab:blue", ms=3, alpha=0.7, label="median")
        base = _val(d.get("baseline", {}).get("overall", {}).get(metric))
        if np.isfinite(base):
            ax.axhline(base, color="0.4", ls=":", lw=1, label="baseline")
        if metric == "max_attention":
            for level, color in (("0.9", "tab:red"), ("0.7", "tab:orange")):
                share = np.asarray([_val(points[i]["attention"]["overall"].get(f"share_max_gt_{level}"))
                                    for i in order])
                ax.plot(scales, share, "^-", color=color, ms=3, label=f"share of queries > {level}")
        ax.set_title(label)
        ax.set_xlabel("bias scale s (logits; |b| <= s)")
        ax.set_ylabel(unit, fontsize=7)
        ax.set_xlim(xmin, xmax * 1.05)
        ax.legend(fontsize=6)
    ax = axes[len(SWEEP_METRICS)]
    shade_bands(ax, xmax, xmin, labels=False)
    clamped = np.asarray([points[i]["bias"]["share_clamped"] for i in order])
    maxabs = np.asarray([points[i]["bias"]["max_abs"] for i in order])
    ax.plot(scales, maxabs, "o-", color="k", ms=4, label="max |b| in windows (logits)")
    ax2 = ax.twinx()
    ax2.plot(scales, clamped, "d-", color="tab:red", ms=4, label="share of window entries clamped")
    ax2.set_ylabel("share clamped at +-max_bias", color="tab:red", fontsize=7)
    ax2.set_ylim(-0.02, 1.02)
    ax.set_title(f"bias after the final clamp (+-{d.get('max_bias', 5.0):g})")
    ax.set_xlabel("bias scale s (logits; |b| <= s)")
    ax.set_ylabel("max |bias| (logits)")
    ax.set_xlim(xmin, xmax * 1.05)
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles=handles, fontsize=6, loc="upper left")
    fig.legend(handles=[Patch(color=c, label=lab) for _, _, lab, c in BANDS],
               loc="lower center", bbox_to_anchor=(0.5, 0.005), ncol=4, fontsize=8,
               title=(f"softmax zones of |bias| (design notes); bias = clamp(s * w, "
                      f"-{d.get('max_bias', 5.0):g}, {d.get('max_bias', 5.0):g})"))
    return fig


def _bars(ax, groups: Sequence[str], series: Mapping[str, Sequence[float]], colors: Mapping[str, str],
          ylabel: str, title: str, fmt: str = "{:.2f}") -> None:
    x = np.arange(len(groups))
    n = max(1, len(series))
    width = 0.8 / n
    for k, (name, vals) in enumerate(series.items()):
        vals = np.asarray(vals, dtype=float)
        bars = ax.bar(x + (k - (n - 1) / 2) * width, np.nan_to_num(vals), width,
                      color=colors.get(name, None), label=name)
        for bar, v in zip(bars, vals):
            if np.isfinite(v):
                ax.annotate(fmt.format(v), (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                            ha="center", va="bottom", fontsize=6)
    ax.set_xticks(x, groups, fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7)


def _attention_paths(section: Mapping | None) -> tuple[dict, dict]:
    """(``{path: summary}``, settings) of the ``summary.json`` ``attention`` section (paths next
    to ``settings`` and ``information``; a skipped path is None)."""
    if not section:
        return {}, {}
    paths = {k: v for k, v in section.items() if isinstance(v, Mapping) and "overall" in v}
    return paths, section.get("settings", {}) or {}


def _no_information(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=9,
            color="darkred", wrap=True, zorder=10,
            bbox=dict(boxstyle="round", fc="white", ec="darkred", alpha=0.9))


@styled
def summary_figure(summary: Mapping, *, title: str = "", notes: Sequence[str] = (),
                   subtitle: str = "", warnings: Sequence[str] = ()) -> Figure:
    """One page: feature change, gain shares, energy in boxes, attention per path and by nearest
    object, sweep.

    ``summary``: the ``compare-modes`` summary document (``summary.json``): its ``features``
    (:func:`~aqr_cli.analysis.features.compare_features` output), ``attention`` section (whose
    ``information`` marks near-uniform baselines; None or absent when not computed), ``sweep``
    (a ``SweepResult.to_dict()`` or None) and ``decoder_readout`` (the attention output's change
    per path, or None). ``warnings``: lines shown in red under the title (run semantics,
    uninformative attention); ``notes``: footer lines.
    """
    features = summary["features"]
    section = summary.get("attention") or {}
    fig = new_figure(17.0, 11.5, layout=None)
    top = caption_title(fig, title or "AQR: multiplicative modulation vs additive attention bias",
                        subtitle, [f"WARNING: {w}" for w in warnings])
    grid = fig.add_gridspec(3, 3, height_ratios=[1, 1, 0.28], left=0.045, right=0.99, bottom=0.015,
                            top=top, wspace=0.16, hspace=0.3)
    _change_panel(fig.add_subplot(grid[0, 0]), features, summary.get("decoder_readout"))
    _gain_panel(fig.add_subplot(grid[0, 1]), features)
    _energy_panel(fig.add_subplot(grid[0, 2]), features)
    paths_a, settings = _attention_paths(section)
    info = section.get("information") or {}
    uninformative = info.get("informative") is False
    _attention_panel(fig.add_subplot(grid[1, 0]), paths_a, settings,
                     info if uninformative else None)
    _shift_panel(fig.add_subplot(grid[1, 1]), paths_a, settings, uninformative)
    _sweep_panel(fig.add_subplot(grid[1, 2]), summary.get("sweep"))
    _footer(fig.add_subplot(grid[2, :]), notes, settings)
    return fig


MODS, MOD_NAMES = ("bev", "camera"), ["BEV", "camera"]


def _change_panel(ax, features: Mapping, readout: Mapping | None) -> None:
    groups = ["BEV memory", "camera memory"] + (["decoder readout"] if readout else [])
    series = {}
    for p in (p for p in ("multiplicative", "additive") if p in features):
        vals = [100 * (features[p][m].get("relative_change") or 0) for m in MODS]
        if readout:
            vals.append(100 * _val((readout.get(p) or {}).get("relative_change")))
        series[p] = vals
    _bars(ax, groups, series, PATH_COLORS, "relative change (%)",
          "Change of what the decoder gets (memory) and reads (attention output)", "{:.2g}")


def _gain_panel(ax, features: Mapping) -> None:
    mult = features.get("multiplicative", {})
    att = [100 * (mult.get(m, {}).get("gain") or {}).get("share_attenuated", np.nan) for m in MODS]
    amp = [100 * (mult.get(m, {}).get("gain") or {}).get("share_amplified", np.nan) for m in MODS]
    _bars(ax, MOD_NAMES, {"attenuated (g < 1)": att, "amplified (g > 1)": amp},
          {"attenuated (g < 1)": "tab:blue", "amplified (g > 1)": "tab:red"}, "share of cells (%)",
          "Multiplicative gain per cell", "{:.1f}")


def _energy_panel(ax, features: Mapping) -> None:
    mult = features.get("multiplicative", {})
    series = {}
    for m, nm in zip(MODS, MOD_NAMES):
        energy = mult.get(m, {}).get("energy")
        if energy:
            series[nm] = [_val(energy[g].get("retained")) for g in ("small", "large", "background")]
    if series:
        _bars(ax, ["small objects", "large objects", "background"], series,
              {"BEV": "tab:green", "camera": "tab:purple"}, "energy after / before",
              "Energy retained (multiplicative path)")
        ax.axhline(1.0, color="k", lw=0.8, ls="--")
    else:
        ax.text(0.5, 0.5, "no boxes: energy in boxes not computed", ha="center", va="center")
        ax.set_axis_off()


def _attention_panel(ax, paths_a: dict, settings: Mapping, uninformative: Mapping | None) -> None:
    """Mean attention statistics per path; ``uninformative``: the information section when the
    baseline is near-uniform (the panel is stamped)."""
    metrics = ("entropy_norm", "window_mass", "lidar_share", "topk_overlap")
    if not paths_a:
        reason = settings.get("reason") or "not computed"
        ax.text(0.5, 0.5, f"attention skipped:\n{reason}", ha="center", va="center", wrap=True)
        ax.set_axis_off()
        return
    _bars(ax, ["H / log F", "window mass", "LiDAR share", "top-k overlap"],
          {p: [_val(paths_a[p]["overall"].get(k)) for k in metrics] for p in paths_a},
          PATH_COLORS, "mean over queries", "Attention per path", "{:.3f}")
    ax.set_ylim(0, 1.12)
    if uninformative:
        _no_information(ax, f"near-uniform baseline (H / log F = "
                            f"{uninformative['baseline_entropy_norm']:.4f}):\nthese statistics carry no "
                            "information")


def _shift_panel(ax, paths_a: dict, settings: Mapping, uninformative: bool) -> None:
    """KL of each path from the baseline, over all queries and by nearest object size."""
    others = [p for p in paths_a if p != settings.get("reference", "baseline")]
    if not others:
        ax.text(0.5, 0.5, "no path to compare with the baseline", ha="center", va="center")
        ax.set_axis_off()
        return
    sizes = ("small", "large", "none")
    series = {}
    for p in others:
        by_size = paths_a[p].get("by_size", {})
        series[p] = [_val(paths_a[p]["overall"].get("kl_from_reference"))] + \
            [_val(by_size.get(g, {}).get("kl_from_reference")) for g in sizes]
    first = paths_a[others[0]]
    counts = [first["overall"].get("count")] + [((first.get("by_size") or {}).get(g) or {}).get("count")
                                                for g in sizes]
    labels = [f"{lab}\n(n = {c if c is not None else 'unknown'})" for lab, c in
              zip(["all queries", "near small", "near large", "no object"], counts)]
    _bars(ax, labels, series, PATH_COLORS, "KL(baseline || path), nats",
          "Attention shift vs baseline by nearest object (within 3 m)", "{:.3g}")
    if not any(first.get("by_size") or {}):
        ax.text(0.5, 0.6, "no objects (boxes) in this source:\nonly 'all queries' is defined",
                transform=ax.transAxes, ha="center", fontsize=8)
    if uninformative:
        _no_information(ax, "measured against a near-uniform baseline:\nno information")


def _sweep_panel(ax, sweep: Mapping | None) -> None:
    if sweep is None:
        ax.text(0.5, 0.5, "no bias-scale sweep", ha="center", va="center")
        ax.set_axis_off()
        return
    pts = sorted(sweep["points"], key=lambda p: p["scale"])
    s = np.asarray([p["scale"] for p in pts], dtype=float)
    shade_bands(ax, max(float(s.max()), 1.0), min(0.0, float(s.min())))
    for key, style, color, label in (("window_mass", "o-", "tab:blue", "mass in own window"),
                                     ("entropy_norm", "s-", "tab:green", "entropy / log F"),
                                     ("share_max_gt_0.9", "^-", "tab:red", "share max > 0.9")):
        ax.plot(s, [_val(p["attention"]["overall"].get(key)) for p in pts], style, color=color,
                label=label)
    ax.set(xlabel="bias scale s (logits)", ylabel="mean over queries / share",
           title="Bias-scale sweep (additive path)", ylim=(-0.02, 1.05))
    ax.legend(fontsize=6)


def _footer(ax, notes: Sequence[str], settings: Mapping) -> None:
    ax.set_axis_off()
    lines = list(notes)
    w = settings.get("weights") or {}
    if w.get("note"):
        lines.append("attention weights: " + w["note"])
    proj = settings.get("projection") or {}
    if proj.get("note") and proj.get("status") != "unchanged":
        lines.append("feature width: " + proj["note"])
    if settings.get("num_keys"):
        lines.append(f"{settings['num_keys']} keys ({settings.get('num_bev_keys')} BEV + "
                     f"{settings.get('num_camera_keys')} camera), {settings.get('num_queries')} queries; "
                     f"logits = softmax(q k^T / sqrt(d_head) + bias)")
    ax.text(0.0, 1.0, "\n".join(lines) or " ", va="top", ha="left", fontsize=8, family="monospace",
            transform=ax.transAxes, wrap=True)
