"""The streaming fold: :func:`summarize_log` reads a log's events into a :class:`RunSummary`.

Counts, running sums, a time histogram for the exact median, and series thinned by
:class:`Thinned` to a fixed number of points, so memory does not grow with the file.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter, deque
from pathlib import Path
from typing import Any

from aqr_cli.logs.analysis.config_quirks import config_quirks
from aqr_cli.logs.analysis.readings import aqr_readings
from aqr_cli.logs.analysis.run_findings import log_findings
from aqr_cli.logs.analysis.summary import (
    DEBUG_BLOCKS_KEPT,
    HEADLINE,
    MAIN_LOSSES,
    MAX_EVENTS_LISTED,
    MAX_LOSS_KEYS,
    MAX_VAL,
    NUSCENES_CLASSES,
    SERIES_POINTS,
    DebugSummary,
    RunSummary,
    Thinned,
    TrainSummary,
    ValSummary,
    is_finite,
)
from aqr_cli.logs.parse import LogFormatError, LogParser
from aqr_cli.logs.records import (
    ConfigText,
    DebugBlock,
    HeaderItem,
    ModelParts,
    TrainRecord,
    ValRecord,
)

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


class _TrainFold:
    """The training records folded one at a time into a :class:`TrainSummary`."""

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
        self._position(r)
        self._timing(r)
        self._health(r)
        self._keys(r)
        point = {"x": r.global_iter(s.iters_per_epoch or self.inferred_per_epoch), "epoch": r.epoch, "iter": r.iter,
                 "loss": r.loss, "time": r.time, "data_time": r.data_time, "memory": r.memory,
                 "grad_norm": r.grad_norm, "lr": r.lr}
        point.update({k: r.losses[k] for k in MAIN_LOSSES if k in r.losses})
        self.series.add(point)
        s.last = r

    def _position(self, r: TrainRecord) -> None:
        """Records, restarts, iterations per epoch and the epochs seen."""
        s = self.s
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

    def _timing(self, r: TrainRecord) -> None:
        s = self.s
        if s.first is None:
            s.first = r
        elif is_finite(r.time):
            # the first record carries start-up (data loader workers, cudnn autotune)
            self.time_counts[round(r.time, 4)] += 1
            self.time_sum += r.time
            self.time_n += 1
            if is_finite(r.data_time):
                self.data_counts[round(r.data_time, 4)] += 1

    def _health(self, r: TrainRecord) -> None:
        """Memory, NaN gradient norms, non-finite losses and loss spikes."""
        s = self.s
        if is_finite(r.memory):
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

    def _keys(self, r: TrainRecord) -> None:
        for k in r.losses:
            if k not in self.loss_keys and len(self.loss_keys) < MAX_LOSS_KEYS:
                self.loss_keys[k] = None
        for k in r.extra:
            if k not in self.extra_keys and len(self.extra_keys) < MAX_LOSS_KEYS:
                self.extra_keys[k] = None

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


class _EventFold:
    """Every event of one log folded: the training fold, validations, debug prints, header,
    printed config and model parts."""

    def __init__(self):
        self.header: dict[str, Any] = {}
        self.train = _TrainFold()
        self.vals: list[ValSummary] = []
        self.debug = DebugSummary()
        self.kept = Thinned(DEBUG_BLOCKS_KEPT)
        self.config_text: ConfigText | None = None
        self.parts: list[str] | None = None

    def add(self, ev) -> None:
        if isinstance(ev, TrainRecord):
            self.train.add(ev)
        elif isinstance(ev, ValRecord):
            if len(self.vals) >= MAX_VAL:
                self.vals.pop(0)
            self.vals.append(val_summary(ev))
        elif isinstance(ev, DebugBlock):
            self._debug(ev)
        elif isinstance(ev, HeaderItem):
            _header_fold(self.header, ev)
        elif isinstance(ev, ConfigText):
            if self.config_text is None:
                self.config_text = ev
        elif isinstance(ev, ModelParts):
            self.parts = list(ev.parts)

    def _debug(self, ev: DebugBlock) -> None:
        debug = self.debug
        debug.blocks += 1
        debug.incomplete += not ev.complete
        debug.by_kind[ev.kind] = debug.by_kind.get(ev.kind, 0) + 1
        counters = debug.counters.setdefault(ev.kind, {})
        if ev.counter in counters or len(counters) < 100_000:
            counters[ev.counter] = counters.get(ev.counter, 0) + 1
        self.kept.add(ev)


def summarize_log(path: str | os.PathLike) -> RunSummary:
    """Read one log (streaming) into a :class:`RunSummary`.

    Raises :class:`LogFormatError` for files that are no log, and for logs without any training
    record, validation record or AQR debug print.
    """
    parser = LogParser(path)
    fold = _EventFold()
    for ev in parser.events():
        fold.add(ev)
    t, vals, debug, header = fold.train.finish(), fold.vals, fold.debug, fold.header
    if not (t.records or vals or debug.blocks):
        raise LogFormatError(
            f"{path}: no training records, validation metrics or AQR debug prints found "
            f"({parser.lines} lines read)", "expected an mmcv/mmengine training log or *.log.json")
    debug.kept, debug.stride = fold.kept.items, fold.kept.stride
    p = Path(path)
    cfg, cfg_findings, cfg_notes, parsed = config_quirks(fold.config_text, fold.parts, p.name)
    _header_from_config(header, parsed)
    notes = cfg_notes + _notes(fold.config_text, header, t, debug)
    skipped = {"count": sum(parser.skipped.values()), "reasons": dict(parser.skipped),
               "examples": parser.examples, "decode_errors": parser.decode_errors,
               "carriage_returns": parser.carriage_returns, "ansi_lines": parser.ansi_lines}
    run = RunSummary(
        path=os.fspath(path), name=p.name, format=parser.format, size_bytes=parser.size_bytes,
        lines=parser.lines, header=header,
        config_text=fold.config_text.text if fold.config_text else None, config=cfg,
        config_findings=cfg_findings, model_parts=fold.parts, train=t, val=vals, debug=debug,
        findings=[], skipped=skipped, notes=notes)
    debug.readings = aqr_readings(run)
    run.findings = log_findings(run)
    return run


def _notes(config_text: ConfigText | None, header: dict[str, Any], t: TrainSummary,
           debug: DebugSummary) -> list[str]:
    """What the reader of a summary should know about how the log was read."""
    notes = []
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
    return notes


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


