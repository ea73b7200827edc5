"""What one training log says, as data: :class:`RunSummary` and its parts, the reading bands of
spec 10.1 and :class:`Thinned`, which keeps series bounded while streaming."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from aqr_cli.analysis.findings import Finding
from aqr_cli.analysis.health import BANDS as BIAS_BANDS
from aqr_cli.logs.records import DebugBlock, TrainRecord

NUSCENES_CLASSES = ("car", "truck", "bus", "trailer", "construction_vehicle", "pedestrian",
                    "motorcycle", "bicycle", "traffic_cone", "barrier")
"""Order of the per-class table of spec 10.2."""
SMALL_CLASSES = ("pedestrian", "traffic_cone", "bicycle", "motorcycle")
"""The classes the notes single out as most sensitive to AQR (spec 10.1 item 14)."""
TP_METRICS = ("mATE", "mASE", "mAOE", "mAVE", "mAAE")
HEADLINE = ("mAP", "NDS") + TP_METRICS
MAIN_LOSSES = ("loss_cls", "loss_bbox", "dn_loss_cls", "dn_loss_bbox")
SERIES_POINTS = 2048
DEBUG_BLOCKS_KEPT = 256
MAX_VAL = 100
MAX_LOSS_KEYS = 1000
MAX_EVENTS_LISTED = 50

# Reading bands of spec 10.1 (items 1, 4, 6). The notes give points ("~0.5 neutral", "~0.7
# relies", "~1.0 over-reliance"; "std ~0.01 learnt nothing, 0.15-0.17 good, ~0.3 extreme");
# the band edges sit half-way between those points.
WEIGHT_MEAN_BANDS = ((0.0, 0.4, "below neutral"), (0.4, 0.6, "neutral"),
                     (0.6, 0.85, "relies on the modality"), (0.85, 1.0, "over-reliance"))
WEIGHT_STD_BANDS = ((0.0, 0.05, "AQR learnt nothing"), (0.05, 0.12, "weak discrimination"),
                    (0.12, 0.23, "good discrimination"), (0.23, 1.0, "extreme"))
RELATIVE_CHANGE_BANDS = ((0.0, 0.10, "gentle"), (0.10, 0.15, "target (10-15%)"),
                         (0.15, 0.25, "moderate"), (0.25, 0.30, "the notes' ideal (25-30%)"),
                         (0.30, 10.0, "strong"))
_SCALE_BAND = next(b for b in BIAS_BANDS if b.key == "scale")
SCALE_NORMAL = (_SCALE_BAND.low, _SCALE_BAND.high)
SCALE_ALARM = (_SCALE_BAND.alarm_low, _SCALE_BAND.alarm_high)
PREFERENCE_COLLAPSE = (0.10, 0.90)


def band(value: float | None, bands) -> str | None:
    """Name of the band ``value`` falls in (the last band is closed above), or None."""
    if value is None or not math.isfinite(value):
        return None
    for lo, hi, name in bands:
        if lo <= value < hi:
            return name
    if value >= bands[-1][1]:
        return bands[-1][2]
    return bands[0][2] if value < bands[0][0] else None


class Thinned:
    """At most ``cap`` items of a stream, every ``stride``-th one; the stride doubles when full.

    The kept items are always those whose stream index is a multiple of the stride, so the
    result depends only on the stream and ``cap``.
    """

    def __init__(self, cap: int):
        self.cap, self.stride, self.seen = cap, 1, 0
        self.items: list = []

    def add(self, item: Any) -> None:
        if self.seen % self.stride == 0:
            self.items.append(item)
            if len(self.items) > self.cap:
                self.items = self.items[::2]
                self.stride *= 2
        self.seen += 1


def is_finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


@dataclass
class TrainSummary:
    """What the training records say; ``series`` holds thinned points for the figures."""

    records: int = 0
    duplicates: int = 0
    iters_per_epoch: int | None = None
    epochs: list[int] = field(default_factory=list)
    first: TrainRecord | None = None
    last: TrainRecord | None = None
    time_mean: float | None = None
    time_median: float | None = None
    data_time_median: float | None = None
    memory_peak: float | None = None
    memory_early: float | None = None
    loss_keys: list[str] = field(default_factory=list)
    extra_keys: list[str] = field(default_factory=list)
    nan_grad_norm: list[int] = field(default_factory=list)
    nan_grad_norm_count: int = 0
    nonfinite_loss_count: int = 0
    spikes: list[dict] = field(default_factory=list)
    spike_count: int = 0
    restarts: int = 0
    series: list[dict] = field(default_factory=list)
    series_stride: int = 1

    def epoch_time_s(self) -> float | None:
        if self.time_median is None or not self.iters_per_epoch:
            return None
        return self.time_median * self.iters_per_epoch


@dataclass
class ValSummary:
    """One validation record: headline metrics, per-class AP and every per-class value."""

    epoch: int | None
    iter: int | None
    line: int
    metrics: dict[str, float | None]
    per_class_ap: dict[str, float | None]
    per_class: dict[str, dict[str, float | None]]


@dataclass
class Reading:
    """One AQR reading: a logged quantity, its value, the band it falls in and what that means."""

    id: str
    quantity: str
    value: float | None
    band: str | None
    message: str
    severity: str = "info"
    detail: dict = field(default_factory=dict)


@dataclass
class DebugSummary:
    """The AQR debug prints: counts, forward counters, kept blocks and per-forward means."""

    blocks: int = 0
    incomplete: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    counters: dict[str, dict[int, int]] = field(default_factory=dict)
    kept: list[DebugBlock] = field(default_factory=list)
    stride: int = 1
    readings: list[Reading] = field(default_factory=list)

    def per_forward(self, kind: str) -> list[dict[str, Any]]:
        """Per counter value of ``kind``: the mean over ranks of every logged number."""
        groups: dict[int, list[DebugBlock]] = {}
        for b in self.kept:
            if b.kind == kind:
                groups.setdefault(b.counter, []).append(b)
        out = []
        for counter in sorted(groups):
            blocks = groups[counter]
            acc: dict[str, list[float]] = {}
            for b in blocks:
                for sec, vals in b.sections.items():
                    for k, v in vals.items():
                        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                            acc.setdefault(f"{sec}.{k}", []).append(float(v))
            row = {"counter": counter, "ranks": len(blocks)}
            for k, vs in acc.items():
                row[k] = sum(vs) / len(vs)
                row[k + ":min"], row[k + ":max"] = min(vs), max(vs)
            out.append(row)
        return out


@dataclass
class RunSummary:
    """Everything read from one log."""

    path: str
    name: str
    format: str
    size_bytes: int
    lines: int
    header: dict[str, Any]
    config_text: str | None
    config: Any  # AQRConfig | None
    config_findings: list[Finding]
    model_parts: list[str] | None
    train: TrainSummary
    val: list[ValSummary]
    debug: DebugSummary
    findings: list[Finding]
    skipped: dict[str, Any]
    notes: list[str]

    @property
    def last_val(self) -> ValSummary | None:
        return self.val[-1] if self.val else None

    @property
    def has_aqr(self) -> bool | None:
        """True/False when the log tells (debug prints, model parts, config), else None."""
        if self.debug.blocks:
            return True
        if self.model_parts is not None:
            return bool(self.model_parts)
        if self.config is not None:
            item = self.config.head.get("enable_aqr")
            return bool(item.value) if item is not None and item.value is not None else None
        return None


