"""Lint an mmcv config before training: what ``aqr inspect-checkpoint CONFIG.py`` computes.

:func:`lint_config` reads a config with the never-executing reader (``_base_`` files merged as
mmcv does), extracts the AQR settings, traces where each one comes from (this file and line, a
``_base_`` file and line, or a ``CmtHead`` default), says whether AQR ends up on, off or
half-configured after the merge, and runs every quirk rule of :mod:`aqr_cli.analysis.findings`
that the config alone decides. Rules that need a checkpoint, a camera rig or a debug dump are
not run; :data:`NOT_RUN` lists them with what they need. The result is a
:class:`ConfigLintReport`; its ``findings`` are the same :class:`Finding` objects (ids,
severities, JSON) as for checkpoints.

The config alone cannot say which code generation will run it. The lint assumes the HEAD code,
where an enabled head takes the attention-bias path (the renderer and modulator are built but
unused), as the checkpoint lint does when it finds a bias generator.
"""

from __future__ import annotations

import ast
import copy
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aqr_cli.analysis.findings import (
    CHECKPOINT_RULES,
    RULES,
    CheckpointContext,
    Finding,
    custom_key_finding,
    sort_findings,
)
from aqr_cli.analysis.inspection.components import USED_AT_HEAD
from aqr_cli.analysis.inspection.reports import ComponentReport
from aqr_cli.inputs.checks import COMPONENTS, Check, CheckList, ShapesReport, as_list, config_consistency
from aqr_cli.io import AQRConfig, ParsedConfig, extract_aqr_config, parse_config_file
from aqr_cli.io.config_origins import Deleted, OriginIndex, Replaced, trace_origins
from aqr_cli.io.config_parse import AQR_COMPONENTS, Sourced, jsonable
from aqr_cli.io.errors import ConfigParseError

HEAD = "model.pts_bbox_head"
CONFIG_NAMES = frozenset({
    "_base_", "model", "data", "optimizer", "optimizer_config", "lr_config", "runner",
    "train_dataloader", "val_dataloader", "test_dataloader", "train_cfg", "dataset_type",
    "point_cloud_range", "voxel_size", "total_epochs", "checkpoint_config", "log_config",
    "load_from", "resume_from", "workflow", "work_dir",
})
"""Top-level names that mark a Python file as an mmcv config."""
_SNIFF_LIMIT = 4 * 2 ** 20  # configs are kilobytes; anything larger is not read as text

CONFIG_RULE_IDS = ("Q2", "Q6", "Q7", "Q8", "Q9", "Q10", "Q11", "Q12", "Q15", "Q16", "Q17",
                   "Q18", "Q21", "Q23", "Q32", "Q33", "Q34", "Q35", "Q37", "Q40")
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

_RULES_BY_ID = {rule.__name__.lstrip("_").upper(): rule for rule in CHECKPOINT_RULES}

# Representative parameter names of a CMT-AQR detector (spec 2.6): Q33 shadowing only needs
# names that contain the module names custom_keys are written against.
_DETECTOR_PARAMS = (
    "pts_voxel_encoder.vfe_layers.0.0.weight", "pts_middle_encoder.conv_input.0.weight",
    "pts_backbone.blocks.0.0.weight", "pts_neck.deblocks.0.0.weight",
    "img_backbone.conv1.weight", "img_backbone.layer1.0.conv1.weight",
    "img_neck.lateral_convs.0.conv.weight", "img_neck.fpn_convs.0.conv.weight",
    "pts_bbox_head.shared_conv.conv.weight", "pts_bbox_head.shared_conv.bn.weight",
    "pts_bbox_head.transformer.decoder.layers.0.attentions.0.attn.in_proj_weight",
    "pts_bbox_head.transformer.decoder.layers.0.attentions.1.attn.in_proj_weight",
    "pts_bbox_head.transformer.decoder.layers.0.ffns.0.layers.0.0.weight",
    "pts_bbox_head.transformer.decoder.layers.0.norms.0.weight",
    "pts_bbox_head.transformer.decoder.post_norm.weight",
    "pts_bbox_head.reference_points.weight",
    "pts_bbox_head.bev_embedding.0.weight", "pts_bbox_head.rv_embedding.0.weight",
    "pts_bbox_head.task_heads.0.center.0.weight", "pts_bbox_head.task_heads.0.cls_logits.3.weight",
)
_AQR_PARAMS = (
    "pts_bbox_head.aqr_weight_generator.encoder.layers.0.attentions.0.attn.in_proj_weight",
    "pts_bbox_head.aqr_weight_generator.encoder.layers.0.ffns.0.layers.0.0.weight",
    "pts_bbox_head.aqr_weight_generator.encoder.layers.0.norms.0.weight",
    "pts_bbox_head.aqr_weight_generator.encoder.post_norm.weight",
    "pts_bbox_head.aqr_weight_generator.weight_predictor.weight",
    "pts_bbox_head.aqr_weight_generator.weight_predictor.bias",
)


# ---------------------------------------------------------------- detection


def looks_like_config(path: str | os.PathLike) -> bool:
    """True when ``path`` holds an mmcv config rather than a checkpoint, judged by content.

    A config is UTF-8 text (no NUL byte) that is Python with a top-level assignment to an mmcv
    config name (``model = ...``, ``_base_ = ...``, ``data = ...``), or a JSON object with such
    a key. A ``.py`` text file is always routed here, so that a syntax error or a script that is
    not a config gets a config error rather than "not a checkpoint".
    """
    p = Path(path)
    try:
        if not p.is_file() or p.stat().st_size > _SNIFF_LIMIT:
            return False
        with open(p, "rb") as fh:
            head = fh.read(4096)
            if b"\0" in head or head.startswith((b"PK\x03\x04", b"\x80")):
                return False
            data = head + fh.read()
    except OSError:
        return False
    if b"\0" in data:
        return False
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    if p.suffix == ".py":
        return True
    if p.suffix == ".json":
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError):
            return False
        return isinstance(obj, dict) and bool(CONFIG_NAMES & set(obj))
    return bool(CONFIG_NAMES & set(_top_level_names(text)))


def _top_level_names(text: str) -> list[str]:
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    names = []
    for stmt in tree.body:
        targets = stmt.targets if isinstance(stmt, ast.Assign) else (
            [stmt.target] if isinstance(stmt, ast.AnnAssign) else [])
        names += [t.id for t in targets if isinstance(t, ast.Name)]
    return names


# ---------------------------------------------------------------- report parts


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
class AQRStatus:
    """Whether AQR ends up on after the merge, and whether that is what the files say.

    ``state``: ``'on'``, ``'off'``, ``'half'`` (enabled with parts left to defaults or settings
    discarded) or ``'unknown'`` (the model settings were not fully read). ``ok`` is False when
    the merged result contradicts what a file sets. ``lines``: ``file:line: what`` of each line
    involved.
    """

    state: str
    ok: bool
    message: str
    lines: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "ok": self.ok, "message": self.message,
                "lines": list(self.lines)}


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


# ---------------------------------------------------------------- lint


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
    detector = _detector_shapes(parsed)
    chk = CheckList()
    config_consistency(cfg, chk)
    if _enabled(cfg):  # CmtHead's default shapes are irrelevant while nothing is built
        _detector_checks(shapes, detector, chk)
    view = _RuleView(comps, shapes)
    ctx = CheckpointContext(view, cfg, parsed, {}, "pts_bbox_head.", None)
    found = [f for qid in CONFIG_RULE_IDS if qid != "Q33"
             if (f := _RULES_BY_ID[qid](ctx)) is not None]
    q33 = custom_key_finding(parsed.get(("optimizer", "paramwise_cfg", "custom_keys")),
                             _parameter_names(cfg), full=False)
    if q33 is not None:
        found.append(q33)
    found = [_with_lost_settings(f, index) if f.id == "Q32" else f for f in found]
    return ConfigLintReport(
        path=str(p), name=p.name, format="mmcv-config (json)" if p.suffix == ".json"
        else "mmcv-config", size_bytes=p.stat().st_size, files=list(index.files), config=cfg,
        aqr=_aqr_status(cfg, index, parsed.complete), settings=settings, components=comps, shapes=shapes,
        detector_shapes=detector, checks=chk.items,
        replaced=[r for r in index.replaced if r.lost], deleted=list(index.deleted),
        findings=sort_findings(found), not_run=not_run(), notes=notes + cfg.notes)


def not_run() -> list[dict]:
    """The rules a config alone cannot (fully) decide, in rule order: ``{id, scope, needs}``."""
    order = [r.id for r in RULES]
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


def _enabled(cfg: AQRConfig) -> bool:
    return cfg.head["enable_aqr"].value is True


def _components(cfg: AQRConfig) -> dict[str, ComponentReport]:
    on = _enabled(cfg)
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


def _ints(value: Any) -> list[int] | None:
    if isinstance(value, (list, tuple)) and value and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return [int(v) for v in value]
    return None


def _detector_shapes(parsed: ParsedConfig) -> dict:
    """The feature-map sizes the rest of the detector config implies (not the AQR settings).

    BEV: ``grid_size`` (x, y) / ``out_size_factor`` of ``train_cfg.pts`` (else from
    ``point_cloud_range`` / ``voxel_size``); camera: ``ida_aug_conf.final_dim`` (H, W) / 16
    (the stride of the image feature level the head uses, spec 8.2), 6 views.
    """
    out: dict[str, Any] = {"bev": None, "pers": None, "bev_from": None, "pers_from": None}
    osf = None
    for key in ("model.train_cfg.pts.out_size_factor", "model.test_cfg.pts.out_size_factor",
                "out_size_factor"):
        v = parsed.get(key)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            osf = v
            break
    grid = _ints(parsed.get("model.train_cfg.pts.grid_size")) or \
        _ints(parsed.get("model.test_cfg.pts.grid_size"))
    if grid is None:
        pcr, vox = parsed.get("point_cloud_range"), parsed.get("voxel_size")
        if isinstance(pcr, (list, tuple)) and len(pcr) == 6 and isinstance(vox, (list, tuple)) \
                and len(vox) >= 2 and all(isinstance(v, (int, float)) and v for v in vox[:2]):
            grid = [round((pcr[3] - pcr[0]) / vox[0]), round((pcr[4] - pcr[1]) / vox[1])]
            out["bev_from"] = "point_cloud_range / voxel_size / out_size_factor"
    elif grid:
        out["bev_from"] = "train_cfg.pts.grid_size / out_size_factor"
    if grid is not None and len(grid) >= 2 and osf:
        out["bev"] = [grid[1] // osf, grid[0] // osf]
    else:
        out["bev_from"] = None
    final = _ints((parsed.get("ida_aug_conf") or {}).get("final_dim")
                  if isinstance(parsed.get("ida_aug_conf"), Mapping) else None)
    if final is not None and len(final) == 2:
        out["pers"] = [6, final[0] // 16, final[1] // 16]
        out["pers_from"] = "ida_aug_conf.final_dim / 16"
    return out


def _detector_checks(shapes: ShapesReport, detector: dict, chk: CheckList) -> None:
    for key, label in (("bev", "bev_feature_shape"), ("pers", "pers_feature_shape")):
        want, have = detector.get(key), getattr(shapes, key)
        if want is None or have is None:
            chk.add(f"{label} vs detector", None, f"aqr_config.{label}={have}; the detector "
                    "config does not say how large the feature maps are")
            continue
        ok = list(want) == list(have)
        chk.add(f"{label} vs detector", ok, f"aqr_config.{label}={have} "
                + ("matches" if ok else "differs from")
                + f" the {'x'.join(map(str, want))} maps of the detector "
                f"({detector[key + '_from']})")


def _parameter_names(cfg: AQRConfig) -> list[str]:
    names = list(_DETECTOR_PARAMS)
    if _enabled(cfg):
        names += _AQR_PARAMS
        if cfg.aqr_config.get("use_type_embed") and cfg.aqr_config["use_type_embed"].value:
            names += ["pts_bbox_head.aqr_weight_generator.bev_type_embed",
                      "pts_bbox_head.aqr_weight_generator.rv_type_embed"]
        if cfg.attention_bias_config["learnable_scale"].value:
            names.append("pts_bbox_head.attention_bias_generator.bias_scale")
        if cfg.modulator_config["learnable_modulation"].value:
            names += ["pts_bbox_head.feature_modulator.modulation_scale",
                      "pts_bbox_head.feature_modulator.modulation_bias"]
    return names


# ---------------------------------------------------------------- AQR on / off / half


def _where(origin_file: str | None, line: int | None, this: str | None = None) -> str:
    """``name.py:line`` (the base name: messages stay readable in JSON and on a terminal)."""
    if origin_file is None:
        return "?"
    return f"{os.path.basename(origin_file)}:{'?' if line is None else line}"


def _aqr_key(path: str) -> str | None:
    """The AQR head key (``enable_aqr``, ``aqr_config`` ...) a dotted path lies under, if any."""
    parts = path.split(".")
    if parts[:2] != ["model", "pts_bbox_head"]:
        return None
    if len(parts) == 2:
        return "pts_bbox_head"
    key = parts[2]
    return key if key in ("enable_aqr", "use_simple_modulation", "debug_mode",
                          "visualization_interval") + AQR_COMPONENTS else None


def _lost_aqr(index: OriginIndex) -> list[tuple[str, Any, dict[str, Any]]]:
    """(how, record, {aqr key: origin}) for each discarded assignment that held AQR settings."""
    out = []
    for rec in list(index.replaced) + list(index.deleted):
        keys: dict[str, Any] = {}
        for path, origin in rec.lost.items():
            k = _aqr_key(path)
            if k is not None and k not in keys:
                keys[k] = rec.origin_of(f"{HEAD}.{k}") or origin
        if keys:
            out.append(("replaced" if isinstance(rec, Replaced) else "deleted", rec, keys))
    return out


def _discard_text(how: str, rec, keys: dict[str, Any], this: str) -> tuple[str, list[str]]:
    names = ", ".join(keys)
    lines = [f"{_where(o.file, o.line, this)}: {k}"
             + (f"={o.value!r}" if o.value is not None else "") + " (discarded)"
             for k, o in keys.items()]
    if how == "replaced":
        f = _where(rec.file, rec.line, this)
        by = _where(rec.file, rec.by_line, this)
        lines.append(f"{by}: `{rec.name} = ...` replaces the one at {f}")
        return (f"{names} set in the `{rec.name} = dict(...)` at {f} are discarded, because the "
                f"`{rec.name} = dict(...)` at {by} replaces it (mmcv keeps only the last "
                "assignment of a name in a file)"), lines
    at = _where(rec.origin.file, rec.origin.line, this)
    lines.append(f"{at}: {rec.path} with _delete_=True")
    return (f"{names} set in a _base_ are discarded, because {rec.path} at {at} has "
            "_delete_=True and does not set them again"), lines


def _aqr_status(cfg: AQRConfig, index: OriginIndex, complete: bool) -> AQRStatus:
    this = index.source
    if "model" in cfg.unparsed or (not complete and not _enabled(cfg)):
        why = cfg.unparsed.get("model") or "a _base_ file could not be read"
        return AQRStatus("unknown", False, f"the model settings were not read completely ({why}), "
                         "so whether AQR is on cannot be decided")
    if cfg.head_type.source not in ("file", "default") or cfg.head_type.value is None:
        return AQRStatus("unknown", parsed_ok(cfg), "model.pts_bbox_head is not set: not a CMT "
                         "detector config (e.g. a _base_ holding only data settings), or its "
                         "head comes from a _base_ that was not read")
    enable = cfg.head["enable_aqr"]
    en_origin = index.lookup(enable.key) if enable.key else None
    en_where = (f"enable_aqr={enable.value!r} at {_where(en_origin.file, en_origin.line, this)}"
                if enable.source == "file" and en_origin is not None else
                f"enable_aqr={enable.value!r}" if enable.source == "file" else
                "enable_aqr not set (CmtHead default False)")
    lines = [f"{_where(en_origin.file, en_origin.line, this)}: enable_aqr={enable.value!r}"] \
        if en_origin is not None else []
    discarded = [_discard_text(how, rec, keys, this) for how, rec, keys in _lost_aqr(index)]
    lost_text = "; ".join(t for t, _ in discarded)
    for _, extra in discarded:
        lines += extra
    configured = [c for c in AQR_COMPONENTS
                  if any(v.source == "file" for v in getattr(cfg, c).values())]
    if _enabled(cfg):
        missing = [c for c in ("aqr_config", "attention_bias_config") if c not in configured]
        if not missing and not discarded:
            return AQRStatus("on", True, f"AQR is on ({en_where}); aqr_config and "
                             "attention_bias_config are set", lines)
        parts = []
        if missing:
            parts.append(f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not "
                         "set, so CmtHead fills them from its defaults (window 15, 180x180 / "
                         "6x40x100 maps; Q40, Q21)")
        if lost_text:
            parts.append(lost_text)
        return AQRStatus("half", False, f"AQR is half-configured: {en_where}, but "
                         + "; ".join(parts), lines)
    lost_enable = any(keys.get("enable_aqr") is not None and keys["enable_aqr"].value is True
                      for _, _, keys in _lost_aqr(index))
    if lost_enable:
        return AQRStatus("off", False, f"AQR is OFF although a file turns it on: {lost_text}; "
                         f"the merged config has {en_where}", lines)
    if configured:
        for c in configured:
            o = index.lookup(f"{HEAD}.{c}")
            if o is not None:
                lines.append(f"{_where(o.file, o.line, this)}: {c} (ignored)")
        return AQRStatus("off", False, f"AQR settings are configured ({', '.join(configured)}) "
                         f"but {en_where}: CmtHead builds no AQR component and ignores them"
                         + (f"; {lost_text}" if lost_text else ""), lines)
    if discarded:
        return AQRStatus("off", False, f"AQR is off ({en_where}); {lost_text}", lines)
    return AQRStatus("off", True, f"AQR is off ({en_where}): a baseline CMT config", lines)


def parsed_ok(cfg: AQRConfig) -> bool:
    """No AQR-relevant assignment was refused by the reader."""
    return "model" not in cfg.unparsed


def _with_lost_settings(f: Finding, index: OriginIndex) -> Finding:
    """Q32 for a config file: name the settings the replaced assignment loses."""
    recs = [r for r in index.replaced if r.name == "model" and r.lost]
    if not recs:
        return f
    this = index.source
    parts = []
    for r in recs:
        keys = list(dict.fromkeys(".".join(k.split(".")[1:3]) for k in r.lost))
        shown = ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")
        parts.append(f"the `model = dict(...)` at {_where(r.file, r.line, this)} is replaced by "
                     f"the one at {_where(r.file, r.by_line, this)}, losing {shown}")
    detail = dict(f.detail)
    detail["lost"] = {f"{r.file}:{r.line}": list(r.lost) for r in recs}
    return Finding(f.id, f.severity, "`model` is assigned more than once in one config file: "
                   + "; ".join(parts) + ". Only the last assignment survives, so those settings "
                   "are silently discarded.", detail)


# ---------------------------------------------------------------- several configs


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
