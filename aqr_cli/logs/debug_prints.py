"""The AQR debug prints in a training log, line by line: upstream's old-scheme modulation print
(``AQR Debug Info``), the bias monitor of spec 5.3 and the HEAD head's bias debug print."""

from __future__ import annotations

import re
from typing import Any

from aqr_cli.logs.records import DebugBlock

_KV = re.compile(r"^(\s+)([A-Za-z_][\w.\-]*):\s*(.*)$")


def number(text: str) -> float | None:
    """``float(text)``, or None when it is not a number."""
    try:
        return float(text)
    except ValueError:
        return None


def feed_debug(block: dict[str, Any], text: str) -> bool:
    """Add one line to an open AQR debug block (``block['event']``); True when it closes it."""
    ev: DebugBlock = block["event"]
    if not text.strip():
        return False
    if ev.kind == "bias_monitor":
        if re.match(r"^\s*={20,}\s*$", text):
            block["ended"] = True
            return block["seen"] > 0
        block["seen"] += _bias_monitor_line(ev, block, text)
        return False
    if ev.kind == "head_bias":
        m = re.search(r"(LiDAR Weights|Camera Weights|Attention Bias):\s*(.*)$", text)
        if m is None:
            return not text[:1].isspace()
        name = {"LiDAR Weights": "lidar", "Camera Weights": "camera",
                "Attention Bias": "bias"}[m.group(1)]
        vals = {k: number(v) for k, v in re.findall(r"(\w+)=([-+\w.]+)", m.group(2))}
        ev.sections[name] = {k: v for k, v in vals.items() if v is not None}
        block["seen"] += 1
        block["ended"] = len(ev.sections) >= 3
        return False
    m = _KV.match(text)
    if m is None:
        # chatter of another rank (warnings, progress) does not end the block
        return False
    indent, key, value = len(m.group(1)), m.group(2), m.group(3).strip()
    if not value:
        block["section"], block["indent"] = key, indent
        ev.sections.setdefault(key, {})
    elif block["section"] is not None and indent > block["indent"]:
        ev.sections[block["section"]][key] = _debug_value(value)
    else:
        block["section"] = None
        ev.sections.setdefault("_", {})[key] = _debug_value(value)
    block["seen"] += 1
    block["ended"] = "modulation_effect_pers" in ev.sections and \
        "relative_change" in ev.sections["modulation_effect_pers"]
    return False


def _debug_value(text: str) -> Any:
    v = number(text)
    if v is not None:
        return v
    m = re.search(r"\[([\d,\s]+)\]", text)
    if m:
        return [int(x) for x in m.group(1).split(",") if x.strip()]
    return text


def _pct(text: str) -> float | None:
    v = number(text)
    return None if v is None else v / 100.0


def _bias_monitor_line(ev: DebugBlock, block: dict[str, Any], text: str) -> int:
    """Read one line of the spec 5.3 print into ``ev``; 1 if it held a value."""
    s = text.strip()
    if m := re.search(r"(Learnable|Fixed) Bias Scale:\s*(\S+)(?:\s*\(range:\s*\[([^,\]]+),\s*([^\]]+)\]\))?", s):
        sec = ev.sections.setdefault("scale", {})
        sec["learnable"] = m.group(1) == "Learnable"
        val = number(m.group(2))
        if val is not None:
            sec["value"] = val
        if m.group(3):
            sec["min"], sec["max"] = number(m.group(3)), number(m.group(4))
        return 1
    if m := re.search(r"Gradient:\s*(\S+)", s):
        ev.sections.setdefault("scale", {})["grad"] = number(m.group(1))
        return 1
    if m := re.search(r"requires_grad:\s*(True|False)", s):
        ev.sections.setdefault("scale", {})["requires_grad"] = m.group(1) == "True"
        return 1
    if "WARNING" in s:
        ev.warnings.append(re.sub(r"^\W+", "", s))
        return 1
    if "Bias Statistics" in s:
        block["group"] = "bias"
        return 0
    if "Input Weights" in s:
        block["group"] = "weights"
        return 0
    if m := re.search(r"(Overall|BEV|Camera|LiDAR)\s*-\s*Mean:\s*(\S+?),\s*Std:\s*(\S+)", s):
        name = m.group(1).lower()
        section = (f"bias_{name}" if block["group"] == "bias" else name) if name != "overall" \
            else "bias"
        if name == "bev":
            section = "bias_bev"
        block["row"] = section
        ev.sections.setdefault(section, {}).update(mean=number(m.group(2)), std=number(m.group(3)))
        return 1
    if m := re.search(r"Range:\s*\[\s*([^,\]]+),\s*([^\]]+)\]", s):
        if block["row"]:
            ev.sections.setdefault(block["row"], {}).update(min=number(m.group(1)),
                                                            max=number(m.group(2)))
        return 1
    ratios = ev.sections.setdefault("ratios", {})
    if m := re.search(r"Positive:\s*([\d.]+)%\s*\|\s*Negative:\s*([\d.]+)%", s):
        ratios.update(positive=_pct(m.group(1)), negative=_pct(m.group(2)))
        return 1
    if m := re.search(r"Strong\+[^:]*:\s*([\d.]+)%\s*\|\s*Strong-[^:]*:\s*([\d.]+)%", s):
        ratios.update(strong_positive=_pct(m.group(1)), strong_negative=_pct(m.group(2)))
        return 1
    if m := re.search(r"Near-zero[^:]*:\s*([\d.]+)%", s):
        ratios["near_zero"] = _pct(m.group(1))
        return 1
    if m := re.search(r"(Prefer LiDAR|Prefer Camera|Balanced):\s*([\d.]+)%", s):
        key = {"Prefer LiDAR": "prefer_lidar", "Prefer Camera": "prefer_camera",
               "Balanced": "balanced"}[m.group(1)]
        ev.sections.setdefault("preference", {})[key] = _pct(m.group(2))
        return 1
    return 0
