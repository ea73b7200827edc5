"""The AQR settings several configs (or checkpoints' configs) disagree on."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aqr_cli.analysis.config_lint.lint import ConfigLintReport
from aqr_cli.io.config_parse import AQR_COMPONENTS, jsonable

def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping) and value:
        for k, v in value.items():
            _flatten(f"{prefix}.{k}", v, out)
    else:
        out[prefix] = jsonable(value)


@dataclass
class SettingDiff:
    """One AQR setting whose merged value differs between configs: one entry per config."""

    setting: str
    values: list[dict]  # {path, value, source, file, line}

    def to_dict(self) -> dict[str, Any]:
        return {"setting": self.setting, "values": list(self.values)}


@dataclass
class ConfigDiff:
    """The AQR settings that differ between several configs (or checkpoints' configs)."""

    paths: list[str]
    settings: list[SettingDiff]
    same: int  # settings equal in all

    def to_dict(self) -> dict[str, Any]:
        return {"paths": list(self.paths), "differences": [s.to_dict() for s in self.settings],
                "same": self.same}


def _setting_rows(report) -> dict[str, dict]:
    """setting (nested dicts flattened) -> {value, source, file, line} of one report."""
    rows: dict[str, dict] = {}
    if isinstance(report, ConfigLintReport):
        for s in report.settings:
            flat: dict[str, Any] = {}
            _flatten(s.setting, s.value, flat)
            for name, value in flat.items():
                rows[name] = {"value": value, "source": s.source, "file": s.file, "line": s.line}
        return rows
    cfg = getattr(report, "config", None)
    if cfg is None:
        return rows
    doc = cfg.to_dict()
    for name, item in _sourced_items(doc):
        flat = {}
        _flatten(name, item["value"], flat)
        for n, v in flat.items():
            rows[n] = {"value": v, "source": item["source"], "file": None, "line": None}
    return rows


def _sourced_items(doc: dict) -> list[tuple[str, dict]]:
    out = []
    for key in ("point_cloud_range", "voxel_size", "head_type"):
        out.append((key, doc[key]))
    for key, item in doc["head"].items():
        out.append((f"head.{key}", item))
    for comp in AQR_COMPONENTS:
        for key, item in doc[comp].items():
            out.append((f"{comp}.{key}", item))
    for key, item in doc["attention"].items():
        out.append((f"attention.{key}", item))
    return out


def diff_configs(reports: Sequence[Any]) -> ConfigDiff:
    """The AQR settings whose merged values differ between the reports (configs, or the
    configs of checkpoints), in setting order; a setting one report lacks counts as different."""
    tables = [_setting_rows(r) for r in reports]
    names: list[str] = []
    for t in tables:
        names += [n for n in t if n not in names]
    diffs, same = [], 0
    missing = {"value": None, "source": "missing", "file": None, "line": None}
    for n in names:
        vals = [t.get(n, missing) for t in tables]
        if all(json.dumps(v["value"], sort_keys=True) == json.dumps(vals[0]["value"], sort_keys=True)
               for v in vals):
            same += 1
            continue
        diffs.append(SettingDiff(n, [{"path": r.path if hasattr(r, "path") else str(r), **v}
                                     for r, v in zip(reports, vals)]))
    return ConfigDiff([getattr(r, "path", str(r)) for r in reports], diffs, same)


