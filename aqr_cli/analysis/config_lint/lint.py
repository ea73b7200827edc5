"""Lint one mmcv config before training: :func:`lint_config` and its :class:`ConfigLintReport`.

The config is read with the never-executing reader (``_base_`` files merged as mmcv does); the
AQR settings are extracted and traced to where each comes from (this file and line, a
``_base_`` file and line, or a ``CmtHead`` default); every quirk rule registered for
``'config'`` runs on a context without tensors. Rules that need a checkpoint, a camera rig or a
debug dump are not run; :data:`NOT_RUN` lists them with what they need.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aqr_cli.analysis.config_lint.detect import CONFIG_NAMES
from aqr_cli.analysis.config_lint.detector import (
    detector_checks,
    detector_shapes,
    parameter_names,
)
from aqr_cli.analysis.config_lint.status import (
    AQRStatus,
    aqr_status,
    enabled,
    with_lost_settings,
)
from aqr_cli.analysis.findings import (
    CheckpointContext,
    Finding,
    custom_key_finding,
    rule_ids,
    rules_for,
    sort_findings,
)
from aqr_cli.analysis.inspection.components import USED_AT_HEAD
from aqr_cli.analysis.inspection.reports import ComponentReport
from aqr_cli.inputs.checks import COMPONENTS, Check, CheckList, ShapesReport, as_list, config_consistency
from aqr_cli.io import AQRConfig, extract_aqr_config, parse_config_file
from aqr_cli.io.config_origins import Deleted, OriginIndex, Replaced, trace_origins
from aqr_cli.io.config_parse import AQR_COMPONENTS, Sourced, jsonable
from aqr_cli.io.errors import ConfigParseError

CONFIG_RULE_IDS = tuple(rule_ids("config"))
"""Rules run on a config alone (Q2, Q15, Q17 and Q33 only in their config part, see NOT_RUN)."""

NOT_RUN: dict[str, tuple[str, str]] = {
    "Q1": ("all", "a debug dump (LiDAR weights after the renderer clamp)"),
    "Q2": ("part", "the learned reference points of a checkpoint or a dump's pts_bev "
                   "(pc_range and the grid shape are checked)"),
    "Q3": ("all", "the learned reference points of a checkpoint and a camera rig"),
    "Q4": ("all", "the learned reference points and a rig, or a dump's img_metas"),
    "Q5": ("all", "the learned reference points of a checkpoint and a camera rig"),
    "Q13": ("all", "the learned bias_scale of a checkpoint"),
    "Q14": ("all", "the bias generator's stored buffers in a checkpoint"),
    "Q15": ("part", "the learned bias_scale of a checkpoint (the attention types are checked)"),
    "Q17": ("part", "the PyTorch version of the run (env_info of a checkpoint); assumed >= 2"),
    "Q19": ("all", "a debug dump (its query count)"),
    "Q20": ("all", "the learned reference points of a checkpoint"),
    "Q22": ("all", "the keys of a checkpoint"),
    "Q24": ("all", "a checkpoint without a bias generator (old scheme) and its renderer kernel"),
    "Q25": ("all", "a checkpoint without a bias generator: a config does not say whether the old "
                   "scheme (renderer in use) or the HEAD bias path runs it"),
    "Q26": ("all", "a checkpoint without a bias generator (renderer in use, old scheme)"),
    "Q27": ("all", "a checkpoint without a bias generator (modulator in use, old scheme)"),
    "Q28": ("all", "a debug dump"),
    "Q29": ("all", "a debug dump"),
    "Q33": ("part", "the parameter names of a full-detector checkpoint for keys that match no "
                    "parameter (shadowing is checked against the parameters CmtHead builds)"),
    "Q38": ("all", "a debug dump"),
    "NONFINITE": ("all", "tensor values of a checkpoint or dump"),
}
"""Rules a config alone cannot (fully) decide: id -> ('all' | 'part', what they need)."""

_RULES_BY_ID = {rule.id: rule.check for rule in rules_for("config")}


@dataclass
class SettingOrigin:
    """One merged AQR setting and where it comes from.

    ``source``: ``'file'`` (the linted file, at ``line``), ``'base'`` (a ``_base_`` file),
    ``'default'`` (a ``CmtHead`` default, Q40), ``'unparsed'`` (set in an assignment the reader
    refused) or ``'missing'``. ``key`` is the dotted path in the merged config.
    """

    setting: str
    value: Any
    source: str
    file: str | None = None
    line: int | None = None
    key: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"setting": self.setting, "value": jsonable(self.value), "source": self.source,
                "file": self.file, "line": self.line, "key": self.key}


@dataclass
class ConfigLintReport:
    """Everything ``inspect-checkpoint CONFIG.py`` says about one config (README, section
    ``Linting a config``). ``kind`` is ``'config'``."""

    path: str
    name: str
    format: str
    size_bytes: int
    files: list[str]
    config: AQRConfig
    aqr: AQRStatus
    settings: list[SettingOrigin]
    components: dict[str, ComponentReport]
    shapes: ShapesReport
    detector_shapes: dict
    checks: list[Check]
    replaced: list[Replaced]
    deleted: list[Deleted]
    findings: list[Finding] = field(default_factory=list)
    not_run: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    kind: str = "config"

    @property
    def config_source(self) -> dict:
        return {"kind": "file", "label": self.path}

    def setting(self, name: str) -> SettingOrigin | None:
        return next((s for s in self.settings if s.setting == name), None)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document; keys a checkpoint has but a config cannot are ``null``."""
        return {
            "path": self.path, "name": self.name, "kind": self.kind, "format": self.format,
            "size_bytes": self.size_bytes, "files": list(self.files),
            "config_source": self.config_source, "config": self.config.to_dict(),
            "aqr": self.aqr.to_dict(), "settings": [s.to_dict() for s in self.settings],
            "components": {k: c.to_dict() for k, c in self.components.items()},
            "shapes": self.shapes.to_dict(), "detector_shapes": dict(self.detector_shapes),
            "checks": [c.to_dict() for c in self.checks],
            "discarded": {"replaced": [r.to_dict() for r in self.replaced],
                          "deleted": [d.to_dict() for d in self.deleted]},
            "bias_scale": None, "weight_head": None, "reference_points": None, "nonfinite": None,
            "findings": [f.to_dict() for f in self.findings],
            "not_run": list(self.not_run), "notes": list(self.notes),
        }


@dataclass
class _RuleView:
    """What the checkpoint rules read of a report, filled from the config alone."""

    components: dict[str, ComponentReport]
    shapes: ShapesReport
    meta: dict = field(default_factory=lambda: {"epoch": None, "iter": None})
    reference_points: None = None
    bias_scale: None = None


def lint_config(path: str | os.PathLike) -> ConfigLintReport:
    """Lint one mmcv config file (and its ``_base_`` files) without executing anything.

    Raises :class:`ConfigParseError` for a file that cannot be read or parsed, or that is Python
    without any top-level mmcv config assignment.
    """
    p = Path(path)
    parsed = parse_config_file(p)
    if not parsed.assignments and not parsed.bases:
        raise ConfigParseError(str(p), "no top-level assignments (model = ..., _base_ = ...): "
                               "not an mmcv config")
    if not (CONFIG_NAMES & set(parsed.assignments)) and not parsed.bases:
        raise ConfigParseError(str(p), "Python without a top-level model, data or _base_ "
                               "assignment: not an mmcv config")
    cfg = extract_aqr_config(parsed)
    index = trace_origins(p)
    notes = [f"config: {name} not parsed ({why})" for name, why in cfg.unparsed.items()]
    notes += index.notes
    settings = _settings(cfg, index)
    comps = _components(cfg)
    shapes = _shapes(cfg)
    detector = detector_shapes(parsed)
    chk = CheckList()
    config_consistency(cfg, chk)
    if enabled(cfg):  # CmtHead's default shapes are irrelevant while nothing is built
        detector_checks(shapes, detector, chk)
    view = _RuleView(comps, shapes)
    ctx = CheckpointContext(view, cfg, parsed, {}, "pts_bbox_head.", None)
    found = [f for qid in CONFIG_RULE_IDS if qid != "Q33"
             if (f := _RULES_BY_ID[qid](ctx)) is not None]
    q33 = custom_key_finding(parsed.get(("optimizer", "paramwise_cfg", "custom_keys")),
                             parameter_names(cfg), full=False)
    if q33 is not None:
        found.append(q33)
    found = [with_lost_settings(f, index) if f.id == "Q32" else f for f in found]
    return ConfigLintReport(
        path=str(p), name=p.name, format="mmcv-config (json)" if p.suffix == ".json"
        else "mmcv-config", size_bytes=p.stat().st_size, files=list(index.files), config=cfg,
        aqr=aqr_status(cfg, index, parsed.complete), settings=settings, components=comps, shapes=shapes,
        detector_shapes=detector, checks=chk.items,
        replaced=[r for r in index.replaced if r.lost], deleted=list(index.deleted),
        findings=sort_findings(found), not_run=not_run(), notes=notes + cfg.notes)


def not_run() -> list[dict]:
    """The rules a config alone cannot (fully) decide, in rule order: ``{id, scope, needs}``."""
    order = rule_ids()
    return [{"id": qid, "scope": NOT_RUN[qid][0], "needs": NOT_RUN[qid][1]}
            for qid in sorted(NOT_RUN, key=lambda q: order.index(q) if q in order else 999)]


def _settings(cfg: AQRConfig, index: OriginIndex) -> list[SettingOrigin]:
    rows: list[SettingOrigin] = []

    def add(name: str, item: Sourced) -> None:
        origin = index.lookup(item.key) if item.source == "file" and item.key else None
        source = item.source
        if source == "file" and index.is_base(origin):
            source = "base"
        rows.append(SettingOrigin(name, copy.deepcopy(item.value), source,
                                  origin.file if origin else None,
                                  origin.line if origin else None, item.key))

    add("point_cloud_range", cfg.point_cloud_range)
    add("voxel_size", cfg.voxel_size)
    add("head_type", cfg.head_type)
    for key, item in cfg.head.items():
        add(f"head.{key}", item)
    for comp in AQR_COMPONENTS:
        for key, item in getattr(cfg, comp).items():
            add(f"{comp}.{key}", item)
    add("attention.encoder", cfg.encoder_attention)
    add("attention.decoder_self", cfg.decoder_self_attention)
    add("attention.decoder_cross", cfg.decoder_cross_attention)
    return rows


def _components(cfg: AQRConfig) -> dict[str, ComponentReport]:
    on = enabled(cfg)
    simple = bool(cfg.head["use_simple_modulation"].value)
    out = {}
    for comp in COMPONENTS:
        built = on and not (comp == "feature_modulator" and simple)
        legacy = built and comp in ("weight_renderer", "feature_modulator")
        note = ("built per config; legacy: unused at HEAD (the head takes the bias path)" if legacy
                else "built per config" if built else "")
        out[comp] = ComponentReport(comp, built, "config" if built else "absent", 0, 0, [],
                                    USED_AT_HEAD[comp], legacy, note)
    return out


def _shapes(cfg: AQRConfig) -> ShapesReport:
    ws = cfg.attention_bias_config["window_size"].value
    return ShapesReport(bev=as_list(cfg.aqr_config["bev_feature_shape"].value),
                        pers=as_list(cfg.aqr_config["pers_feature_shape"].value),
                        aqr_window_sizes=as_list(cfg.aqr_config["window_sizes"].value),
                        bias_window=ws if isinstance(ws, int) and not isinstance(ws, bool) else None,
                        source="config")


