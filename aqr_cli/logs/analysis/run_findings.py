"""Log-level findings: NaN gradients, non-finite or spiking losses, memory growth, the learned
bias scale, and lines that could not be read."""

from __future__ import annotations

from aqr_cli.analysis.findings import Finding, sort_findings
from aqr_cli.analysis.health import scale_health
from aqr_cli.logs.analysis.summary import RunSummary, is_finite

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
            and is_finite(t.last.memory):
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


