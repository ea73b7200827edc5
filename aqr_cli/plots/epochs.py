"""Figure of ``aqr inspect-checkpoint --out``: bias scale and weight-head statistics across epochs."""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
from matplotlib.figure import Figure

from aqr_cli.plots.style import new_figure, styled

MODALITY_COLORS = {"lidar": "#1f77b4", "camera": "#d62728"}
_BOUND_STYLE = dict(color="0.35", linestyle="--", linewidth=0.9)
_INIT_STYLE = dict(color="0.35", linestyle=":", linewidth=1.1)
WEIGHT_HEAD_BIAS_INIT = 1.5


def _ticks(ax, series: Mapping[str, Any]) -> None:
    x = series["x"]
    if series["x_label"].startswith("file"):
        ax.set_xticks(x, series["names"], rotation=30, ha="right", fontsize=7)
    elif series["x_label"] == "epoch" and len(x) and np.all(np.mod(x, 1) == 0) and len(x) <= 30:
        ax.set_xticks(x)
    ax.set_xlabel(series["x_label"])
    ax.grid(True, linewidth=0.4, alpha=0.5)


def _hline(ax, y, label: str, style: dict) -> None:
    if y is not None and math.isfinite(y):
        ax.axhline(y, label=label, **style)


@styled
def epoch_evolution_figure(series: Mapping[str, Any], title: str = "") -> Figure:
    """Three panels over checkpoints (x = epoch, iteration or file order):

    1. ``bias_scale`` raw and effective (after the learnable clamp), with the clamp bounds
       (dashed) and the initial value (dotted);
    2. ``weight_predictor.bias`` per modality, raw (dashed) and after tanh (solid), with the
       upstream init 1.5 / tanh(1.5);
    3. L2 norm of each ``weight_predictor.weight`` row (LiDAR, camera).

    ``series`` is :func:`aqr_cli.analysis.inspection.epochs.epoch_series` output. Missing values (NaN)
    leave gaps.
    """
    fig = new_figure(13.5, 4.2)
    axes = fig.subplots(1, 3)
    x = np.asarray(series["x"], dtype=np.float64)
    style = dict(marker="o", markersize=3.5, linewidth=1.4)

    ax = axes[0]
    ax.plot(x, series["bias_raw"], color="0.1", label="raw", **style)
    ax.plot(x, series["bias_effective"], color="#2ca02c", label="effective (clamped)",
            linestyle="-", marker="s", markersize=3, linewidth=1.0)
    _hline(ax, series.get("bias_max"), "max_scale", _BOUND_STYLE)
    _hline(ax, series.get("bias_min"), "min_scale", {**_BOUND_STYLE, "color": "0.6"})
    _hline(ax, series.get("bias_init"), "init", _INIT_STYLE)
    ax.set_title("attention bias scale")
    ax.set_ylabel("bias_scale (logits per unit weight)")
    _ticks(ax, series)
    ax.legend(loc="best", fontsize=7)

    ax = axes[1]
    bias = np.asarray(series["head_bias"], dtype=np.float64).reshape(-1, 2)
    tanh = np.asarray(series["head_bias_tanh"], dtype=np.float64).reshape(-1, 2)
    for i, name in enumerate(("lidar", "camera")):
        c = MODALITY_COLORS[name]
        ax.plot(x, tanh[:, i], color=c, label=f"{name} tanh(bias)", **style)
        ax.plot(x, bias[:, i], color=c, linestyle="--", linewidth=1.0, marker="x", markersize=3,
                label=f"{name} bias (raw)")
    _hline(ax, WEIGHT_HEAD_BIAS_INIT, "init 1.5", _INIT_STYLE)
    _hline(ax, math.tanh(WEIGHT_HEAD_BIAS_INIT), "tanh(1.5)", {**_INIT_STYLE, "color": "0.6"})
    ax.set_title("weight head bias (weight_predictor.bias)")
    ax.set_ylabel("bias (logit) / tanh(bias) (weight)")
    _ticks(ax, series)
    ax.legend(loc="best", fontsize=7)

    ax = axes[2]
    norms = np.asarray(series["head_row_norm"], dtype=np.float64).reshape(-1, 2)
    for i, name in enumerate(("lidar", "camera")):
        ax.plot(x, norms[:, i], color=MODALITY_COLORS[name], label=f"{name} row", **style)
    ax.set_title("weight head rows (weight_predictor.weight)")
    ax.set_ylabel("L2 norm of the row (unitless)")
    _ticks(ax, series)
    ax.legend(loc="best", fontsize=7)

    if title:
        fig.suptitle(title)
    return fig
