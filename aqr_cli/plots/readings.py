"""Figures of the researchers' readings: modality preference per class and size with bootstrap
intervals, and the six views' camera-weight statistics."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from aqr_cli.core.configs import CAMERA_NAMES, SMALL_CLASSES
from aqr_cli.plots.style import camera_axes, camera_label, caption_lines, caption_title, new_figure, styled

LARGE_COLOUR, SMALL_COLOUR, NONE_COLOUR = "#3b6ea8", "#d0762c", "#8c8c8c"


def _rows(by_class: dict, by_size: dict) -> list[tuple[str, dict, str]]:
    large = [(c, d, LARGE_COLOUR) for c, d in by_class.items() if c not in SMALL_CLASSES]
    small = [(c, d, SMALL_COLOUR) for c, d in by_class.items() if c in SMALL_CLASSES]
    sizes = [(f"all {g}" if g != "none" else "near no object", by_size[g],
              {"small": SMALL_COLOUR, "large": LARGE_COLOUR}.get(g, NONE_COLOUR))
             for g in ("large", "small", "none") if g in by_size]
    return large + small + sizes


@styled
def class_preference_figure(by_class: dict, by_size: dict, *, title: str, subtitle: str = "",
                            scope: str = "") -> Figure:
    """Share of queries preferring LiDAR per class and size group (95% bootstrap CI), and the
    mean LiDAR and camera weights (± std) of the same queries."""
    rows = _rows(by_class, by_size)
    n = max(len(rows), 1)
    height = 1.9 + 0.32 * n
    fig = new_figure(10.0, height, layout=None)
    lines = len(caption_lines(fig, title, subtitle))
    fig.set_figheight(height + 0.18 * max(lines - 2, 0))
    height = fig.get_figheight()
    top = caption_title(fig, title, subtitle)
    fig.subplots_adjust(left=0.2, right=0.98, top=top, bottom=1.15 / height, wspace=0.12)
    ax, ax2 = fig.subplots(1, 2, sharey=True)
    y = np.arange(len(rows))[::-1]
    # one call per kind of mark, not per row: each errorbar call builds a container of artists
    share = np.array([d["prefer_lidar"] for _, d, _ in rows], dtype=float)
    ax.barh(y, share, color=[colour for _, _, colour in rows], height=0.7)
    cis = [(yi, s, d["prefer_lidar_ci95"]) for yi, s, (_, d, _) in zip(y, share, rows)
           if d.get("prefer_lidar_ci95") is not None]
    if cis:
        ax.errorbar([s for _, s, _ in cis], [yi for yi, _, _ in cis],
                    xerr=[[s - ci[0] for _, s, ci in cis], [ci[1] - s for _, s, ci in cis]],
                    fmt="none", ecolor="black", capsize=3, linewidth=1)
    for key, marker, off, col in (("lidar", "o", 0.15, "#1b7837"), ("camera", "s", -0.15, "#762a83")):
        ax2.errorbar([d[f"{key}_mean"] for _, d, _ in rows], y + off,
                     xerr=[d.get(f"{key}_std") or 0 for _, d, _ in rows], fmt=marker, color=col,
                     markersize=4, capsize=2, linewidth=0.9)
    ax.axvline(0.5, color="black", linewidth=0.6, linestyle=":")
    ax.set_xlim(0, 1.0)
    ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.set_yticks(y, [f"{r[0]} (n={r[1]['count']})" for r in rows])
    ax.set_xlabel("share of queries with LiDAR weight > camera weight (95% bootstrap CI)")
    fig.legend(handles=[Patch(color=LARGE_COLOUR, label="large class"),
                        Patch(color=SMALL_COLOUR, label="small class (pedestrian, traffic_cone, "
                                                        "bicycle, motorcycle)"),
                        Patch(color=NONE_COLOUR, label="near no object"),
                        Line2D([], [], color="#1b7837", marker="o", linestyle="", label="LiDAR weight"),
                        Line2D([], [], color="#762a83", marker="s", linestyle="", label="camera weight")],
               loc="lower center", bbox_to_anchor=(0.5, 0.22 / height), ncol=5, fontsize=7,
               frameon=False)
    ax2.axvline(0, color="black", linewidth=0.6)
    ax2.set_xlim(-1.05, 1.05)
    ax2.set_xlabel("mean weight ± std")
    for a in (ax, ax2):
        a.grid(axis="x", linewidth=0.3, alpha=0.5)
    if scope:
        fig.text(0.5, 0.04 / height, scope, fontsize=7, va="bottom", ha="center")
    return fig


@styled
def camera_views_figure(camera_weights: np.ndarray, views: np.ndarray, *,
                        camera_names: Sequence[str] = CAMERA_NAMES, title: str,
                        xlim: tuple[float, float] = (-1.0, 1.0), xlabel: str = "camera weight",
                        subtitle: str = "", coverage: dict | None = None,
                        notes: Sequence[str] = ()) -> Figure:
    """Per view, the histogram of the camera weights of the queries it sees first, with mean,
    std, range and count; views laid out as they sit on the car.

    ``camera_weights [Q]``; ``views [Q]`` the first view of each query, -1 for queries no camera
    sees (left out). ``coverage``: camera name -> share of that view's rendered camera-weight
    mass inside GT boxes (printed in the panel); ``notes`` go under the subtitle.
    """
    fig = new_figure(11.0, 5.6, layout=None)
    top = caption_title(fig, title, subtitle, notes)
    fig.subplots_adjust(left=0.06, right=0.99, top=top, bottom=0.1, hspace=0.45, wspace=0.18)
    axes = camera_axes(fig, camera_names=camera_names)
    bins = np.linspace(xlim[0], xlim[1], 41)
    counts = []
    for v, ax in axes.items():
        w = camera_weights[views == v]
        h, _ = np.histogram(w, bins=bins)
        counts.append(h.max() if h.size else 0)
        ax.stairs(h, bins, fill=True, color="#762a83", alpha=0.8)   # one artist, not 40 bars
        if w.size:
            ax.axvline(float(w.mean()), color="black", linewidth=1)
            text = (f"n={w.size}  mean {w.mean():+.3f}\nstd {w.std(ddof=1) if w.size > 1 else 0:.3f}"
                    f"  range [{w.min():+.2f}, {w.max():+.2f}]")
        else:
            text = "n=0 (no query sees this view first)"
        cov = (coverage or {}).get(camera_names[v])
        if coverage is not None:
            text += "\nmap mass on GT boxes: " + ("-" if cov is None else f"{100 * cov:.1f}%")
        ax.set_title(camera_label(camera_names[v]), fontsize=9)
        ax.text(0.02, 0.97, text, transform=ax.transAxes, fontsize=7, va="top",
                bbox=dict(facecolor="white", alpha=0.8, edgecolor="none", pad=1.5))
        ax.set_xlim(*xlim)
        ax.set_xticks(np.linspace(xlim[0], xlim[1], 5))
    top = max(counts + [1]) * 1.45
    names = [camera_label(camera_names[v]) for v in axes]
    for v, ax in axes.items():
        ax.set_ylim(0, top)
        label = camera_label(camera_names[v])
        if label.endswith("LEFT") or label not in ("FRONT", "FRONT_RIGHT", "BACK", "BACK_RIGHT"):
            ax.set_ylabel("queries")
        if label.startswith("BACK") or "BACK" not in " ".join(names):
            ax.set_xlabel(xlabel, fontsize=8)
    return fig
