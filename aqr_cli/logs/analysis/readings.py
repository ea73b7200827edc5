"""AQR readings of a log's debug prints: weights, the renderer clamp, relative change and the
bias, each read against the researchers' bands (spec 10.1)."""

from __future__ import annotations

import math

from aqr_cli.logs.analysis.summary import (
    PREFERENCE_COLLAPSE,
    RELATIVE_CHANGE_BANDS,
    SCALE_ALARM,
    SCALE_NORMAL,
    WEIGHT_MEAN_BANDS,
    WEIGHT_STD_BANDS,
    DebugSummary,
    Reading,
    RunSummary,
    band,
)

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


