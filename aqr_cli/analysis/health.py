"""Attention-bias health against the design notes' normal ranges (spec 10.1 item 6).

One table, :data:`BANDS`, holds every range with its source; the README's table is generated
from it (``tests/test_health.py`` keeps the two equal). A value outside its range becomes a
finding with the band it left.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass


@dataclass(frozen=True)
class Band:
    """A normal range ``[low, high]`` of one reading and what leaving it means."""

    key: str
    what: str
    low: float
    high: float
    alarm_low: float | None = None     # below: a warning instead of an info
    alarm_high: float | None = None    # above: a warning instead of an info
    alarm_text: str = ""
    source: str = "design notes (spec 10.1 item 6)"

    def text(self) -> str:
        pct = self.key != "scale"
        fmt = (lambda v: f"{100 * v:g}%") if pct else (lambda v: f"{v:g}")
        out = f"{fmt(self.low)}-{fmt(self.high)}"
        alarms = []
        if self.alarm_low is not None:
            alarms.append(f"< {fmt(self.alarm_low)}")
        if self.alarm_high is not None:
            alarms.append(f"> {fmt(self.alarm_high)}")
        if alarms:
            out += f" (alarm {' or '.join(alarms)}{': ' + self.alarm_text if self.alarm_text else ''})"
        return out


BANDS = (
    Band("scale", "learned bias scale (effective)", 1.0, 4.0, alarm_low=0.55, alarm_high=4.5),
    Band("positive", "in-window share of positive bias (b > 0)", 0.40, 0.60),
    Band("strong", "in-window share of strong bias (|b| > 2)", 0.10, 0.30, alarm_high=0.50,
         alarm_text="unstable"),
    Band("near_zero", "in-window share of near-zero bias (|b| < 0.1)", 0.05, 0.15, alarm_high=0.50,
         alarm_text="AQR failed"),
)
BOUND_MARGIN = (1.1, 0.9)  # upstream's debug print: warn below 1.1 x min or above 0.9 x max


def _finding(fid: str, severity: str, message: str, band: str | None = None, value=None) -> dict:
    """A finding in the schema of ``aqr_cli.analysis.findings.Finding.to_dict``."""
    return {"id": fid, "severity": severity, "message": message,
            "detail": {"band": band, "value": value}}


def scale_health(effective: float | None, *, raw: float | None, learnable: bool, min_scale: float,
                 max_scale: float, init: float | None, trained: bool) -> list[dict]:
    """Findings on a learned bias scale: near its clamp bounds, outside the notes' range, stuck."""
    if effective is None or not math.isfinite(effective):
        return []
    out = []
    band = BANDS[0]
    if learnable and effective > BOUND_MARGIN[1] * max_scale:
        out.append(_finding("BIAS_SCALE_NEAR_MAX", "warning",
                            f"bias scale {effective:.4f} is above 0.9 x max_scale ({max_scale:g}): the "
                            "clamp will soon stop it (upstream warns at this point)",
                            f"< {BOUND_MARGIN[1] * max_scale:g}", effective))
    elif learnable and effective < BOUND_MARGIN[0] * min_scale:
        out.append(_finding("BIAS_SCALE_NEAR_MIN", "warning",
                            f"bias scale {effective:.4f} is below 1.1 x min_scale ({min_scale:g}): the "
                            "bias is being switched off", f"> {BOUND_MARGIN[0] * min_scale:g}", effective))
    if effective > (band.alarm_high or math.inf) or effective < (band.alarm_low or -math.inf):
        out.append(_finding("BIAS_SCALE_RANGE", "warning", f"bias scale {effective:.4f} is outside the "
                            f"notes' alarm limits", band.text(), effective))
    elif not band.low <= effective <= band.high:
        out.append(_finding("BIAS_SCALE_RANGE", "info", f"bias scale {effective:.4f} is outside the "
                            "notes' normal range", band.text(), effective))
    if trained and learnable and init is not None and raw is not None \
            and struct.pack("f", raw) == struct.pack("f", init):  # bit-equal in float32
        out.append(_finding("BIAS_SCALE_STUCK", "warning",
                            f"bias scale is exactly its initial value {init:g} in a trained checkpoint: "
                            "it got no gradient (the bias may never reach attention, see Q15)",
                            f"!= {init:g}", raw))
    return out


def share_health(in_window: dict) -> list[dict]:
    """Findings on the in-window positive / strong / near-zero shares (``in_window['overall']``)."""
    ov = in_window.get("overall") or {}
    values = {"positive": ov.get("positive"), "near_zero": ov.get("near_zero")}
    sp, sn = ov.get("strong_positive"), ov.get("strong_negative")
    values["strong"] = None if sp is None or sn is None else sp + sn
    out = []
    for band in BANDS[1:]:
        v = values.get(band.key)
        if v is None or not math.isfinite(v):
            continue
        if band.alarm_high is not None and v > band.alarm_high:
            out.append(_finding(f"BIAS_{band.key.upper()}", "warning",
                                f"{band.what} is {100 * v:.1f}%, above {100 * band.alarm_high:g}%"
                                + (f" ({band.alarm_text})" if band.alarm_text else ""), band.text(), v))
        elif not band.low <= v <= band.high:
            side = "below" if v < band.low else "above"
            out.append(_finding(f"BIAS_{band.key.upper()}", "info",
                                f"{band.what} is {100 * v:.1f}%, {side} the normal "
                                f"{100 * band.low:g}-{100 * band.high:g}%", band.text(), v))
    return out


def readme_table() -> str:
    """The README's table of bias-health bands, generated from :data:`BANDS`."""
    lines = ["| reading | normal range | source |", "|---|---|---|"]
    for b in BANDS:
        lines.append(f"| {b.what} | {b.text()} | {b.source} |")
    lines.append(f"| learned scale vs its clamp bounds | {BOUND_MARGIN[0]:g} x min to "
                 f"{BOUND_MARGIN[1]:g} x max | upstream debug print (spec 5.3) |")
    lines.append("| learned scale in a trained checkpoint | not exactly its initial value | "
                 "design notes (\"stuck at 2.5000\") |")
    return "\n".join(lines)
