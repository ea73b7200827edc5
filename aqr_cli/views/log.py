"""Views of log summaries: the ``summary.json`` document, the training-record CSV, plain text.

Text views return lines that fit a given width without cutting a value: key/value blocks wrap
their values at spaces with a hanging indent, and the comparison table puts as many runs side
by side as fit, repeating the row labels for the next group of runs.
"""

from __future__ import annotations

import csv
import math
import textwrap
from typing import IO, Any, Iterable, Sequence

from aqr_cli.logs.analysis import (
    HEADLINE,
    MAIN_LOSSES,
    SMALL_CLASSES,
    Comparison,
    Reading,
    RunSummary,
)
from aqr_cli.logs.parse import LogParser
from aqr_cli.logs.records import TrainRecord
from aqr_cli.views.outputs import Outputs

SUMMARY_JSON = "summary.json"
TRAIN_CSV = "train_records.csv"
FIGURES = {"losses": "losses.png", "cost": "time_memory.png", "per_class": "per_class_ap.png",
           "aqr_debug": "aqr_debug.png"}
CSV_FIXED = ("epoch", "iter", "global_iter", "lr", "time", "data_time", "memory", "loss",
             "grad_norm")


def clean(doc: Any) -> Any:
    """JSON-safe copy: NaN/Inf become null, tuples lists, other objects their ``str``."""
    if isinstance(doc, dict):
        return {str(k): clean(v) for k, v in doc.items()}
    if isinstance(doc, (list, tuple)):
        return [clean(v) for v in doc]
    if isinstance(doc, bool) or doc is None or isinstance(doc, (str, int)):
        return doc
    if isinstance(doc, float):
        return doc if math.isfinite(doc) else None
    return str(doc)


def _record_dict(r: TrainRecord | None) -> dict[str, Any] | None:
    if r is None:
        return None
    return {"epoch": r.epoch, "iter": r.iter, "lr": r.lr, "time": r.time,
            "data_time": r.data_time, "memory": r.memory, "loss": r.loss,
            "grad_norm": r.grad_norm, "losses": dict(r.losses), "extra": dict(r.extra)}


def _reading_dict(x: Reading) -> dict[str, Any]:
    return {"id": x.id, "quantity": x.quantity, "value": x.value, "band": x.band,
            "severity": x.severity, "message": x.message, "detail": dict(x.detail)}


def run_document(run: RunSummary) -> dict[str, Any]:
    """One log as the JSON keys of the issue: header, config, findings, train, val, aqr_debug."""
    t = run.train
    epoch_s = t.epoch_time_s()
    epochs = run.header.get("max_epochs") or (len(t.epochs) or None)
    train = {
        "records": t.records, "duplicates": t.duplicates, "iters_per_epoch": t.iters_per_epoch,
        "epochs_seen": t.epochs, "first_iter": t.first.iter if t.first else None,
        "last": _record_dict(t.last),
        "time_per_iter": {"mean": t.time_mean, "median": t.time_median,
                          "records_used": max(t.records - 1, 0), "excludes_first_record": True},
        "data_time_median": t.data_time_median, "memory_peak": t.memory_peak,
        "estimated_epoch_time_s": epoch_s,
        "estimated_total_time_s": epoch_s * epochs if epoch_s and isinstance(epochs, int) else None,
        "loss_keys": t.loss_keys,
    }
    val = [{"epoch": v.epoch, "iter": v.iter, "line": v.line, "metrics": v.metrics,
            "per_class_ap": v.per_class_ap, "per_class": v.per_class} for v in run.val]
    d = run.debug
    blocks = [{"line": b.line, "kind": b.kind, "counter": b.counter, "order": b.order,
               "complete": b.complete, "warnings": b.warnings,
               "stats": {k: v for k, v in b.sections.items() if k != "_"},
               **({"info": b.sections["_"]} if "_" in b.sections else {})} for b in d.kept]
    aqr_debug = {
        "blocks": d.blocks, "incomplete": d.incomplete, "by_kind": d.by_kind,
        "counters": {k: {str(c): n for c, n in sorted(v.items())} for k, v in d.counters.items()},
        "blocks_listed_every": d.stride, "per_block": blocks,
        "per_forward": {k: d.per_forward(k) for k in d.by_kind},
        "readings": [_reading_dict(x) for x in d.readings],
    }
    return clean({
        "path": run.path, "name": run.name, "format": run.format, "size_bytes": run.size_bytes,
        "lines": run.lines, "aqr": run.has_aqr,
        "header": run.header or None,
        "config": run.config.to_dict() if run.config is not None else None,
        "model_parts": run.model_parts,
        "findings": [f.to_dict() for f in run.config_findings],
        "log_findings": [f.to_dict() for f in run.findings],
        "train": train, "val": val, "aqr_debug": aqr_debug,
        "skipped_lines": run.skipped, "notes": run.notes,
    })


def comparison_dict(c: Comparison) -> dict[str, Any]:
    return clean({"path": c.path, "mAP_delta": c.mAP_delta, "NDS_delta": c.NDS_delta,
                  "tp_deltas": c.tp_deltas, "per_class_ap_delta": c.per_class_ap_delta,
                  "time_per_iter_ratio": c.time_per_iter_ratio, "memory_delta": c.memory_delta,
                  "loss_delta": c.loss_delta})


def summary_document(runs: Sequence[RunSummary], baseline: RunSummary | None,
                     comparisons: Sequence[Comparison]) -> dict[str, Any]:
    """``{runs, baseline, comparison}``: the document of ``--json`` and ``summary.json``."""
    return {"runs": [run_document(r) for r in runs],
            "baseline": baseline.path if baseline is not None else None,
            "comparison": [comparison_dict(c) for c in comparisons]}



def csv_columns(runs: Iterable[RunSummary]) -> list[str]:
    keys: dict[str, None] = {}
    for r in runs:
        for k in (*r.train.loss_keys, *r.train.extra_keys):
            keys[k] = None
    return ["run", *CSV_FIXED, *keys]


def _cell(x: Any) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        return repr(x) if math.isfinite(x) else ("nan" if math.isnan(x) else repr(x))
    return str(x)


def write_train_csv(fh: IO[str], runs: Sequence[RunSummary]) -> int:
    """Every training record of every run as CSV rows (each log re-read, streaming); row count."""
    cols = csv_columns(runs)
    w = csv.writer(fh, lineterminator="\n")
    w.writerow(cols)
    n = 0
    for run in runs:
        last = None
        for ev in LogParser(run.path).events():
            if not isinstance(ev, TrainRecord):
                continue
            if last is not None and (ev.epoch, ev.iter) == last:
                continue  # a duplicate print, as in the summary
            last = (ev.epoch, ev.iter)
            row = {"run": run.name, "epoch": ev.epoch, "iter": ev.iter,
                   "global_iter": ev.global_iter(run.train.iters_per_epoch), "lr": ev.lr,
                   "time": ev.time, "data_time": ev.data_time, "memory": ev.memory,
                   "loss": ev.loss, "grad_norm": ev.grad_norm, **ev.losses, **ev.extra}
            w.writerow([_cell(row.get(c)) for c in cols])
            n += 1
    return n



def f4(x: float | None, d: int = 4) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{d}f}"


def signed(x: float | None, d: int = 4) -> str:
    return "" if x is None or not math.isfinite(x) else f"{x:+.{d}f}"


def kv_lines(pairs: Sequence[tuple[str, str]], width: int) -> list[str]:
    """``key  value`` lines; values wrap at spaces (never inside a word) with a hanging indent."""
    pad = min(max((len(k) for k, _ in pairs), default=0) + 2, 24)
    out: list[str] = []
    for key, value in pairs:
        room = max(20, width - pad)
        lines: list[str] = []
        for part in str(value).split("\n"):
            lines += textwrap.wrap(part, room, break_long_words=False, break_on_hyphens=False) or [""]
        # a word longer than the value column (a path) moves left instead of being cut
        body = [(" " * min(pad, max(0, width - len(ln)))) + ln for ln in lines]
        if len(key) + 2 > pad or len(lines[0]) > room:
            out.append(key)
            out.extend(body)
        else:
            out.append(key.ljust(pad) + lines[0])
            out.extend(body[1:])
    return out


def _secs(s: float | None) -> str:
    if s is None:
        return "n/a"
    h, rem = divmod(int(round(s)), 3600)
    return f"{h}h{rem // 60:02d}m" if h else f"{rem // 60}m{rem % 60:02d}s"


def _header_pairs(run: RunSummary) -> list[tuple[str, str]]:
    h = run.header
    if not h:
        return [("header", "none (the log starts after it)")]
    env = ", ".join(f"{k} {h[k]}" for k in ("torch", "cuda_runtime", "mmcv", "mmdet", "mmdet3d")
                    if h.get(k))
    gpus = "; ".join(f"{len(g['ids'])}x {g['name']}" for g in h.get("gpus", []))
    pairs = [("environment", ", ".join(p for p in (env, gpus) if p) or "not printed")]
    run_facts = [f"{k} {h[k]}" for k in ("exp_name", "work_dir", "seed", "max_epochs",
                                         "load_checkpoint") if h.get(k) is not None]
    if run_facts:
        pairs.append(("run", ", ".join(run_facts)))
    return pairs


def _train_pairs(t) -> list[tuple[str, str]]:
    last = t.last
    if last is None:
        return [("train records", "none")]
    epoch_s = t.epoch_time_s()
    return [
        ("train records", f"{t.records}, iteration {last.iter} of {t.iters_per_epoch or '?'} "
                          f"(epoch {last.epoch})"
                          + (f", {t.duplicates} duplicate prints" if t.duplicates else "")),
        ("last record", f"time {f4(last.time, 3)} s, data_time {f4(last.data_time, 3)} s, "
                        f"memory {f4(last.memory, 0)} MB, lr {last.lr:.3e}" if last.lr is not None else
                        f"time {f4(last.time, 3)} s, memory {f4(last.memory, 0)} MB"),
        ("last losses", f"loss {f4(last.loss)}, grad_norm {f4(last.grad_norm)}, " +
                        ", ".join(f"{k} {f4(last.losses[k])}" for k in MAIN_LOSSES if k in last.losses)),
        ("time/iter", f"median {f4(t.time_median, 3)} s, mean {f4(t.time_mean, 3)} s "
                      "(first record left out)"
                      + (f"; one epoch ~{_secs(epoch_s)}" if epoch_s is not None else "")),
        ("memory peak", f"{f4(t.memory_peak, 0)} MB"),
    ]


def _validation_pairs(v) -> list[tuple[str, str]]:
    if v is None:
        return []
    m = v.metrics
    return [("validation", f"epoch {v.epoch}: " + ", ".join(f"{k} {f4(m.get(k))}" for k in HEADLINE)),
            ("per-class AP", ", ".join(f"{c}{'*' if c in SMALL_CLASSES else ''} {f4(a, 3)}"
                                       for c, a in v.per_class_ap.items()))]


def _debug_pairs(d) -> list[tuple[str, str]]:
    pairs = []
    if d.blocks:
        counters = "; ".join(f"{k}: " + ", ".join(f"#{c} x{n}" for c, n in sorted(v.items())[:12])
                             + (" ..." if len(v) > 12 else "") for k, v in d.counters.items())
        pairs.append(("AQR debug", f"{d.blocks} prints ({counters})"))
    return pairs + [(f"{x.quantity}", f"{f4(x.value, 3)} [{x.band}] {x.message}") for x in d.readings]


def run_lines(run: RunSummary, width: int = 80) -> list[str]:
    """A key/value block for one run."""
    aqr = {True: "yes", False: "no (baseline)", None: "unknown"}[run.has_aqr]
    pairs: list[tuple[str, str]] = [
        ("log", f"{run.path} ({run.format}, {run.lines} lines)"),
        *_header_pairs(run),
        ("AQR", aqr + (f"; model parts: {', '.join(run.model_parts)}" if run.model_parts else "")),
        *_train_pairs(run.train),
        *_validation_pairs(run.last_val),
        *_debug_pairs(run.debug),
        *((f"{f.id} ({f.severity})", f.message) for f in [*run.config_findings, *run.findings]),
    ]
    if run.skipped["count"]:
        pairs.append(("skipped lines", str(run.skipped["count"])))
    return kv_lines(pairs, width)


def _metric_delta(c: Comparison | None, k: str) -> float | None:
    if c is None:
        return None
    return c.mAP_delta if k == "mAP" else c.NDS_delta if k == "NDS" else c.tp_deltas.get(k)


def _class_delta(c: Comparison | None, cls: str) -> float | None:
    return None if c is None else c.per_class_ap_delta.get(cls)


def _final_loss(run: RunSummary | None, k: str) -> float | None:
    last = None if run is None else run.train.last
    return None if last is None else (last.loss if k == "loss" else last.losses.get(k))


def _table_rows(runs: Sequence[RunSummary], baseline: RunSummary | None,
                comps: dict[str, Comparison]) -> list[tuple[str, list[str]]]:
    def cell(run: RunSummary, value: float | None, delta: float | None, d: int = 4) -> str:
        text = f4(value, d)
        return text + (f" ({signed(delta, d)})" if delta is not None and run is not baseline else "")

    rows: list[tuple[str, list[str]]] = [
        (k, [cell(r, r.last_val.metrics.get(k) if r.last_val else None, _metric_delta(comps.get(r.path), k))
             for r in runs]) for k in HEADLINE]
    classes = list(dict.fromkeys(c for r in runs if r.last_val for c in r.last_val.per_class_ap))
    for cls in classes:
        vals = [cell(r, r.last_val.per_class_ap.get(cls) if r.last_val else None,
                     _class_delta(comps.get(r.path), cls), 3) for r in runs]
        rows.append((f"AP {cls}{' *' if cls in SMALL_CLASSES else ''}", vals))
    rows.append(("time/iter s (median)", [_time_cell(r, comps.get(r.path)) for r in runs]))
    rows.append(("memory peak MB", [_memory_cell(r, comps.get(r.path)) for r in runs]))
    for k in ["loss", *MAIN_LOSSES]:
        b = _final_loss(baseline, k)
        vals = []
        for r in runs:
            v = _final_loss(r, k)
            delta = v - b if v is not None and b is not None and math.isfinite(v) and \
                math.isfinite(b) else None
            vals.append(cell(r, v, delta))
        rows.append((f"final {k}", vals))
    return rows


def _memory_cell(r: RunSummary, c: Comparison | None) -> str:
    delta = c.memory_delta if c is not None else None
    return f4(r.train.memory_peak, 0) + (f" ({signed(delta, 0)})" if delta is not None else "")


def _time_cell(r: RunSummary, c: Comparison | None) -> str:
    ratio = c.time_per_iter_ratio if c else None
    return f4(r.train.time_median, 3) + (f" (x{ratio:.2f})" if ratio is not None else "")


def comparison_lines(runs: Sequence[RunSummary], baseline: RunSummary | None,
                     comparisons: Sequence[Comparison], width: int = 80) -> list[str]:
    """The side-by-side table (baseline first), in groups of runs that fit ``width``."""
    comps = {c.path: c for c in comparisons}
    rows = _table_rows(runs, baseline, comps)
    names = [f"run {i + 1}" for i in range(len(runs))]
    out = ["Runs" + (" (deltas against the baseline, run 1)" if baseline is not None else
                     " (no --baseline: no deltas)") + ":"]
    for i, r in enumerate(runs):
        out.extend(kv_lines([(names[i], r.path + (" [baseline]" if r is baseline else ""))], width))
    out.append("* small classes (pedestrian, traffic_cone, bicycle, motorcycle)")
    label_w = max(len(k) for k, _ in rows) + 2
    col_w = max(max(len(v) for _, vals in rows for v in vals), max(len(n) for n in names)) + 2
    per = max(1, (width - label_w) // col_w)
    for start in range(0, len(runs), per):
        idx = range(start, min(start + per, len(runs)))
        out.append("")
        out.append(" " * label_w + "".join(names[i].rjust(col_w) for i in idx))
        for k, vals in rows:
            out.append(k.ljust(label_w) + "".join(vals[i].rjust(col_w) for i in idx))
    return [ln.rstrip() for ln in out]


def log_text(runs: Sequence[RunSummary], baseline: RunSummary | None,
             comparisons: Sequence[Comparison], width: int = 80) -> list[str]:
    """The human report as texts to print in order: one block per run, then (several runs) the
    side-by-side table."""
    out = ["\n".join(run_lines(r, width)) + "\n" for r in runs]
    if len(runs) > 1:
        out.append("\n".join(comparison_lines(runs, baseline, comparisons, width)))
    return out


def log_outputs(runs: Sequence[RunSummary], baseline: RunSummary | None,
                doc: dict) -> tuple[Outputs, list[str]]:
    """(the files of ``--out``: ``summary.json`` (``doc``), the training-record CSV and the
    figures that have data; notes on the figures left out)."""
    import io

    from aqr_cli.plots import logs

    files: dict = {SUMMARY_JSON: doc}
    notes = []
    if any(r.train.records for r in runs):
        text = io.StringIO()
        write_train_csv(text, runs)
        files[TRAIN_CSV] = text.getvalue()
        files[FIGURES["losses"]] = logs.loss_figure(runs, baseline)
        files[FIGURES["cost"]] = logs.cost_figure(runs, baseline)
    if any(r.last_val is not None for r in runs):
        files[FIGURES["per_class"]] = logs.per_class_figure(runs, baseline)
    fig = logs.debug_figure(runs, baseline)
    if fig is not None:
        files[FIGURES["aqr_debug"]] = fig
    else:
        notes.append(f"no AQR debug prints in any log: {FIGURES['aqr_debug']} not written")
    return Outputs(files=files, document=doc), notes
