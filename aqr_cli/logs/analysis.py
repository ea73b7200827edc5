"""Per-run summary of a training log, comparison of runs, AQR readings and log-level findings.

:func:`summarize_log` folds the events of :class:`aqr_cli.logs.parse.LogParser` into a
:class:`RunSummary` while streaming: counts, running sums, a time histogram for the exact
median, and series thinned by :class:`Thinned` to a fixed number of points, so memory does not
grow with the file. :func:`compare_runs` puts runs next to a baseline. Reading bands are the
researchers' (spec 10.1); config quirks come from the same rules ``inspect-checkpoint`` runs.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from aqr_cli.analysis.findings import Finding, sort_findings
from aqr_cli.analysis.health import BANDS as BIAS_BANDS
from aqr_cli.analysis.health import scale_health
from aqr_cli.logs.parse import LogFormatError, LogParser
from aqr_cli.logs.records import (
    ConfigText,
    DebugBlock,
    HeaderItem,
    ModelParts,
    TrainRecord,
    ValRecord,
)

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


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def _median(values) -> float:
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2.0


def _median_from_counts(counts: Counter) -> float | None:
    n = sum(counts.values())
    if not n:
        return None
    keys = sorted(counts)
    lo_rank, hi_rank = (n - 1) // 2, n // 2
    acc, lo, hi = 0, None, None
    for k in keys:
        acc += counts[k]
        if lo is None and acc > lo_rank:
            lo = k
        if acc > hi_rank:
            hi = k
            break
    return (lo + hi) / 2.0


# ---------------------------------------------------------------- result types


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


# ---------------------------------------------------------------- the fold


class _TrainFold:
    def __init__(self):
        self.s = TrainSummary()
        self.series = Thinned(SERIES_POINTS)
        self.time_counts: Counter = Counter()
        self.data_counts: Counter = Counter()
        self.time_sum, self.time_n = 0.0, 0
        self.recent: deque = deque(maxlen=20)
        self.loss_keys: dict[str, None] = {}
        self.extra_keys: dict[str, None] = {}
        self.epochs: dict[int, None] = {}
        self.early_mem: list[float] = []
        # JSON logs do not print N of [i/N]: the last iteration of the first finished epoch
        # stands in for it, so that later epochs continue the x axis
        self.inferred_per_epoch: int | None = None
        self.max_iter = 0

    def add(self, r: TrainRecord) -> None:
        s = self.s
        if s.last is not None and (r.epoch, r.iter) == (s.last.epoch, s.last.iter):
            s.duplicates += 1  # the same record printed by several ranks
            return
        if s.last is not None and (r.epoch or 0, r.iter) < (s.last.epoch or 0, s.last.iter):
            s.restarts += 1
        s.records += 1
        if r.iters_per_epoch:
            s.iters_per_epoch = max(s.iters_per_epoch or 0, r.iters_per_epoch)
        if r.epoch is not None:
            if self.epochs and r.epoch not in self.epochs and self.inferred_per_epoch is None:
                self.inferred_per_epoch = self.max_iter
            self.epochs[r.epoch] = None
        self.max_iter = max(self.max_iter, r.iter)
        if s.first is None:
            s.first = r
        elif _finite(r.time):
            # the first record carries start-up (data loader workers, cudnn autotune)
            self.time_counts[round(r.time, 4)] += 1
            self.time_sum += r.time
            self.time_n += 1
            if _finite(r.data_time):
                self.data_counts[round(r.data_time, 4)] += 1
        if _finite(r.memory):
            s.memory_peak = r.memory if s.memory_peak is None else max(s.memory_peak, r.memory)
            if len(self.early_mem) < 3:
                self.early_mem.append(r.memory)
        if r.grad_norm is not None and math.isnan(r.grad_norm):
            s.nan_grad_norm_count += 1
            if len(s.nan_grad_norm) < MAX_EVENTS_LISTED:
                s.nan_grad_norm.append(r.iter)
        if r.loss is not None and not math.isfinite(r.loss):
            s.nonfinite_loss_count += 1
        elif r.loss is not None:
            self._spike(r)
            self.recent.append(r.loss)
        for k in r.losses:
            if k not in self.loss_keys and len(self.loss_keys) < MAX_LOSS_KEYS:
                self.loss_keys[k] = None
        for k in r.extra:
            if k not in self.extra_keys and len(self.extra_keys) < MAX_LOSS_KEYS:
                self.extra_keys[k] = None
        point = {"x": r.global_iter(s.iters_per_epoch or self.inferred_per_epoch), "epoch": r.epoch, "iter": r.iter,
                 "loss": r.loss, "time": r.time, "data_time": r.data_time, "memory": r.memory,
                 "grad_norm": r.grad_norm, "lr": r.lr}
        point.update({k: r.losses[k] for k in MAIN_LOSSES if k in r.losses})
        self.series.add(point)
        s.last = r

    def _spike(self, r: TrainRecord) -> None:
        if len(self.recent) < 5:
            return
        med = _median(self.recent)
        mad = _median([abs(x - med) for x in self.recent])
        if r.loss > med + max(6 * 1.4826 * mad, 0.25 * abs(med)):
            self.s.spike_count += 1
            if len(self.s.spikes) < MAX_EVENTS_LISTED:
                self.s.spikes.append({"epoch": r.epoch, "iter": r.iter, "loss": r.loss,
                                      "recent_median": med})

    def finish(self) -> TrainSummary:
        s = self.s
        s.time_mean = self.time_sum / self.time_n if self.time_n else None
        s.time_median = _median_from_counts(self.time_counts)
        s.data_time_median = _median_from_counts(self.data_counts)
        s.memory_early = max(self.early_mem) if self.early_mem else None
        s.loss_keys, s.extra_keys = list(self.loss_keys), list(self.extra_keys)
        s.epochs = sorted(self.epochs)
        s.series, s.series_stride = self.series.items, self.series.stride
        return s


def val_summary(v: ValRecord) -> ValSummary:
    """Headline metrics, per-class AP (mean of the four distance APs) and per-class values."""
    metrics = {k: v.values.get(k) for k in HEADLINE}
    per_class: dict[str, dict[str, float]] = {}
    for key, value in v.values.items():
        m = re.match(r"^(.+?)_(AP_dist_[\d.]+|trans_err|scale_err|orient_err|vel_err|attr_err)$", key)
        if m:
            per_class.setdefault(m.group(1), {})[m.group(2)] = value
    order = [c for c in NUSCENES_CLASSES if c in per_class] + \
        [c for c in per_class if c not in NUSCENES_CLASSES]
    per_class = {c: per_class[c] for c in order}
    ap: dict[str, float | None] = {}
    for cls, vals in per_class.items():
        aps = [x for k, x in vals.items() if k.startswith("AP_dist_")]
        ap[cls] = (sum(aps) / len(aps)) if aps and all(math.isfinite(x) for x in aps) else None
    return ValSummary(v.epoch, v.iter, v.line, metrics, ap, per_class)


def _header_fold(header: dict[str, Any], item: HeaderItem) -> None:
    if item.key == "gpus":
        header["gpus"] = item.value
    elif item.key not in header:
        header[item.key] = item.value


def summarize_log(path: str | os.PathLike) -> RunSummary:
    """Read one log (streaming) into a :class:`RunSummary`.

    Raises :class:`LogFormatError` for files that are no log, and for logs without any training
    record, validation record or AQR debug print.
    """
    parser = LogParser(path)
    header: dict[str, Any] = {}
    train = _TrainFold()
    vals: list[ValSummary] = []
    debug = DebugSummary()
    kept = Thinned(DEBUG_BLOCKS_KEPT)
    config_text: ConfigText | None = None
    parts: list[str] | None = None
    notes: list[str] = []
    for ev in parser.events():
        if isinstance(ev, TrainRecord):
            train.add(ev)
        elif isinstance(ev, ValRecord):
            if len(vals) >= MAX_VAL:
                vals.pop(0)
            vals.append(val_summary(ev))
        elif isinstance(ev, DebugBlock):
            debug.blocks += 1
            debug.incomplete += not ev.complete
            debug.by_kind[ev.kind] = debug.by_kind.get(ev.kind, 0) + 1
            counters = debug.counters.setdefault(ev.kind, {})
            if ev.counter in counters or len(counters) < 100_000:
                counters[ev.counter] = counters.get(ev.counter, 0) + 1
            kept.add(ev)
        elif isinstance(ev, HeaderItem):
            _header_fold(header, ev)
        elif isinstance(ev, ConfigText):
            if config_text is None:
                config_text = ev
        elif isinstance(ev, ModelParts):
            parts = list(ev.parts)
    t = train.finish()
    if not (t.records or vals or debug.blocks):
        raise LogFormatError(
            f"{path}: no training records, validation metrics or AQR debug prints found "
            f"({parser.lines} lines read)", "expected an mmcv/mmengine training log or *.log.json")
    debug.kept, debug.stride = kept.items, kept.stride
    p = Path(path)
    cfg, cfg_findings, cfg_notes, parsed = _config(config_text, parts, p.name)
    notes += cfg_notes
    _header_from_config(header, parsed)
    if config_text is None:
        notes.append("no config in the log (it starts after the config dump, or the run did not "
                     "print one): config quirks not checked")
    if t.first is not None and "torch" not in header and "seed" not in header \
            and (t.first.iter > 50 or (t.first.epoch or 1) > 1):
        notes.append(f"the log starts mid-run (first record epoch {t.first.epoch}, iteration "
                     f"{t.first.iter}) and has no header")
    if t.restarts:
        notes.append(f"iteration went backwards {t.restarts} time(s): a resumed or restarted run "
                     "(or several runs in one file)")
    if debug.stride > 1:
        notes.append(f"{debug.blocks} AQR debug prints: every {debug.stride}th is kept for the "
                     "per-block list and figures")
    if t.series_stride > 1:
        notes.append(f"{t.records} training records: every {t.series_stride}th is drawn")
    skipped = {"count": sum(parser.skipped.values()), "reasons": dict(parser.skipped),
               "examples": parser.examples, "decode_errors": parser.decode_errors,
               "carriage_returns": parser.carriage_returns, "ansi_lines": parser.ansi_lines}
    run = RunSummary(
        path=os.fspath(path), name=p.name, format=parser.format, size_bytes=parser.size_bytes,
        lines=parser.lines, header=header, config_text=config_text.text if config_text else None,
        config=cfg, config_findings=cfg_findings, model_parts=parts, train=t, val=vals,
        debug=debug, findings=[], skipped=skipped, notes=notes)
    debug.readings = aqr_readings(run)
    run.findings = log_findings(run)
    return run


def _header_from_config(header: dict[str, Any], parsed) -> None:
    if parsed is None:
        return
    for key, paths in (("work_dir", ("work_dir",)), ("load_from", ("load_from",)),
                       ("max_epochs", ("runner.max_epochs", "total_epochs")),
                       ("seed", ("seed",))):
        if key in header:
            continue
        for path in paths:
            value = parsed.get(path)
            if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                header[key] = value
                break


# ---------------------------------------------------------------- config through the quirk rules


def _config(text: ConfigText | None, parts: list[str] | None, name: str):
    """(AQRConfig, quirk findings, notes, ParsedConfig) of the printed config, or Nones.

    The quirk rules are those of ``inspect-checkpoint`` (:func:`checkpoint_findings`) on a
    context with no tensors: components come from the printed model (``Model:``), else from the
    config, so rules that need tensors stay silent.
    """
    if text is None:
        return None, [], [], None
    from aqr_cli.io.config_parse import extract_aqr_config, parse_config_text
    from aqr_cli.io.errors import ConfigParseError

    notes = []
    if text.truncated:
        notes.append("the printed config is longer than 4 MB: only its start was read")
    try:
        parsed = parse_config_text(text.text, label=f"{name}:Config")
    except ConfigParseError as e:
        return None, [], [f"the printed config could not be parsed ({e.reason}); config quirks "
                          "not checked"], None
    cfg = extract_aqr_config(parsed)
    for key, why in cfg.unparsed.items():
        notes.append(f"config: {key} not parsed ({why})")
    try:
        findings = _config_findings(cfg, parsed, parts)
    except Exception as e:  # noqa: BLE001 - a rule failing on an odd config must not sink the log
        notes.append(f"config quirk rules failed ({type(e).__name__}: {e}); none reported")
        findings = []
    return cfg, findings, notes, parsed


def _config_findings(cfg, parsed, parts: list[str] | None) -> list[Finding]:
    from aqr_cli.analysis.findings import CheckpointContext, checkpoint_findings
    from aqr_cli.analysis.inspection.components import components
    from aqr_cli.analysis.inspection.reports import NonFiniteReport
    from aqr_cli.inputs.checks import shapes_and_checks

    comps = components({}, None, cfg)
    for name in parts or ():
        if name in comps and not comps[name].present:
            comps[name].present, comps[name].evidence = True, "config"
            comps[name].note = "named in the printed model"
    shapes, _ = shapes_and_checks({}, None, cfg)
    report = _ConfigOnlyReport(components=comps, shapes=shapes,
                               nonfinite=NonFiniteReport(scanned=0, bad=[]))
    return checkpoint_findings(CheckpointContext(report, cfg, parsed, {}, ""))


@dataclass
class _ConfigOnlyReport:
    """The parts of a ``CheckpointReport`` the quirk rules read, for a log (no tensors)."""

    components: dict
    shapes: Any
    bias_scale: Any = None
    weight_head: Any = None
    reference_points: Any = None
    meta: dict = field(default_factory=dict)
    nonfinite: Any = None


# ---------------------------------------------------------------- AQR readings


def _fmt(x: float | None, d: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{d}f}"


def _last_group(rows: list[dict]) -> dict | None:
    return rows[-1] if rows else None


def map_maxima(run: RunSummary) -> tuple[float | None, float | None]:
    """Largest BEV and camera weight-map maxima over the kept old-scheme prints."""
    def top(section: str) -> float | None:
        vals = [v for b in run.debug.kept if b.kind == "modulation"
                and (v := b.value(section, "max")) is not None and math.isfinite(v)]
        return max(vals) if vals else None

    return top("weight_map_bev_stats"), top("weight_map_pers_stats")


def renderer_clamp(run: RunSummary) -> tuple[float | None, str]:
    """The renderer's ``max_weight_clamp`` and where it comes from.

    From the printed config when there is one; otherwise the largest BEV map maximum, since the
    old renderer clamps every BEV map (a log cut before its config still tells the clamp of a
    2.5 run from its BEV maps); None when neither exists.
    """
    cfg = run.config
    if cfg is not None:
        item = cfg.renderer_config.get("max_weight_clamp")
        if item is not None and isinstance(item.value, (int, float)):
            return float(item.value), "config" if item.source == "file" else "renderer default"
    bev_max, _ = map_maxima(run)
    if bev_max is not None and bev_max > 0:
        return bev_max, "the BEV map maxima (no config in the log)"
    return None, "no config"


def aqr_readings(run: RunSummary) -> list[Reading]:
    """Readings of the debug prints against the bands of spec 10.1 (last forward, rank mean)."""
    out: list[Reading] = []
    d = run.debug
    rows = d.per_forward("modulation")
    last = _last_group(rows)
    if last is not None:
        _weight_readings(out, last, "lidar_weights_stats", "camera_weights_stats")
        lm, cm = last.get("lidar_weights_stats.mean"), last.get("camera_weights_stats.mean")
        if lm is not None and cm is not None:
            side = "camera" if cm > lm else "LiDAR"
            out.append(Reading("modality_preference", "camera mean - LiDAR mean", cm - lm,
                               f"{side} preferred" if abs(cm - lm) >= 0.02 else "balanced",
                               f"at forward {last['counter']} the mean camera weight is "
                               f"{_fmt(cm)} and the mean LiDAR weight {_fmt(lm)} "
                               "(the old print gives no per-query preference shares)."))
        bev = last.get("modulation_effect_bev.relative_change")
        cam = last.get("modulation_effect_pers.relative_change")
        for name, v in (("BEV", bev), ("camera", cam)):
            if v is not None:
                out.append(Reading(f"relative_change_{name.lower()}", f"{name} relative change",
                                   v, band(v, RELATIVE_CHANGE_BANDS),
                                   f"{name} features change by {100 * v:.1f}% on average "
                                   f"(mean |delta|/|f|) at forward {last['counter']}."))
        if bev and cam is not None:
            out.append(Reading("camera_vs_bev", "camera / BEV relative change", cam / bev,
                               "camera stronger" if cam > bev else "BEV stronger",
                               f"the camera features change {cam / bev:.1f}x as much as the BEV "
                               "features."))
        _clamp_reading(out, run, d)
    new_rows = d.per_forward("bias_monitor")
    if new_rows:
        _bias_readings(out, new_rows[-1], d)
    head_rows = d.per_forward("head_bias")
    if head_rows and not new_rows and last is None:
        _weight_readings(out, head_rows[-1], "lidar", "camera")
    return out


def _weight_readings(out: list[Reading], row: dict, lidar: str, camera: str) -> None:
    for name, sec in (("LiDAR", lidar), ("camera", camera)):
        m, s = row.get(f"{sec}.mean"), row.get(f"{sec}.std")
        if m is not None:
            out.append(Reading(f"{name.lower()}_weight_mean", f"{name} weight mean", m,
                               band(m, WEIGHT_MEAN_BANDS),
                               f"{name} weights average {_fmt(m)} at forward {row['counter']} "
                               f"(rank mean; ~0.5 neutral, ~0.7 relies, ~1.0 over-reliance)."))
        if s is not None:
            sev = "warning" if s < WEIGHT_STD_BANDS[0][1] else "info"
            out.append(Reading(f"{name.lower()}_weight_std", f"{name} weight std", s,
                               band(s, WEIGHT_STD_BANDS),
                               f"{name} weights spread {_fmt(s)} across queries (~0.01 learnt "
                               "nothing, 0.15-0.17 good, ~0.3 extreme).", sev))


def _clamp_reading(out: list[Reading], run: RunSummary, d: DebugSummary) -> None:
    bev_max, cam_max = map_maxima(run)
    clamp, src = renderer_clamp(run)
    if cam_max is None or clamp is None:
        return
    detail = {"camera_map_max": cam_max, "bev_map_max": bev_max, "clamp": clamp,
              "clamp_source": src}
    if cam_max > clamp * 1.001:
        out.append(Reading(
            "camera_map_clamp", "camera map max vs clamp", cam_max, "above the clamp",
            f"camera weight maps reach {cam_max:.2f} under a {clamp:g} clamp ({src}) while BEV "
            f"maps peak at {_fmt(bev_max, 2)}: the perspective path is not clamped (the "
            "unclamped perspective path of the old renderer, Q26), so camera features get gains "
            "far above the configured limit.", "warning", detail))
    else:
        out.append(Reading("camera_map_clamp", "camera map max vs clamp", cam_max, "within the clamp",
                           f"camera weight maps peak at {cam_max:.2f}, within the {clamp:g} clamp "
                           f"({src}).", "info", detail))


def _bias_readings(out: list[Reading], row: dict, d: DebugSummary) -> None:
    scale = row.get("scale.value")
    if scale is not None:
        lo, hi = SCALE_NORMAL
        name = "normal" if lo <= scale <= hi else (
            "alarm" if scale > SCALE_ALARM[1] or scale < SCALE_ALARM[0] else "outside normal")
        values = {b.value("scale", "value") for b in d.kept if b.kind == "bias_monitor"}
        stuck = len(values) == 1 and d.by_kind.get("bias_monitor", 0) > 1
        msg = f"bias scale {scale:.4f} at call {row['counter']} (normal 1.0-4.0, alarm > 4.5 or < 0.55)"
        if stuck:
            msg += "; it never moves across the prints (stuck: no gradient reaches it?)"
        out.append(Reading("bias_scale", "bias scale", scale, name, msg + ".",
                           "warning" if name != "normal" or stuck else "info"))
    _weight_readings(out, row, "lidar", "camera")
    pl = row.get("preference.prefer_lidar")
    if pl is not None:
        lo, hi = PREFERENCE_COLLAPSE
        collapsed = pl > hi or pl < lo
        out.append(Reading("modality_preference", "share of queries preferring LiDAR", pl,
                           "single-modality collapse" if collapsed else "mixed",
                           f"{100 * pl:.1f}% of queries prefer LiDAR, "
                           f"{100 * (row.get('preference.prefer_camera') or 0):.1f}% camera, "
                           f"{100 * (row.get('preference.balanced') or 0):.1f}% within 0.2.",
                           "warning" if collapsed else "info"))
    nz = row.get("ratios.near_zero")
    if nz is not None:
        out.append(Reading(
            "bias_near_zero", "near-zero share of the bias", nz, "by construction",
            f"{100 * nz:.1f}% of bias entries are near zero: the print counts all B*Nq*F entries, "
            "out-of-window zeros included (Q11), so the notes' 5-15% range cannot apply; it does "
            "not mean AQR failed.", "info"))


# ---------------------------------------------------------------- log-level findings


def log_findings(run: RunSummary) -> list[Finding]:
    """NaN grad_norm, non-finite or spiking losses, memory growth, cut or unread lines."""
    t = run.train
    out: list[Finding] = []
    if t.nan_grad_norm_count:
        only_first = t.nan_grad_norm_count == 1 and t.first is not None and \
            t.nan_grad_norm == [t.first.iter]
        out.append(Finding(
            "LOG-NAN-GRAD", "info" if only_first else "warning",
            f"grad_norm is nan in {t.nan_grad_norm_count} of {t.records} records (iterations "
            f"{', '.join(map(str, t.nan_grad_norm[:10]))}{' ...' if t.nan_grad_norm_count > 10 else ''})"
            + (": only the first record, typical of fp16 loss scaling finding its range."
               if only_first else ": steps with a non-finite gradient norm were clipped "
                                  "or skipped."),
            {"count": t.nan_grad_norm_count, "iters": t.nan_grad_norm}))
    if t.nonfinite_loss_count:
        out.append(Finding("LOG-NONFINITE-LOSS", "error",
                           f"the total loss is nan/inf in {t.nonfinite_loss_count} records.",
                           {"count": t.nonfinite_loss_count}))
    if t.spike_count:
        s = t.spikes[0]
        out.append(Finding(
            "LOG-LOSS-SPIKE", "warning",
            f"{t.spike_count} loss spike(s): e.g. iteration {s['iter']} loss {s['loss']:.4f} "
            f"against a recent median of {s['recent_median']:.4f}.",
            {"count": t.spike_count, "spikes": t.spikes}))
    if t.memory_peak is not None and t.memory_early is not None and t.last is not None \
            and _finite(t.last.memory):
        growth = t.last.memory - t.memory_early
        if growth > max(500.0, 0.05 * t.memory_early):
            out.append(Finding(
                "LOG-MEMORY-GROWTH", "warning",
                f"memory grew from {t.memory_early:.0f} MB (first records) to "
                f"{t.last.memory:.0f} MB (last record): a leak or growing buffers.",
                {"early_mb": t.memory_early, "last_mb": t.last.memory, "peak_mb": t.memory_peak}))
    out += _bias_scale_health(run)
    if run.skipped["count"]:
        out.append(Finding(
            "LOG-SKIPPED", "info",
            f"{run.skipped['count']} line(s) looked like records but could not be read: "
            + ", ".join(f"{k} ({v})" for k, v in run.skipped["reasons"].items()) + ".",
            dict(run.skipped["reasons"])))
    if run.debug.incomplete:
        out.append(Finding("LOG-DEBUG-CUT", "info",
                           f"{run.debug.incomplete} AQR debug print(s) were cut (interleaved "
                           "output or end of file); their missing values are absent.",
                           {"count": run.debug.incomplete}))
    return sort_findings(out)


def _bias_scale_health(run: RunSummary) -> list[Finding]:
    """The bias-health rules of ``render-weights`` on the last printed scale (new scheme)."""
    rows = run.debug.per_forward("bias_monitor")
    if not rows or rows[-1].get("scale.value") is None:
        return []
    last = next(b for b in reversed(run.debug.kept) if b.kind == "bias_monitor")
    sc = last.sections.get("scale", {})
    init = None
    if run.config is not None:
        item = run.config.attention_bias_config.get("bias_scale")
        init = item.value if item is not None and isinstance(item.value, (int, float)) else None
    values = {b.value("scale", "value") for b in run.debug.kept if b.kind == "bias_monitor"}
    lo = sc.get("min") if isinstance(sc.get("min"), float) else 0.5
    hi = sc.get("max") if isinstance(sc.get("max"), float) else 5.0
    found = scale_health(rows[-1]["scale.value"], raw=rows[-1]["scale.value"],
                         learnable=bool(sc.get("learnable", True)), min_scale=lo, max_scale=hi,
                         init=init, trained=len(values) == 1 and len(run.debug.kept) > 1)
    return [Finding(f["id"], f["severity"], f["message"] + " (last debug print)", f["detail"])
            for f in found]


# ---------------------------------------------------------------- runs side by side


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
    return a - b if _finite(a) and _finite(b) else None


def compare(run: RunSummary, base: RunSummary) -> Comparison:
    rv, bv = run.last_val, base.last_val
    rm = rv.metrics if rv else {}
    bm = bv.metrics if bv else {}
    classes = list(dict.fromkeys([*(bv.per_class_ap if bv else {}), *(rv.per_class_ap if rv else {})]))
    pc = {c: _delta((rv.per_class_ap if rv else {}).get(c), (bv.per_class_ap if bv else {}).get(c))
          for c in classes}
    rt, bt = run.train.time_median, base.train.time_median
    ratio = rt / bt if _finite(rt) and _finite(bt) and bt else None
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
