"""Runs side by side: each run's last validation and costs against a baseline run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from aqr_cli.logs.analysis.summary import TP_METRICS, RunSummary, is_finite

@dataclass
class Comparison:
    """One run against the baseline: deltas of the last validation and cost ratios."""

    path: str
    mAP_delta: float | None
    NDS_delta: float | None
    tp_deltas: dict[str, float | None]
    per_class_ap_delta: dict[str, float | None]
    time_per_iter_ratio: float | None
    memory_delta: float | None
    loss_delta: float | None


def _delta(a: float | None, b: float | None) -> float | None:
    return a - b if is_finite(a) and is_finite(b) else None


def compare(run: RunSummary, base: RunSummary) -> Comparison:
    rv, bv = run.last_val, base.last_val
    rm = rv.metrics if rv else {}
    bm = bv.metrics if bv else {}
    classes = list(dict.fromkeys([*(bv.per_class_ap if bv else {}), *(rv.per_class_ap if rv else {})]))
    pc = {c: _delta((rv.per_class_ap if rv else {}).get(c), (bv.per_class_ap if bv else {}).get(c))
          for c in classes}
    rt, bt = run.train.time_median, base.train.time_median
    ratio = rt / bt if is_finite(rt) and is_finite(bt) and bt else None
    rl = run.train.last.loss if run.train.last else None
    bl = base.train.last.loss if base.train.last else None
    return Comparison(run.path, _delta(rm.get("mAP"), bm.get("mAP")),
                      _delta(rm.get("NDS"), bm.get("NDS")),
                      {k: _delta(rm.get(k), bm.get(k)) for k in TP_METRICS}, pc, ratio,
                      _delta(run.train.memory_peak, base.train.memory_peak), _delta(rl, bl))


def compare_runs(runs: Iterable[RunSummary], baseline: RunSummary | None) -> list[Comparison]:
    """One :class:`Comparison` per run other than the baseline (empty without a baseline)."""
    if baseline is None:
        return []
    return [compare(r, baseline) for r in runs if r is not baseline]


