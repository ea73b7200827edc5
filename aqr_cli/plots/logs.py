"""Figures of training logs: losses, cost (time, memory), per-class AP, AQR debug statistics.

Builders take :class:`aqr_cli.logs.analysis.RunSummary` objects and return Figures; runs keep
one colour across figures (the baseline first). Raw logged points stay visible under a light
centred moving average; reading bands of spec 10.1 are shaded behind the AQR statistics.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from aqr_cli.logs.analysis import (
    MAIN_LOSSES,
    RELATIVE_CHANGE_BANDS,
    SCALE_NORMAL,
    SMALL_CLASSES,
    WEIGHT_MEAN_BANDS,
    WEIGHT_STD_BANDS,
    RunSummary,
    renderer_clamp,
)
from aqr_cli.plots.style import SIGNED_CMAP, new_figure, signed_norm, styled

RUN_COLOURS = ("#1b6ca8", "#d1495b", "#2a9d8f", "#e9a23b", "#6a4c93", "#3d405b", "#8ab17d",
               "#b56576")
BAND_COLOURS = ("#f3f3f3", "#e1edf6", "#e4f0dc", "#f8efd4", "#ebe5f2")
"""Muted tints for reading bands: none close to a run colour."""


def run_colour(i: int) -> str:
    return RUN_COLOURS[i % len(RUN_COLOURS)]


def run_labels(runs: Sequence[RunSummary], baseline: RunSummary | None) -> list[str]:
    """``run N: name`` (``[baseline]`` marked), as in the terminal table."""
    return [f"run {i + 1}: {r.name}" + (" [baseline]" if r is baseline else "")
            for i, r in enumerate(runs)]


def smooth(y: np.ndarray, window: int = 5) -> np.ndarray:
    """Centred moving average over finite points (NaNs neither spread nor count)."""
    y = np.asarray(y, dtype=float)
    ok = np.isfinite(y)
    if window <= 1 or ok.sum() < 3:
        return y
    k = np.ones(window)
    num = np.convolve(np.where(ok, y, 0.0), k, mode="same")
    den = np.convolve(ok.astype(float), k, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / den
    out[~ok] = np.nan
    return out


def _series(run: RunSummary, key: str) -> tuple[np.ndarray, np.ndarray]:
    pts = [(p["x"], p.get(key)) for p in run.train.series]
    x = np.array([a for a, _ in pts], dtype=float)
    y = np.array([np.nan if b is None else b for _, b in pts], dtype=float)
    return x, y


def _raw_and_smooth(ax, x, y, colour, label, window: int = 5) -> None:
    ax.plot(x, y, linestyle="none", marker="o", markersize=2.2, alpha=0.35, color=colour)
    ax.plot(x, smooth(y, window), color=colour, linewidth=1.4, label=label)


@styled
def loss_figure(runs: Sequence[RunSummary], baseline: RunSummary | None = None) -> Figure:
    """Total loss, the four main components and grad_norm against the iteration, one line per run."""
    keys = ("loss", *MAIN_LOSSES, "grad_norm")
    fig = new_figure(12.0, 6.4, layout=None)
    fig.subplots_adjust(left=0.06, right=0.985, bottom=0.08, top=0.9, wspace=0.22, hspace=0.22)
    axes = fig.subplots(2, 3, sharex=True)
    labels = run_labels(runs, baseline)
    for ax, key in zip(axes.flat, keys):
        drawn = False
        for i, r in enumerate(runs):
            x, y = _series(r, key)
            if np.isfinite(y).any():
                _raw_and_smooth(ax, x, y, run_colour(i), labels[i])
                drawn = True
        ax.set_title(key if key != "loss" else "total loss")
        ax.grid(True, linewidth=0.4, alpha=0.5)
        if not drawn:
            ax.text(0.5, 0.5, "not logged", transform=ax.transAxes, ha="center", va="center",
                    color="0.5")
    for ax in axes[1]:
        ax.set_xlabel("iteration")
    axes[0, 0].legend(loc="upper right", fontsize=7, frameon=False)
    fig.suptitle("Training losses (points: logged values, lines: 5-point moving average)")
    return fig


@styled
def cost_figure(runs: Sequence[RunSummary], baseline: RunSummary | None = None) -> Figure:
    """Time per iteration (with each run's median dashed) and GPU memory against the iteration."""
    fig = new_figure(11.0, 3.8, layout=None)
    fig.subplots_adjust(left=0.07, right=0.985, bottom=0.14, top=0.9, wspace=0.2)
    ax_t, ax_m = fig.subplots(1, 2)
    labels = run_labels(runs, baseline)
    for i, r in enumerate(runs):
        c = run_colour(i)
        x, y = _series(r, "time")
        if np.isfinite(y).any():
            _raw_and_smooth(ax_t, x, y, c, labels[i])
            if r.train.time_median is not None:
                ax_t.axhline(r.train.time_median, color=c, linestyle="--", linewidth=0.8)
        x, y = _series(r, "memory")
        if np.isfinite(y).any():
            ax_m.step(x, y, where="post", color=c, linewidth=1.4, label=labels[i])
            ax_m.plot(x, y, linestyle="none", marker="o", markersize=2.2, alpha=0.35, color=c)
    ax_t.set(title="time per iteration (dashed: median without the first record)",
             xlabel="iteration", ylabel="s")
    ax_m.set(title="GPU memory (max allocated, as logged)", xlabel="iteration", ylabel="MB")
    for ax in (ax_t, ax_m):
        ax.grid(True, linewidth=0.4, alpha=0.5)
    ax_t.legend(loc="upper right", fontsize=7, frameon=False)
    return fig


def _class_axis(a, xs, ticks: list[str], classes: list[str]) -> None:
    """Class names under the bars, small classes shaded."""
    a.set_xticks(xs, ticks, rotation=25, ha="right")
    for k, c in enumerate(classes):
        if c in SMALL_CLASSES:
            a.axvspan(k - 0.45, k + 0.45, color="#fff3c4", zorder=0)
    a.grid(True, axis="y", linewidth=0.4, alpha=0.5)


def _delta_panel(dax, others: list, baseline: RunSummary, classes: list[str], labels: list[str]) -> None:
    """Per-class AP minus the baseline's, one bar group per class, coloured by the signed delta."""
    import matplotlib

    xs = np.arange(len(classes))
    deltas = np.array([[np.nan if (a := r.last_val.per_class_ap.get(c)) is None or
                        (b := baseline.last_val.per_class_ap.get(c)) is None else a - b
                        for c in classes] for _, r in others], dtype=float)
    lim = max(0.005, float(np.nanmax(np.abs(deltas))) if np.isfinite(deltas).any() else 0.01)
    norm = signed_norm(lim)
    cmap = matplotlib.colormaps[SIGNED_CMAP]
    w = 0.8 / len(others)
    for j, (i, r) in enumerate(others):
        d = deltas[j]
        pos = xs + (j - (len(others) - 1) / 2) * w
        dax.bar(pos, d, w, color=cmap(norm(np.nan_to_num(d))), edgecolor=run_colour(i),
                linewidth=1.2, label=labels[i])
        for p, v in zip(pos, d):
            if math.isfinite(v):
                dax.text(p, v, f"{v:+.3f}", ha="center", va="bottom" if v >= 0 else "top",
                         fontsize=6.5)
    dax.axhline(0, color="0.3", linewidth=0.8)
    dax.set(ylabel="AP - baseline AP", ylim=(-1.35 * lim, 1.35 * lim),
            title=f"Per-class AP delta against the baseline ({baseline.name})")
    dax.legend(loc="lower right", fontsize=7, frameon=False)


@styled
def per_class_figure(runs: Sequence[RunSummary], baseline: RunSummary | None = None) -> Figure:
    """Per-class AP of each run's last validation; with a baseline, the deltas below it."""
    with_val = [(i, r) for i, r in enumerate(runs) if r.last_val is not None]
    classes = list(dict.fromkeys(c for _, r in with_val for c in r.last_val.per_class_ap))
    others = [(i, r) for i, r in with_val if r is not baseline]
    show_delta = baseline is not None and baseline.last_val is not None and others
    fig = new_figure(11.0, 6.6 if show_delta else 3.8, layout=None)
    if show_delta:
        fig.subplots_adjust(left=0.07, right=0.99, bottom=0.12, top=0.95, hspace=0.62)
    else:
        fig.subplots_adjust(left=0.07, right=0.99, bottom=0.22, top=0.91)
    axes = fig.subplots(2 if show_delta else 1, 1, squeeze=False)[:, 0]
    labels = run_labels(runs, baseline)
    xs = np.arange(len(classes))
    width = 0.8 / max(1, len(with_val))
    ticks = [c + (" *" if c in SMALL_CLASSES else "") for c in classes]
    ax = axes[0]
    for j, (i, r) in enumerate(with_val):
        ap = [r.last_val.per_class_ap.get(c) for c in classes]
        ax.bar(xs + (j - (len(with_val) - 1) / 2) * width,
               [np.nan if a is None else a for a in ap], width, color=run_colour(i), label=labels[i])
    ax.set(ylabel="AP (mean of 4 distance thresholds)", ylim=(0, 1),
           title="Per-class AP at the last validation (* small classes)")
    ax.legend(loc="upper right", fontsize=7, frameon=False)
    if show_delta:
        _delta_panel(axes[1], others, baseline, classes, labels)
    for a in axes:
        _class_axis(a, xs, ticks, classes)
    return fig


def _bands(ax, bands, top: float) -> None:
    """Shade ``bands`` up to ``top`` (the axis top) and name each on the right of the axes."""
    ax.set_ylim(min(0.0, ax.get_ylim()[0]), top)
    for (lo, hi, name), colour in zip(bands, BAND_COLOURS):
        hi = min(hi, top)
        if hi <= lo:
            continue
        ax.axhspan(lo, hi, color=colour, zorder=0, linewidth=0)
        ax.text(1.0, (lo + hi) / 2, f" {name}", transform=ax.get_yaxis_transform(),
                fontsize=6.5, va="center", ha="left", color="0.35", clip_on=False)


def _debug_kind(run: RunSummary) -> str | None:
    for kind in ("modulation", "bias_monitor", "head_bias"):
        if run.debug.by_kind.get(kind):
            return kind
    return None


_SECTIONS = {"modulation": ("lidar_weights_stats", "camera_weights_stats"),
             "bias_monitor": ("lidar", "camera"), "head_bias": ("lidar", "camera")}


def _debug_weights(a_mean, a_std, r: RunSummary, kind: str, c, label: str):
    """Weight mean +- std and std per modality of one run; returns (x counters, per-forward rows)."""
    rows = r.debug.per_forward(kind)
    x = np.array([row["counter"] for row in rows], dtype=float)
    lid, cam = _SECTIONS[kind]
    for sec, style, mod in ((lid, "-", "LiDAR"), (cam, "--", "camera")):
        m = np.array([row.get(f"{sec}.mean", np.nan) for row in rows], dtype=float)
        s = np.array([row.get(f"{sec}.std", np.nan) for row in rows], dtype=float)
        a_mean.errorbar(x, m, yerr=s, color=c, linestyle=style, marker="o", markersize=3,
                        capsize=3, linewidth=1.3, label=f"{label} {mod}")
        a_std.plot(x, s, color=c, linestyle=style, marker="o", markersize=3,
                   label=f"{label} {mod}")
        for b in r.debug.kept:
            if b.kind == kind and (v := b.value(sec, "mean")) is not None:
                a_mean.plot(b.counter, v, ".", color=c, alpha=0.35, markersize=3)
    return x, rows


def _modulation_panels(a_map, a_rel, r: RunSummary, x, rows: list, c, label: str) -> None:
    """Old scheme: map maxima (rank range shaded, clamp dotted) and the modulation effect."""
    for key, style, name in (("weight_map_bev_stats.max", "-", "BEV map max"),
                             ("weight_map_pers_stats.max", "--", "camera map max")):
        a_map.plot(x, [row.get(key, np.nan) for row in rows], color=c, linestyle=style,
                   marker="o", markersize=3, label=f"{label} {name}")
        a_map.fill_between(x, [row.get(key + ":min", np.nan) for row in rows],
                           [row.get(key + ":max", np.nan) for row in rows], color=c,
                           alpha=0.12, linewidth=0)
    clamp, _ = renderer_clamp(r)
    if clamp is not None:
        a_map.axhline(clamp, color=c, linestyle=":", linewidth=1.0)
        a_map.text(x[0] if len(x) else 0, clamp, f" clamp {clamp:g}", fontsize=6.5,
                   va="bottom", color=c)
    for key, style, name in (("modulation_effect_bev.relative_change", "-", "BEV"),
                             ("modulation_effect_pers.relative_change", "--", "camera")):
        a_rel.plot(x, [row.get(key, np.nan) for row in rows], color=c, linestyle=style,
                   marker="o", markersize=3, label=f"{label} {name}")


def _debug_axes(a_mean, a_std, a_map, a_rel, old: bool, new: bool) -> None:
    """Titles, bands and legends of the four debug panels (old or new scheme)."""
    a_mean.set(title="weight mean +- std per modality (dots: single ranks)", ylabel="weight")
    _bands(a_mean, WEIGHT_MEAN_BANDS, top=1.05)
    a_std.set(title="weight std across queries", ylabel="std")
    _bands(a_std, WEIGHT_STD_BANDS, top=max(0.4, _ymax(a_std)))
    if old:
        a_map.set_yscale("log")
        a_map.set(title="weight map maxima (shade: rank range; dotted: configured clamp)",
                  ylabel="max weight (log)")
        a_rel.set(title="modulation effect: relative change mean(|d|/|f|)", ylabel="share")
        _bands(a_rel, RELATIVE_CHANGE_BANDS, top=max(0.4, _ymax(a_rel)))
    elif new:
        a_map.axhspan(*SCALE_NORMAL, color=BAND_COLOURS[1], zorder=0)
        a_map.set(title="bias scale (shade: normal 1.0-4.0)", ylabel="scale")
        a_rel.axhspan(0.0, 0.1, color=BAND_COLOURS[3], zorder=0)
        a_rel.axhspan(0.9, 1.0, color=BAND_COLOURS[3], zorder=0)
        a_rel.set(title="share of queries preferring LiDAR (shade: collapse)", ylim=(0, 1))
    for ax in (a_mean, a_std, a_map, a_rel):
        ax.set_xlabel("forward counter (per process)")
        ax.grid(True, linewidth=0.4, alpha=0.5)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6.5, frameon=False, loc="best")


@styled
def debug_figure(runs: Sequence[RunSummary], baseline: RunSummary | None = None) -> Figure | None:
    """AQR debug statistics over forwards (rank mean, rank range as points), bands shaded.

    Panels: weight mean +- std per modality; weight std; map maxima against the clamp (old
    scheme) or the bias scale (new scheme); relative change BEV/camera (old) or the share of
    queries preferring LiDAR (new). None when no run has debug prints.
    """
    with_dbg = [(i, r, k) for i, r in enumerate(runs) if (k := _debug_kind(r)) is not None]
    if not with_dbg:
        return None
    labels = run_labels(runs, baseline)
    fig = new_figure(12.5, 7.0, layout=None)
    # manual margins: constrained layout costs about a second here; the right margin holds
    # the band names
    fig.subplots_adjust(left=0.06, right=0.9, bottom=0.08, top=0.92, wspace=0.32, hspace=0.32)
    (a_mean, a_std), (a_map, a_rel) = fig.subplots(2, 2)
    old = any(k == "modulation" for _, _, k in with_dbg)
    new = any(k == "bias_monitor" for _, _, k in with_dbg)
    for i, r, kind in with_dbg:
        x, rows = _debug_weights(a_mean, a_std, r, kind, run_colour(i), labels[i])
        if kind == "modulation":
            _modulation_panels(a_map, a_rel, r, x, rows, run_colour(i), labels[i])
        elif kind == "bias_monitor":
            a_map.plot(x, [row.get("scale.value", np.nan) for row in rows], color=run_colour(i),
                       marker="o", markersize=3, label=f"{labels[i]} bias scale")
            a_rel.plot(x, [row.get("preference.prefer_lidar", np.nan) for row in rows],
                       color=run_colour(i), marker="o", markersize=3, label=f"{labels[i]} prefer LiDAR")
    _debug_axes(a_mean, a_std, a_map, a_rel, old, new)
    fig.suptitle("AQR debug prints over training (lines: mean over ranks)")
    return fig


def _ymax(ax) -> float:
    ys = [np.nanmax(ln.get_ydata()) for ln in ax.get_lines()
          if len(ln.get_ydata()) and np.isfinite(np.asarray(ln.get_ydata(), dtype=float)).any()]
    return float(max(ys) * 1.15) if ys else 1.0

