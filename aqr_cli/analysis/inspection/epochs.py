"""Bias scale and weight-head statistics of several checkpoints, along epochs or iterations."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from aqr_cli.analysis.inspection.reports import CheckpointReport


def epoch_series(reports: Sequence[CheckpointReport]) -> dict[str, Any]:
    """Arrays for :func:`aqr_cli.plots.epochs.epoch_evolution_figure`, sorted along x.

    x is the epoch when every checkpoint has one, else the iteration, else the file order.
    Missing values are NaN. Keys: ``x`` [N], ``x_label``, ``names`` [N], ``bias_raw``,
    ``bias_effective`` [N], ``bias_init``, ``bias_min``, ``bias_max`` (floats or None),
    ``head_bias`` / ``head_bias_tanh`` / ``head_row_norm`` [N, 2] (LiDAR, camera).
    """
    reps = [r for r in reports if isinstance(r, CheckpointReport)]
    epochs = [r.meta.get("epoch") for r in reps]
    iters = [r.meta.get("iter") for r in reps]
    if reps and all(e is not None for e in epochs):
        x, label = [float(e) for e in epochs], "epoch"
    elif reps and all(i is not None for i in iters):
        x, label = [float(i) for i in iters], "iteration"
    else:
        x, label = [float(i) for i in range(len(reps))], "file (argument order)"
    order = sorted(range(len(reps)), key=lambda i: (x[i], reps[i].name))
    nan2 = [math.nan, math.nan]

    def pick(fn):
        return np.array([fn(reps[i]) for i in order], dtype=np.float64)

    def first(attr):
        vals = [getattr(r.bias_scale, attr) for r in reps if r.bias_scale is not None]
        return vals[0] if vals and all(v == vals[0] for v in vals) else None

    wh = lambda r, f: (f(r.weight_head) if r.weight_head is not None else nan2)  # noqa: E731
    return {
        "x": np.array([x[i] for i in order], dtype=np.float64), "x_label": label,
        "names": [reps[i].name for i in order],
        "bias_raw": pick(lambda r: r.bias_scale.raw if r.bias_scale else math.nan),
        "bias_effective": pick(lambda r: r.bias_scale.effective if r.bias_scale else math.nan),
        "bias_init": first("init"), "bias_min": first("min"), "bias_max": first("max"),
        "head_bias": pick(lambda r: wh(r, lambda w: w.bias_raw)),
        "head_bias_tanh": pick(lambda r: wh(r, lambda w: w.bias_tanh)),
        "head_row_norm": pick(lambda r: wh(r, lambda w: w.weight_row_norm or nan2)),
    }
