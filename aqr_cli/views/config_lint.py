"""Text views of a config lint (:class:`aqr_cli.analysis.config_lint.ConfigLintReport`).

Stacked ``key  value`` blocks wrapped at 80 columns with a hanging indent, never wide tables: a
value longer than a line wraps, a single word longer than a line (a path) is kept whole, so no
value is ever cut. Each function returns the text; the command decides where it goes.
"""

from __future__ import annotations

import os
import textwrap
from functools import partial
from typing import Any

WIDTH = 80  # the default; the command passes the console width (80 when piped)
_SOURCES = {"default": "CmtHead default", "unparsed": "not parsed", "missing": "not set"}


def _wrap_at(key: str, value: str, *, indent: int = 0, key_width: int = 12,
          width: int = WIDTH) -> list[str]:
    """``key`` padded to ``key_width``, ``value`` wrapped under it; nothing is cut."""
    width = max(40, width)
    lead = " " * indent + key.ljust(key_width)
    if len(lead) > indent + key_width:
        lead += " "
    hang = " " * len(lead) if len(lead) < width // 2 else " " * (indent + 4)
    out: list[str] = []
    for i, part in enumerate(str(value).split("\n")):
        lines = textwrap.wrap(part, width, initial_indent=lead if i == 0 else hang,
                              subsequent_indent=hang, break_long_words=False,
                              break_on_hyphens=False) or [(lead if i == 0 else hang).rstrip()]
        out += lines
    return [line.rstrip() for line in out]


def _where(s, this: str) -> str:
    if s.source in _SOURCES:
        return _SOURCES[s.source]
    line = "?" if s.line is None else s.line
    if s.file is None:
        return "this file" if s.source == "file" else "a _base_ file"
    if os.path.abspath(s.file) == os.path.abspath(this):
        return f"line {line}"
    return f"{os.path.basename(s.file)}:{line}"


def _value(value: Any) -> str:
    if isinstance(value, dict) and "transformerlayers" in value:
        return _encoder_summary(value)
    if isinstance(value, str):
        return repr(value)
    return str(value)


def _encoder_summary(enc: dict) -> str:
    layers = enc.get("transformerlayers")
    layer = layers[0] if isinstance(layers, list) and layers else layers
    attn = layer.get("attn_cfgs") if isinstance(layer, dict) else None
    attn = attn if isinstance(attn, list) else [attn]
    types = ", ".join(str(a.get("type")) for a in attn if isinstance(a, dict)) or "?"
    heads = ", ".join(str(a.get("num_heads")) for a in attn if isinstance(a, dict) and "num_heads" in a)
    return (f"{enc.get('type')}, {enc.get('num_layers', '?')} layer(s) of "
            f"{layer.get('type') if isinstance(layer, dict) else '?'} with {types}"
            + (f" ({heads} heads)" if heads else "") + "; full dict in --json")


def _shape(v) -> str:
    return "?" if not v else "x".join("?" if x is None else str(x) for x in v)


def _unbuilt(r) -> str:
    return " (not built while AQR is off)" if r.aqr.state == "off" else ""


def _windows(r) -> str:
    s = r.shapes
    parts = []
    if s.aqr_window_sizes and len(s.aqr_window_sizes) == 2:
        c, lidar = s.aqr_window_sizes
        if isinstance(c, int) and isinstance(lidar, int):
            parts.append(f"AQR {s.aqr_window_sizes} [camera, lidar]: LAM "
                         f"{2 * (c // 2) + 1}x{2 * (c // 2) + 1} camera, "
                         f"{2 * (lidar // 2) + 1}x{2 * (lidar // 2) + 1} LiDAR")
        else:
            parts.append(f"AQR {s.aqr_window_sizes}")
    if s.bias_window is not None:
        ws = s.bias_window
        lo, hi = (-ws // 2 + 1, ws // 2) if ws % 2 == 0 else (-(ws // 2), ws // 2)
        parts.append(f"bias window {ws} (offsets {lo}..{hi} at HEAD)")
    return ("; ".join(parts) or "not set") + _unbuilt(r)


def _attention(r) -> list[str]:
    out = []
    for label, name in (("encoder", "attention.encoder"), ("decoder self", "attention.decoder_self"),
                        ("decoder cross", "attention.decoder_cross")):
        s = r.setting(name)
        if label == "encoder" and _unbuilt(r):
            out.append("encoder - (no AQR encoder while AQR is off)")
            continue
        value = s.value if s is not None else None
        if isinstance(value, list):
            value = ", ".join(map(str, value))
        out.append(f"{label} {value or '-'} ({_where(s, r.path)})" if s is not None else label)
    return out


def _finding_ids(findings) -> str:
    from aqr_cli.analysis.findings import finding_ids

    return finding_ids(findings, empty="none")


def _aqr_lines(r, indent: int = 0, width: int = WIDTH) -> list[str]:
    wrap = partial(_wrap_at, width=width)
    a = r.aqr
    head = f"{a.state}" + ("" if a.ok else " (PROBLEM)")
    out = wrap("AQR", f"{head}: {a.message}", indent=indent)
    if not a.ok and a.lines:
        out += wrap("lines", "\n".join(a.lines), indent=indent)
    return out


def render_config(r, width: int = WIDTH) -> str:
    """The full view of one config lint."""
    wrap = partial(_wrap_at, width=width)
    out = [f"{r.name}  config"]
    out += wrap("file", r.path)
    if len(r.files) > 1:
        out += wrap("_base_", ", ".join(os.path.basename(f) for f in r.files[1:]))
    out += _aqr_lines(r, width=width)
    out += wrap("attention", "\n".join(_attention(r)))
    det = r.detector_shapes
    out += wrap("shapes", f"AQR maps BEV {_shape(r.shapes.bev)}, camera {_shape(r.shapes.pers)}"
                 f"{_unbuilt(r)}; detector BEV {_shape(det.get('bev'))}, camera "
                 f"{_shape(det.get('pers'))}")
    out += wrap("windows", _windows(r))
    cfg = r.config
    data = [f"train: {', '.join(cfg.train_ann_files) or '-'}",
            f"val: {', '.join(cfg.val_ann_files) or '-'}"]
    if cfg.val_in_train:
        data.append("the val infos are among the training files (Q34)")
    out += wrap("data", "\n".join(data))
    bad = [c for c in r.checks if c.status != "ok"]
    out += wrap("checks", f"{sum(c.status == 'ok' for c in r.checks)} ok"
                 + "".join(f"\n{c.status}: {c.message}" for c in bad))
    out += ["", "AQR settings (merged value, where it comes from)"]
    groups: dict[str, list] = {}
    for s in r.settings:
        group, _, key = s.setting.rpartition(".")
        groups.setdefault(group or "detector", []).append((key, s))
    for group, rows in groups.items():
        out.append(f"  {group}")
        for key, s in rows:
            out += wrap(key, f"{_value(s.value)}  ({_where(s, r.path)})", indent=4, key_width=24)
    out += ["", "Findings (spec section 9; config alone)"]
    if not r.findings:
        out.append("  none")
    for f in r.findings:
        out += wrap(f.id, f"{f.severity}: {f.message}", indent=2, key_width=6)
    out += ["", "Not checked without a checkpoint, rig or dump"]
    for n in r.not_run:
        out += wrap(n["id"], ("partly: " if n["scope"] == "part" else "") + f"needs {n['needs']}",
                     indent=2, key_width=10)
    for note in r.notes:
        out += wrap("note", note)
    return "\n".join(out)


def render_rows(reports, width: int = WIDTH) -> str:
    """One stacked block per config (several configs side by side)."""
    wrap = partial(_wrap_at, width=width)
    out: list[str] = []
    for r in reports:
        if out:
            out.append("")
        out.append(f"{r.name}  config")
        out += _aqr_lines(r, indent=2, width=width)
        out += wrap("attention", "; ".join(_attention(r)), indent=2)
        out += wrap("maps", f"BEV {_shape(r.shapes.bev)}, camera {_shape(r.shapes.pers)}"
                     + _unbuilt(r), indent=2)
        out += wrap("windows", _windows(r), indent=2)
        out += wrap("findings", _finding_ids(r.findings), indent=2)
    return "\n".join(out)


def render_diff(diff, width: int = WIDTH) -> str:
    """The AQR settings that differ between files, one block per setting, files numbered."""
    wrap = partial(_wrap_at, width=width)
    out = [f"AQR settings that differ between {len(diff.paths)} files "
           f"({len(diff.settings)} differ, {diff.same} equal and not shown)"]
    for i, path in enumerate(diff.paths, 1):
        out += wrap(f"[{i}]", path, indent=2, key_width=5)
    if not diff.settings:
        out.append("none: the merged AQR settings are the same")
    for s in diff.settings:
        out.append(s.setting)
        for i, v in enumerate(s.values, 1):
            if v["source"] in _SOURCES:
                where = _SOURCES[v["source"]]
            elif v.get("file"):
                same = os.path.abspath(v["file"]) == os.path.abspath(v["path"])
                where = f"line {v['line']}" if same else f"{os.path.basename(v['file'])}:{v['line']}"
            else:
                where = "its config"
            out += wrap(f"[{i}]", f"{_value(v['value'])}  ({where})", indent=2, key_width=5)
    return "\n".join(out)
