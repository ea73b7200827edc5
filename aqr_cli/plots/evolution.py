"""Evolution across dumps or checkpoints: weight statistics, map maxima and bias statistics."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from aqr_cli.plots.style import caption_title, new_figure, styled


@styled
def evolution_figure(rows: list[dict], activation: str = "tanh") -> Figure:
    """Three panels over one run's dumps (x = iteration when every row has a distinct one, else
    the given order); weights are labelled with ``activation``."""
    fig = new_figure(14.0, 5.0)
    ax_w, ax_m, ax_b = fig.subplots(1, 3)
    its = [r.get("iteration") for r in rows]
    use_it = all(isinstance(i, int) for i in its) and len(set(its)) == len(its)
    x = np.array(its if use_it else range(len(rows)), dtype=float)
    xlabel = "iteration (dump counter, Q38)" if use_it else "dump (iteration order)"

    def col(k):
        return np.array([np.nan if r.get(k) is None else r[k] for r in rows], dtype=float)

    for key, color, label in (("lidar", "tab:orange", "LiDAR"), ("camera", "tab:blue", "camera")):
        m, s = col(f"{key}_mean"), col(f"{key}_std")
        ax_w.plot(x, m, "o-", color=color, label=f"{label} mean")
        ax_w.fill_between(x, m - s, m + s, color=color, alpha=0.15, lw=0)
    ax_w.set(xlabel=xlabel, ylabel=f"weight ({activation})", title="Per-query weights (mean ± std, batch-wide)")
    ax_w.legend(fontsize=8, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.2))  # off the bands
    ax_m.plot(x, col("bev_map_max"), "s-", color="tab:purple", label="BEV map max")
    ax_m.plot(x, col("camera_map_max"), "^-", color="tab:green", label="camera map max")
    ax_m.set(xlabel=xlabel, ylabel="rendered weight (unitless)", title="Weight-map maxima")
    ax_m.legend(fontsize=8, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.2))  # off the bands
    m, s = col("bias_in_window_mean"), col("bias_in_window_std")
    ax_b.plot(x, m, "o-", color="tab:red", label="in-window mean ± std")
    ax_b.fill_between(x, m - s, m + s, color="tab:red", alpha=0.15, lw=0)
    ax_b.plot(x, col("bias_scale"), "k--", label="effective scale")
    ax_b.set(xlabel=xlabel, ylabel="bias (logits)", title="Attention bias inside windows")
    ax_b.legend(fontsize=8, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.2))  # off the bands
    if not use_it:
        names = [r["name"] for r in rows]
        for ax in (ax_w, ax_m, ax_b):
            ax.set_xticks(x, names, rotation=30, ha="right", fontsize=7)
    caption_title(fig, f"Evolution across {len(rows)} debug dumps of one run",
                  "dumps only, in iteration order; " + ", ".join(
                      f"{r['name']} (iteration {r.get('iteration')})" for r in rows))
    return fig
