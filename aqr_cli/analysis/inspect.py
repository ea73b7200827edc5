"""What ``aqr inspect-checkpoint`` computes: one report per checkpoint or debug dump.

:func:`inspect_checkpoint` returns a :class:`CheckpointReport`, :func:`inspect_dump` a
:class:`DumpReport`, :func:`inspect_file` whichever the file is. The command's Rich table, its
JSON (``report.to_dict()``) and the epoch PNG are three views of these dataclasses.

A config that disagrees with the tensors it should describe (offset buffers vs window size,
kernel size vs sigma, widths, embed dims, query count) raises :class:`ShapeMismatchError`: the
report would describe a model that is not in the file. Key-presence disagreements (e.g. type
embeddings in the file but ``use_type_embed=False``) are reported in ``checks`` instead.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aqr_cli.analysis.findings import (
    CheckpointContext,
    Finding,
    checkpoint_findings,
    dump_findings,
    torch_version_from_env,
)
from aqr_cli.analysis.objects import weights_by_query_group
from aqr_cli.analysis.stats import map_stats, split_dn, weight_stats
from aqr_cli.core.errors import AQRInputError, QuirkWarning
from aqr_cli.core.geometry import CameraRig, project_points_to_cameras
from aqr_cli.io.rig import default_rig, load_rig
from aqr_cli.io import (
    AQRConfig,
    LoadedFile,
    LoadError,
    ParsedConfig,
    extract_aqr_config,
    load_file,
    parse_config_file,
    parse_config_text,
)
from aqr_cli.io.errors import ConfigBudgetError, ConfigParseError
from aqr_cli.io.placeholders import DataContainer, Placeholder

COMPONENTS = ("aqr_weight_generator", "weight_renderer", "feature_modulator",
              "attention_bias_generator")
"""AQR submodules of ``CmtHead`` (state-dict prefixes under the head)."""
USED_AT_HEAD = {"aqr_weight_generator": True, "weight_renderer": False, "feature_modulator": False,
                "attention_bias_generator": True}
_BUFFERS = ("gaussian_kernel", "y_offsets", "x_offsets", "window_offsets_bev",
            "window_offsets_pers", "gaussian_weights", "running_mean", "running_var",
            "num_batches_tracked")
_DECISIVE = ("file", "default")
WEIGHT_HEAD_BIAS_INIT = 1.5
"""``AQRWeightGenerator.init_weights`` sets ``weight_predictor.bias`` to this constant."""
UPSTREAM_BIAS_DEFAULTS = dict(bias_scale=2.5, learnable_scale=True, min_scale=0.5, max_scale=5.0)


class ShapeMismatchError(LoadError):
    """The config and the checkpoint's tensors disagree about a shape (one line, names the file)."""


# ---------------------------------------------------------------- report parts


@dataclass
class ComponentReport:
    """One AQR submodule: present (``evidence``: 'state_dict' keys, or built per 'config' without
    any state), element counts of parameters and buffers, its keys, and its role at HEAD."""

    name: str
    present: bool
    evidence: str  # 'state_dict' | 'config' | 'absent'
    params: int
    buffers: int
    keys: list[str]
    used_at_head: bool
    legacy: bool  # present, but unused because the head takes the bias path
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"present": self.present, "evidence": self.evidence, "params": self.params,
                "buffers": self.buffers, "keys": list(self.keys), "used_at_head": self.used_at_head,
                "legacy": self.legacy, "note": self.note}


@dataclass
class Check:
    """A config-vs-tensor cross-check: status 'ok' | 'mismatch' | 'undecidable' | 'inferred'."""

    name: str
    status: str
    message: str
    fatal: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "message": self.message}


@dataclass
class ShapesReport:
    """Feature shapes and windows (from the config, else inferred), plus what the tensors say."""

    bev: list | None = None  # [H, W]
    pers: list | None = None  # [V, h, w]
    aqr_window_sizes: list | None = None  # [camera, lidar]
    bias_window: int | None = None
    source: str | None = None  # 'config' | 'state_dict' | 'dump' | None
    state_dict: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"bev": self.bev, "pers": self.pers, "aqr_window_sizes": self.aqr_window_sizes,
                "bias_window": self.bias_window, "source": self.source,
                "state_dict": dict(self.state_dict)}


@dataclass
class BiasScaleReport:
    """The learned ``attention_bias_generator.bias_scale`` and what the forward pass uses."""

    raw: float
    effective: float  # clamp(raw, min, max) if learnable, else raw (spec 5.2)
    init: float
    min: float
    max: float
    learnable: bool
    shape: list
    settings_source: str  # 'config' | 'upstream defaults (no config)'

    @property
    def distance_to_min(self) -> float:
        return self.raw - self.min

    @property
    def distance_to_max(self) -> float:
        return self.max - self.raw

    @property
    def equals_init(self) -> bool:
        """Bit-equal to the initial value in float32."""
        return bool(np.float32(self.raw) == np.float32(self.init))

    @property
    def outside_range(self) -> bool:
        return self.raw < self.min or self.raw > self.max

    def to_dict(self) -> dict[str, Any]:
        return {"raw": self.raw, "effective": self.effective, "init": self.init, "min": self.min,
                "max": self.max, "learnable": self.learnable, "shape": self.shape,
                "distance_to_min": self.distance_to_min, "distance_to_max": self.distance_to_max,
                "equals_init": self.equals_init, "outside_range": self.outside_range,
                "settings_source": self.settings_source}


@dataclass
class WeightHeadReport:
    """``aqr_weight_generator.weight_predictor``: row 0 = LiDAR, row 1 = camera."""

    bias_raw: list[float]
    weight_row_norm: list[float]

    @property
    def bias_tanh(self) -> list[float]:
        return [math.tanh(b) for b in self.bias_raw]

    @property
    def bias_equals_init(self) -> bool:
        return all(np.float32(b) == np.float32(WEIGHT_HEAD_BIAS_INIT) for b in self.bias_raw)

    def to_dict(self) -> dict[str, Any]:
        return {"bias_raw": self.bias_raw, "bias_tanh": self.bias_tanh,
                "bias_init": WEIGHT_HEAD_BIAS_INIT, "bias_equals_init": self.bias_equals_init,
                "weight_row_norm": self.weight_row_norm, "rows": ["lidar", "camera"]}


@dataclass
class RefPointsReport:
    """The learned ``reference_points.weight`` [N, 3] and where AQR's projection puts them."""

    count: int
    min: list[float]
    max: list[float]
    outside_unit_count: int  # any coordinate outside [0, 1)
    outside_closed_count: int  # any coordinate outside [0, 1]
    rig: str
    bev_outside_grid: int | None = None
    unseen_count: int | None = None  # no camera under the upstream first-valid-view rule
    per_view: dict[str, int] = field(default_factory=dict)
    multi_view_count: int | None = None
    depth_test_disagree: int | None = None
    error: str | None = None  # why projection was not possible

    @property
    def outside_unit_share(self) -> float:
        return self.outside_unit_count / self.count if self.count else 0.0

    @property
    def unseen_share(self) -> float | None:
        return None if self.unseen_count is None or not self.count else self.unseen_count / self.count

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "min": self.min, "max": self.max,
                "outside_unit_count": self.outside_unit_count,
                "outside_unit_share": self.outside_unit_share,
                "outside_closed_count": self.outside_closed_count,
                "bev_outside_grid": self.bev_outside_grid, "unseen_count": self.unseen_count,
                "unseen_share": self.unseen_share, "per_view": dict(self.per_view),
                "multi_view_count": self.multi_view_count,
                "depth_test_disagree": self.depth_test_disagree, "rig": self.rig,
                "error": self.error}


@dataclass
class NonFiniteReport:
    """NaN/Inf counts of every floating tensor; ``bad`` lists only the offending ones."""

    scanned: int
    bad: list[dict]

    def to_dict(self) -> dict[str, Any]:
        return {"scanned": self.scanned, "bad": list(self.bad)}


def _meta_dict(lf: LoadedFile) -> dict[str, Any]:
    m = lf.meta
    tv = torch_version_from_env(m.raw.get("env_info"))
    return {"epoch": m.epoch, "iter": m.iter, "versions": dict(m.versions),
            "config_name": m.config_name, "time": m.time, "seed": m.seed,
            "classes": m.classes, "torch": f"{tv[0]}.{tv[1]}" if tv else None}


@dataclass
class CheckpointReport:
    """Everything ``inspect-checkpoint`` says about one checkpoint (see ``README.md, section aqr inspect-checkpoint``)."""

    path: str
    name: str
    format: str
    size_bytes: int
    container: str
    mmapped: bool
    trusted: bool
    has_optimizer: bool
    meta: dict
    num_tensors: int
    head_prefix: str | None
    config_source: dict | None
    config: AQRConfig | None
    components: dict[str, ComponentReport]
    shapes: ShapesReport
    checks: list[Check]
    bias_scale: BiasScaleReport | None
    weight_head: WeightHeadReport | None
    reference_points: RefPointsReport | None
    nonfinite: NonFiniteReport
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    kind: str = "checkpoint"
    inert_records: list[str] = field(default_factory=list)  # foreign globals kept as data

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (schema in ``README.md, section aqr inspect-checkpoint``)."""
        return {
            "path": self.path, "name": self.name, "kind": self.kind, "format": self.format,
            "size_bytes": self.size_bytes, "container": self.container, "mmapped": self.mmapped,
            "trusted": self.trusted, "inert_records": list(self.inert_records),
            "has_optimizer": self.has_optimizer, "meta": dict(self.meta),
            "num_tensors": self.num_tensors, "head_prefix": self.head_prefix,
            "config_source": self.config_source,
            "config": self.config.to_dict() if self.config is not None else None,
            "components": {k: c.to_dict() for k, c in self.components.items()},
            "shapes": self.shapes.to_dict(),
            "checks": [c.to_dict() for c in self.checks],
            "bias_scale": self.bias_scale.to_dict() if self.bias_scale else None,
            "weight_head": self.weight_head.to_dict() if self.weight_head else None,
            "reference_points": self.reference_points.to_dict() if self.reference_points else None,
            "nonfinite": self.nonfinite.to_dict(),
            "findings": [f.to_dict() for f in self.findings],
            "notes": list(self.notes),
        }


@dataclass
class DumpReport:
    """Everything ``inspect-checkpoint`` says about one upstream debug dump (spec 6.2)."""

    path: str
    name: str
    format: str
    size_bytes: int
    container: str
    trusted: bool
    iteration: int | None
    contents: list[dict]
    batch_size: int | None
    queries: dict
    shapes: dict
    weights: dict
    maps: dict
    gt_boxes: dict
    sentinel: dict
    img_metas: dict
    bev_outside_grid: int
    config_source: dict | None
    config: AQRConfig | None
    nonfinite: NonFiniteReport
    checks: list[Check] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    kind: str = "debug_dump"
    inert_records: list[str] = field(default_factory=list)  # foreign globals kept as data

    @property
    def meta(self) -> dict:
        return {"epoch": None, "iter": self.iteration, "versions": {}, "config_name": None}

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path, "name": self.name, "kind": self.kind, "format": self.format,
            "size_bytes": self.size_bytes, "container": self.container, "trusted": self.trusted,
            "inert_records": list(self.inert_records), "meta": self.meta, "iteration": self.iteration, "contents": list(self.contents),
            "batch_size": self.batch_size, "queries": dict(self.queries),
            "shapes": dict(self.shapes), "weights": dict(self.weights), "maps": dict(self.maps),
            "gt_boxes": dict(self.gt_boxes), "sentinel": dict(self.sentinel),
            "img_metas": dict(self.img_metas), "bev_outside_grid": self.bev_outside_grid,
            "components": {}, "bias_scale": None, "config_source": self.config_source,
            "config": self.config.to_dict() if self.config is not None else None,
            "checks": [c.to_dict() for c in self.checks],
            "nonfinite": self.nonfinite.to_dict(),
            "findings": [f.to_dict() for f in self.findings], "notes": list(self.notes),
        }


# ---------------------------------------------------------------- config


def resolve_config(lf: LoadedFile | None, config_path: str | os.PathLike | None
                   ) -> tuple[AQRConfig | None, ParsedConfig | None, dict | None, list[str]]:
    """The config to use: ``--config`` (parsed, never run), else ``meta['config']``, else None.

    A ``--config`` that cannot be read raises :class:`ConfigParseError` (naming the config); an
    unreadable ``meta['config']`` only adds a note.
    """
    notes: list[str] = []
    if config_path is not None:
        parsed = parse_config_file(config_path)
        source = {"kind": "file", "label": os.fspath(config_path)}
        if lf is not None and lf.meta.config_text:
            notes.append("--config overrides the config stored in meta['config']")
    elif lf is not None and lf.meta.config_text:
        try:
            parsed = parse_config_text(lf.meta.config_text, label=f"{lf.name}:meta['config']")
        except ConfigBudgetError as e:
            raise LoadError(lf.path, f"meta['config']: {e.reason}") from None
        except ConfigParseError as e:
            notes.append(f"meta['config'] could not be parsed ({e.reason}); no config used")
            return None, None, None, notes
        source = {"kind": "meta", "label": "meta['config']"}
    else:
        return None, None, None, notes
    cfg = extract_aqr_config(parsed)
    for name, why in cfg.unparsed.items():
        notes.append(f"config: {name} not parsed ({why})")
    return cfg, parsed, source, notes


def _sourced(cfg: AQRConfig | None, component: str | None, key: str):
    if cfg is None:
        return None
    return (cfg.head if component is None else getattr(cfg, component)).get(key)


def _decisive(item) -> bool:
    return item is not None and item.source in _DECISIVE and item.value is not None


def _as_list(value: Any) -> list | None:
    if isinstance(value, (list, tuple)):
        return [int(v) if isinstance(v, (int, float)) and float(v).is_integer() else v for v in value]
    return None


# ---------------------------------------------------------------- state dict helpers


def head_prefix(state_dict: Mapping[str, Any]) -> str | None:
    """What precedes the AQR submodule names (``'pts_bbox_head.'``), or None if there are none."""
    counts: dict[str, int] = {}
    for key in state_dict:
        for comp in COMPONENTS:
            i = key.find(comp + ".")
            if i >= 0 and (i == 0 or key[i - 1] == "."):
                counts[key[:i]] = counts.get(key[:i], 0) + 1
                break
    if not counts:
        for key in state_dict:
            if key.endswith("reference_points.weight"):
                return key[: -len("reference_points.weight")]
        return None
    return max(counts, key=lambda p: (counts[p], -len(p)))


def _is_buffer(key: str, learnable_scale: bool) -> bool:
    if key.endswith("bias_scale"):
        return not learnable_scale
    return key.rsplit(".", 1)[-1] in _BUFFERS


def _components(sd: Mapping[str, Any], prefix: str | None, cfg: AQRConfig | None
                ) -> dict[str, ComponentReport]:
    learnable = _sourced(cfg, "attention_bias_config", "learnable_scale")
    learnable = True if learnable is None or learnable.value is None else bool(learnable.value)
    out: dict[str, ComponentReport] = {}
    for comp in COMPONENTS:
        pre = f"{prefix or ''}{comp}."
        keys = [k for k in sd if k.startswith(pre)]
        params = sum(int(sd[k].numel()) for k in keys if not _is_buffer(k, learnable))
        buffers = sum(int(sd[k].numel()) for k in keys if _is_buffer(k, learnable))
        out[comp] = ComponentReport(comp, bool(keys), "state_dict" if keys else "absent", params,
                                    buffers, keys, USED_AT_HEAD[comp], False)
    any_aqr = any(c.present for c in out.values())
    enable = _sourced(cfg, None, "enable_aqr")
    if any_aqr and cfg is not None and enable is not None and enable.value:
        simple = _sourced(cfg, None, "use_simple_modulation")
        builds = {"feature_modulator": not (simple and simple.value),
                  "weight_renderer": True}
        for comp, built in builds.items():
            if built and not out[comp].present:
                out[comp].present, out[comp].evidence = True, "config"
                out[comp].note = "built per config, holds no parameters or buffers"
    if out["attention_bias_generator"].present:
        for comp in ("weight_renderer", "feature_modulator"):
            if out[comp].present:
                out[comp].legacy = True
                out[comp].note = ("legacy: unused at HEAD (the head takes the bias path)"
                                  + (f"; {out[comp].note}" if out[comp].note else ""))
    return out


def _tensor(sd, key):
    t = sd.get(key)
    return t if isinstance(t, torch.Tensor) else None


def _inferred_width(flat: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> int | None:
    """W from ``flat = y*W + x`` (offset buffers), or None if inconsistent."""
    rows = y != 0
    if not bool(rows.any()):
        return None
    w = (flat[rows] - x[rows]).double() / y[rows].double()
    vals = torch.unique(w)
    if vals.numel() != 1 or not float(vals[0]).is_integer():
        return None
    return int(vals[0])


def _axis(window: int, parity: str) -> list[int]:
    half = window // 2
    if parity == "head" and window % 2 == 0:
        return list(range(-half + 1, half + 1))
    return list(range(-half, half + 1))


class _Checks:
    """Collects cross-checks; ``fatal`` ones abort the report with one line."""

    def __init__(self):
        self.items: list[Check] = []

    def add(self, name: str, ok: bool | None, message: str, *, fatal: bool = False) -> None:
        status = "undecidable" if ok is None else ("ok" if ok else "mismatch")
        self.items.append(Check(name, status, message, fatal=bool(fatal and ok is False)))

    def inferred(self, name: str, message: str) -> None:
        self.items.append(Check(name, "inferred", message))


def _shapes_and_checks(sd: Mapping[str, Any], prefix: str | None, cfg: AQRConfig | None
                       ) -> tuple[ShapesReport, list[Check]]:
    pre = prefix or ""
    chk = _Checks()
    shapes = ShapesReport()
    if cfg is not None:
        shapes.source = "config"
        shapes.bev = _as_list(cfg.aqr_config["bev_feature_shape"].value)
        shapes.pers = _as_list(cfg.aqr_config["pers_feature_shape"].value)
        shapes.aqr_window_sizes = _as_list(cfg.aqr_config["window_sizes"].value)
        ws = cfg.attention_bias_config["window_size"].value
        shapes.bias_window = int(ws) if isinstance(ws, int) else None
        _config_consistency(cfg, chk)
    _check_generator(sd, pre, cfg, shapes, chk)
    _check_renderer(sd, pre, cfg, shapes, chk)
    _check_bias_buffers(sd, pre, cfg, shapes, chk)
    _check_modulator(sd, pre, cfg, chk)
    _check_reference_points(sd, pre, cfg, shapes, chk)
    if cfg is None and shapes.state_dict:
        shapes.source = "state_dict"
        w = shapes.state_dict
        shapes.bias_window = w.get("bias_window")
        if w.get("bev_width"):
            shapes.bev = [None, w["bev_width"]]
        if w.get("pers_width"):
            shapes.pers = [None, None, w["pers_width"]]
    return shapes, chk.items


def _config_consistency(cfg: AQRConfig, chk: _Checks) -> None:
    for key in ("bev_feature_shape", "pers_feature_shape"):
        vals = {c: _as_list(getattr(cfg, c)[key].value) for c in
                ("aqr_config", "renderer_config", "attention_bias_config")}
        distinct = {str(v) for v in vals.values()}
        chk.add(f"config {key}", len(distinct) == 1,
                f"{key} agrees across aqr/renderer/bias configs ({vals['aqr_config']})"
                if len(distinct) == 1 else
                f"{key} differs between components: " + ", ".join(f"{c}={v}" for c, v in vals.items()))


def _check_generator(sd, pre, cfg, shapes, chk: _Checks) -> None:
    g = pre + "aqr_weight_generator."
    wp = _tensor(sd, g + "weight_predictor.weight")
    if wp is None:
        return
    if wp.dim() != 2 or wp.shape[0] != 2:
        chk.add("weight_predictor", False, f"aqr_weight_generator.weight_predictor.weight has shape "
                f"{list(wp.shape)}, expected [2, embed_dims]", fatal=True)
        return
    c = int(wp.shape[1])
    shapes.state_dict["embed_dims"] = c
    embed = _sourced(cfg, "aqr_config", "embed_dims")
    if _decisive(embed):
        chk.add("embed_dims", c == embed.value, f"aqr_weight_generator.weight_predictor.weight is "
                f"[2, {c}] and embed_dims={embed.value} ({embed.source})", fatal=True)
    inp = _tensor(sd, g + "encoder.layers.0.attentions.0.attn.in_proj_weight")
    if inp is not None:
        chk.add("encoder in_proj", list(inp.shape) == [3 * c, c],
                f"encoder in_proj_weight is {list(inp.shape)}, expected [{3 * c}, {c}]", fatal=True)
    ffn = _tensor(sd, g + "encoder.layers.0.ffns.0.layers.0.0.weight")
    enc = _sourced(cfg, "aqr_config", "encoder_config")
    if ffn is not None and _decisive(enc) and isinstance(enc.value, Mapping):
        layer = enc.value.get("transformerlayers")
        layer = layer[0] if isinstance(layer, list) and layer else layer
        ff = None
        if isinstance(layer, Mapping):
            f = layer.get("ffn_cfgs")
            f = f[0] if isinstance(f, list) and f else f
            ff = (f.get("feedforward_channels") if isinstance(f, Mapping) else None) \
                or layer.get("feedforward_channels")
        if isinstance(ff, int):
            chk.add("encoder FFN", list(ffn.shape) == [ff, c], f"encoder FFN weight is "
                    f"{list(ffn.shape)}, config feedforward_channels={ff} needs [{ff}, {c}]",
                    fatal=True)
    use_type = _sourced(cfg, "aqr_config", "use_type_embed")
    has_type = g + "bev_type_embed" in sd
    if _decisive(use_type):
        chk.add("type embeddings", bool(use_type.value) == has_type,
                f"type embeddings {'present' if has_type else 'absent'}, use_type_embed="
                f"{use_type.value}")


def _check_renderer(sd, pre, cfg, shapes, chk: _Checks) -> None:
    kernel = _tensor(sd, pre + "weight_renderer.gaussian_kernel")
    if kernel is None:
        return
    shapes.state_dict["renderer_kernel"] = list(kernel.shape)
    method = _sourced(cfg, "renderer_config", "render_method")
    sigma = _sourced(cfg, "renderer_config", "gaussian_sigma")
    if _decisive(method) and method.value != "gaussian":
        chk.add("renderer kernel", False, f"weight_renderer.gaussian_kernel exists but "
                f"render_method={method.value!r} builds none")
        return
    if not _decisive(sigma):
        chk.add("renderer kernel", None, f"gaussian_kernel is {list(kernel.shape)}; "
                "gaussian_sigma not known from a config")
        return
    k = int(6 * float(sigma.value) + 1)
    k += 1 - k % 2
    chk.add("renderer kernel", list(kernel.shape) == [k, k],
            f"weight_renderer.gaussian_kernel is {'x'.join(map(str, kernel.shape))}; "
            f"gaussian_sigma={sigma.value} ({sigma.source}) needs {k}x{k} (k = int(6*sigma + 1), "
            "made odd)", fatal=True)


def _check_bias_buffers(sd, pre, cfg, shapes, chk: _Checks) -> None:
    b = pre + "attention_bias_generator."
    names = ("y_offsets", "x_offsets", "window_offsets_bev", "window_offsets_pers")
    bufs = {n: _tensor(sd, b + n) for n in names}
    scale = _tensor(sd, b + "bias_scale")
    if scale is not None:
        chk.add("bias_scale shape", scale.numel() == 1, f"bias_scale has shape {list(scale.shape)} "
                "(expected [1] at HEAD or [] in CMTTEST/bias)", fatal=True)
    if all(v is None for v in bufs.values()):
        return
    missing = [n for n, v in bufs.items() if v is None]
    if missing:
        chk.add("bias offsets", False, "attention_bias_generator lacks " + ", ".join(missing),
                fatal=True)
        return
    lengths = {n: int(v.numel()) for n, v in bufs.items()}
    gw = _tensor(sd, b + "gaussian_weights")
    if gw is not None:
        lengths["gaussian_weights"] = int(gw.numel())
    if len(set(lengths.values())) != 1:
        chk.add("bias offsets", False, "attention_bias_generator buffers disagree in length: "
                + ", ".join(f"{k}={v}" for k, v in lengths.items()), fatal=True)
        return
    n = lengths["y_offsets"]
    y, x = bufs["y_offsets"].long().reshape(-1), bufs["x_offsets"].long().reshape(-1)
    axis = sorted(torch.unique(y).tolist())
    shapes.state_dict["bias_offsets"] = n
    shapes.state_dict["bias_axis_offsets"] = axis
    stored_parity = "head" if axis and axis[0] == -(axis[-1] - 1) else "symmetric"
    stored_window = len(axis)
    ws_item = _sourced(cfg, "attention_bias_config", "window_size")
    if _decisive(ws_item) and isinstance(ws_item.value, int):
        ws = ws_item.value
        head_n, sym_n = ws * ws, (2 * (ws // 2) + 1) ** 2
        allowed = {head_n: "head", sym_n: "symmetric"}
        if n not in allowed:
            need = f"{head_n}" + (f" (HEAD) or {sym_n} (CMTTEST/bias, symmetric)" if sym_n != head_n else "")
            chk.add("bias offsets", False, f"attention_bias_generator offset buffers hold {n} "
                    f"entries, but window_size={ws} ({ws_item.source}) needs {need}", fatal=True)
            return
        parity = allowed[n] if head_n != sym_n else "head"
        ax = torch.tensor(_axis(ws, parity))
        yy, xx = torch.meshgrid(ax, ax, indexing="ij")
        ok = torch.equal(y, yy.reshape(-1)) and torch.equal(x, xx.reshape(-1))
        chk.add("bias offsets", ok, f"{n} offsets ({parity} parity, {axis[0]}..{axis[-1]}) for "
                f"window_size={ws} ({ws_item.source})" if ok else
                f"attention_bias_generator y/x offsets {axis[0]}..{axis[-1]} are not the "
                f"{parity} offsets of window_size={ws}", fatal=True)
        if not ok:
            return
        shapes.state_dict["bias_window"] = ws
        shapes.state_dict["bias_window_parity"] = parity
    else:
        shapes.state_dict["bias_window"] = stored_window
        shapes.state_dict["bias_window_parity"] = stored_parity
        if int(math.isqrt(n)) ** 2 != n:
            chk.add("bias offsets", False, f"attention_bias_generator holds {n} offsets, not a "
                    "square window", fatal=True)
            return
        chk.inferred("bias window", f"window {stored_window} ({stored_parity} offsets "
                     f"{axis[0]}..{axis[-1]}) read from the stored buffers"
                     + ("; an even window of the CMTTEST/bias generation looks the same"
                        if stored_parity == "symmetric" else ""))
    for buf, dim, label in (("window_offsets_bev", 1, "bev"), ("window_offsets_pers", 2, "pers")):
        width = _inferred_width(bufs[buf].long().reshape(-1), y, x)
        shapes.state_dict[f"{label}_width"] = width
        comp_shape = _sourced(cfg, "attention_bias_config", f"{label}_feature_shape")
        if width is None:
            chk.add(f"{buf}", False, f"attention_bias_generator.{buf} is not dy*W + dx for any W",
                    fatal=True)
        elif _decisive(comp_shape) and isinstance(comp_shape.value, (list, tuple)):
            want = int(comp_shape.value[dim])
            chk.add(f"{buf}", width == want, f"attention_bias_generator.{buf} encodes width "
                    f"{width}; {label}_feature_shape={_as_list(comp_shape.value)} "
                    f"({comp_shape.source}) has width {want}", fatal=True)


def _check_modulator(sd, pre, cfg, chk: _Checks) -> None:
    has = pre + "feature_modulator.modulation_scale" in sd
    learn = _sourced(cfg, "modulator_config", "learnable_modulation")
    if (has or any(k.startswith(pre + "aqr_weight_generator.") for k in sd)) and _decisive(learn):
        chk.add("modulator parameters", bool(learn.value) == has,
                f"feature_modulator parameters {'present' if has else 'absent'}, "
                f"learnable_modulation={learn.value}")


def _check_reference_points(sd, pre, cfg, shapes, chk: _Checks) -> None:
    ref = _tensor(sd, pre + "reference_points.weight")
    if ref is None:
        return
    shapes.state_dict["reference_points"] = list(ref.shape)
    if ref.dim() != 2 or ref.shape[1] != 3:
        chk.add("reference points", False, f"reference_points.weight has shape {list(ref.shape)}, "
                "expected [num_query, 3]", fatal=True)
        return
    nq = _sourced(cfg, None, "num_query")
    if _decisive(nq):
        chk.add("reference points", int(ref.shape[0]) == nq.value, f"reference_points.weight is "
                f"{list(ref.shape)}; num_query={nq.value} ({nq.source})", fatal=True)


def _raise_fatal(path: Path, checks: list[Check]) -> None:
    fatal = [c for c in checks if c.fatal]
    if fatal:
        more = f" (and {len(fatal) - 1} more mismatch(es))" if len(fatal) > 1 else ""
        raise ShapeMismatchError(path, f"shapes disagree with the config: {fatal[0].message}{more}")


def verify_checkpoint(lf: LoadedFile, config_path: str | os.PathLike | None = None) -> None:
    """The config-vs-tensor checks every command applies to a checkpoint (one verdict per file).

    Raises :class:`ShapeMismatchError` (one line, naming the file) when the config the commands
    would use (``config_path``, else ``meta['config']``) cannot describe the tensors.
    """
    cfg, _, _, _ = resolve_config(lf, config_path)
    sd = lf.state_dict
    _, checks = _shapes_and_checks(sd, head_prefix(sd), cfg)
    _raise_fatal(lf.path, checks)


def _enable_check(comps, cfg, checks: list[Check]) -> None:
    enable = _sourced(cfg, None, "enable_aqr")
    has = any(c.evidence == "state_dict" for c in comps.values())
    if _decisive(enable):
        ok = bool(enable.value) == has
        checks.append(Check("enable_aqr", "ok" if ok else "mismatch",
                            f"AQR keys {'present' if has else 'absent'}, enable_aqr={enable.value}"))


# ---------------------------------------------------------------- values


def _bias_scale(sd, pre, cfg) -> BiasScaleReport | None:
    t = _tensor(sd, pre + "attention_bias_generator.bias_scale")
    if t is None or t.numel() != 1:
        return None
    raw = float(t.detach().float().reshape(-1)[0])
    vals, src = {}, "config"
    for key, dflt in UPSTREAM_BIAS_DEFAULTS.items():
        item = _sourced(cfg, "attention_bias_config", key)
        vals[key] = dflt if item is None or item.value is None else item.value
    if cfg is None:
        src = "upstream defaults (no config)"
    learnable = bool(vals["learnable_scale"])
    lo, hi = float(vals["min_scale"]), float(vals["max_scale"])
    eff = float(np.clip(np.float32(raw), np.float32(lo), np.float32(hi))) if learnable else raw
    return BiasScaleReport(raw=raw, effective=eff, init=float(vals["bias_scale"]), min=lo, max=hi,
                           learnable=learnable, shape=list(t.shape), settings_source=src)


def _weight_head(sd, pre) -> WeightHeadReport | None:
    b = _tensor(sd, pre + "aqr_weight_generator.weight_predictor.bias")
    w = _tensor(sd, pre + "aqr_weight_generator.weight_predictor.weight")
    if b is None or b.numel() != 2:
        return None
    norms = [float(x) for x in w.float().norm(dim=1)] if w is not None and w.dim() == 2 else []
    return WeightHeadReport(bias_raw=[float(x) for x in b.float()], weight_row_norm=norms)


def _nonfinite(tensors: Mapping[str, Any]) -> NonFiniteReport:
    """NaN/Inf per floating tensor; one batched test for the many small ones, each tensor once."""
    floats: dict[int, Any] = {}
    kind: dict[int, bool] = {}  # id -> a non-empty floating tensor (asked once per tensor)
    keys: list[tuple[str, int]] = []
    for key, t in tensors.items():
        i = id(t)
        if i not in kind:
            kind[i] = isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel() > 0
            if kind[i]:
                floats[i] = t
        if kind[i]:
            keys.append((key, i))
    small = [t for t in floats.values() if t.numel() <= 4096]
    suspects = {i for i, t in floats.items() if t.numel() > 4096}
    if small:
        flat = torch.cat([t.detach().reshape(-1).float() for t in small])
        if not bool(torch.isfinite(flat).all()):
            suspects |= {id(t) for t in small}
    bad = []
    for key, i in keys:
        t = floats[i]
        if i in suspects and not bool(torch.isfinite(t).all()):
            bad.append({"key": key, "nan": int(torch.isnan(t).sum()), "inf": int(torch.isinf(t).sum())})
    return NonFiniteReport(len(keys), bad)


def _projector(pc_range, bev, pers):
    """An AQRWeightGenerator used only for ``project_3d_to_features`` (tiny encoder)."""
    from aqr_cli.core.generator import AQRWeightGenerator

    enc = dict(type="PETRTransformerDecoder", num_layers=1, transformerlayers=dict(
        type="PETRTransformerDecoderLayer",
        attn_cfgs=[dict(type="PETRMultiheadFlashAttention", embed_dims=8, num_heads=1)],
        ffn_cfgs=dict(embed_dims=8, feedforward_channels=8, num_fcs=2),
        operation_order=("cross_attn", "norm", "ffn", "norm")))
    return AQRWeightGenerator(embed_dims=8, encoder_config=enc, window_sizes=[1, 1],
                              use_type_embed=False, pc_range=pc_range, bev_feature_shape=bev,
                              pers_feature_shape=pers)


def _upstream_fov(xyz: np.ndarray, rig: CameraRig) -> np.ndarray:
    """[V, N] in-FOV flags as AQR tests them: depth clipped to [1e-5, 99999], no depth test."""
    hom = np.concatenate([xyz, np.ones((len(xyz), 1))], axis=1).astype(np.float32)
    q = np.einsum("vij,nj->vni", rig.lidar2img.astype(np.float32), hom)
    d = np.clip(q[..., 2], 1e-5, 99999)
    px, py = q[..., 0] / d, q[..., 1] / d
    h, w = rig.img_shape
    return (px >= 0) & (px < w) & (py >= 0) & (py < h)


def _denormalize(ref: torch.Tensor, pc: Sequence[float]) -> np.ndarray:
    r = ref.detach().double().numpy()
    lo, hi = np.asarray(pc[:3], dtype=np.float64), np.asarray(pc[3:], dtype=np.float64)
    return r * (hi - lo) + lo


def _reference_points(sd, pre, cfg, shapes: ShapesReport, rig: CameraRig, rig_label: str
                      ) -> RefPointsReport | None:
    ref = _tensor(sd, pre + "reference_points.weight")
    if ref is None or ref.dim() != 2 or ref.shape[1] != 3 or not ref.is_floating_point():
        return None
    r = ref.detach().float()
    finite = bool(torch.isfinite(r).all())
    outside_unit = int(((r < 0) | (r >= 1)).any(dim=1).sum()) if finite else 0
    outside_closed = int(((r < 0) | (r > 1)).any(dim=1).sum()) if finite else 0
    rep = RefPointsReport(count=int(r.shape[0]), min=[float(v) for v in r.min(0).values],
                          max=[float(v) for v in r.max(0).values],
                          outside_unit_count=outside_unit, outside_closed_count=outside_closed,
                          rig=rig_label)
    if not finite:
        rep.error = "reference points hold NaN/Inf; not projected"
        return rep
    pc = _sourced(cfg, None, "pc_range")
    pc = list(pc.value) if pc is not None and isinstance(pc.value, (list, tuple)) and len(pc.value) == 6 \
        else [-54.0, -54.0, -5.0, 54.0, 54.0, 3.0]
    bev = shapes.bev if shapes.bev and None not in shapes.bev else [128, 128]
    pers = shapes.pers if shapes.pers and None not in shapes.pers else \
        [rig.num_views, max(1, rig.img_shape[0] // 16), max(1, rig.img_shape[1] // 16)]
    if pers[0] != rig.num_views:
        rep.error = (f"the rig has {rig.num_views} cameras but the config {pers[0]} views; "
                     "camera visibility not computed")
        return rep
    try:
        gen = _projector(pc, bev, pers)
        metas = rig.img_metas(1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", QuirkWarning)
            pts_bev = gen.project_3d_to_features(r[None], metas)[0][0]
            view = gen.first_valid_view(r[None], metas)[0]
    except AQRInputError as e:
        rep.error = f"projection failed: {e}"
        return rep
    h, w = bev
    rows, cols = pts_bev[:, 0], pts_bev[:, 1]
    rep.bev_outside_grid = int(((rows < 0) | (rows >= h) | (cols < 0) | (cols >= w)).sum())
    rep.unseen_count = int((view == -1).sum())
    counts = torch.bincount(view[view >= 0], minlength=rig.num_views)
    rep.per_view = {name: int(counts[i]) for i, name in enumerate(rig.camera_names)}
    xyz = _denormalize(r, pc)
    rep.multi_view_count = int((_upstream_fov(xyz, rig).sum(axis=0) >= 2).sum())
    true_view, _, _ = project_points_to_cameras(xyz, rig)
    rep.depth_test_disagree = int((true_view != view.numpy()).sum())
    return rep


# ---------------------------------------------------------------- checkpoints


def _rig(rig: CameraRig | str | os.PathLike | None) -> tuple[CameraRig, str]:
    if rig is None:
        return default_rig(), "default"
    if isinstance(rig, CameraRig):
        return rig, "given"
    return load_rig(rig), os.fspath(rig)


def inspect_checkpoint(path: str | os.PathLike | LoadedFile, *,
                       rig: CameraRig | str | os.PathLike | None = None,
                       config_path: str | os.PathLike | None = None,
                       trust: bool = False) -> CheckpointReport:
    """Inspect one checkpoint: components, shapes vs config, bias scale, weight head, reference
    points under ``rig`` (default: the packaged 800x320 rig), NaN/Inf and the quirk findings.

    ``path`` may be an already loaded :class:`LoadedFile`. ``config_path`` replaces
    ``meta['config']`` (parsed, never executed). Raises :class:`LoadError` for unreadable files and
    :class:`ShapeMismatchError` when the config does not describe the tensors.
    """
    lf = path if isinstance(path, LoadedFile) else load_file(path, trust=trust, expect="checkpoint")
    if lf.kind != "checkpoint":
        raise LoadError(lf.path, "expected a checkpoint, but the file is an AQR debug dump")
    rig_obj, rig_label = _rig(rig)
    cfg, parsed, cfg_source, notes = resolve_config(lf, config_path)
    notes = list(lf.notes) + notes
    sd = lf.state_dict
    prefix = head_prefix(sd)
    comps = _components(sd, prefix, cfg)
    shapes, checks = _shapes_and_checks(sd, prefix, cfg)
    _raise_fatal(lf.path, checks)
    _enable_check(comps, cfg, checks)
    pre = prefix or ""
    if not any(c.evidence == "state_dict" for c in comps.values()):
        notes.append("no AQR component keys: a baseline (enable_aqr=False) or non-CMT checkpoint")
    if cfg is None:
        notes.append("no config (neither meta['config'] nor --config): shapes are read from the "
                     "tensors and bias_scale settings are the upstream defaults")
    report = CheckpointReport(
        path=os.fspath(lf.path), name=lf.name, format=lf.format, size_bytes=lf.size_bytes,
        container=lf.container, mmapped=lf.mmapped, trusted=lf.trusted,
        has_optimizer=lf.has_optimizer, meta=_meta_dict(lf), num_tensors=len(sd),
        head_prefix=prefix, config_source=cfg_source, config=cfg, components=comps,
        shapes=shapes, checks=checks, bias_scale=_bias_scale(sd, pre, cfg),
        weight_head=_weight_head(sd, pre),
        reference_points=_reference_points(sd, pre, cfg, shapes, rig_obj, rig_label),
        nonfinite=_nonfinite(sd), notes=notes, inert_records=list(lf.records))
    if report.reference_points is not None and report.reference_points.error:
        notes.append(f"reference points: {report.reference_points.error}")
    ctx = CheckpointContext(report, cfg, parsed, sd, pre,
                            torch_version_from_env(lf.meta.raw.get("env_info")))
    report.findings = _with_bias_health(checkpoint_findings(ctx), report)
    return report


def _with_bias_health(findings: list, report) -> list:
    """The quirk findings plus the bias-health ones (README "Reading bands"), by severity."""
    from aqr_cli.analysis.findings import Finding, sort_findings
    from aqr_cli.analysis.health import scale_health

    b, m = report.bias_scale, report.meta
    if b is None:
        return findings
    trained = bool(m.get("epoch") or m.get("iter"))
    extra = [Finding(**f) for f in scale_health(b.effective, raw=b.raw, learnable=b.learnable,
                                                  min_scale=b.min, max_scale=b.max, init=b.init,
                                                  trained=trained)]
    return sort_findings(findings + extra)


# ---------------------------------------------------------------- debug dumps


def _describe_value(v: Any) -> dict[str, Any]:
    if isinstance(v, torch.Tensor):
        return {"type": "tensor", "shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")}
    if isinstance(v, np.ndarray):
        return {"type": "ndarray", "shape": list(v.shape), "dtype": str(v.dtype)}
    if isinstance(v, (list, tuple)):
        return {"type": type(v).__name__, "len": len(v)}
    if isinstance(v, Mapping):
        return {"type": "dict", "len": len(v)}
    if isinstance(v, (bool, int, float)) or v is None:
        return {"type": type(v).__name__, "value": v}
    return {"type": type(v).__name__}


def _dump_metas(lf: LoadedFile) -> tuple[dict, list[dict]]:
    dump = lf.dump
    metas = [m for m in dump.img_metas if isinstance(m, Mapping)]
    shapes = set()
    for m in metas:
        img_shape = m.get("img_shape")
        for s in (img_shape if isinstance(img_shape, (list, tuple)) else []):
            if isinstance(s, (list, tuple)) and len(s) >= 2 and all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in s[:2]):
                shapes.add((int(s[0]), int(s[1])))
    summary = {
        "count": len(dump.img_metas),
        "keys": list(metas[0].keys()) if metas else [],
        "img_shapes": [list(s) for s in sorted(shapes)],
        "has_lidar2img": bool(metas) and all("lidar2img" in m for m in metas),
        "box_mode": [m.name if m is not None else None for m in dump.box_mode],
    }
    return summary, metas


def _gt_boxes(lf: LoadedFile) -> dict:
    dump = lf.dump
    raw_metas = lf.raw.get("img_metas") if isinstance(lf.raw, Mapping) else None
    raw_metas = raw_metas if isinstance(raw_metas, (list, tuple)) else []
    in_dc = any(isinstance(m, Mapping) and isinstance(m.get("gt_bboxes_3d"), DataContainer)
                for m in raw_metas)
    per = [None if b is None else int(b.shape[0]) for b in dump.gt_boxes]
    present = any(p is not None for p in per)
    labels = [None if lab is None else [int(x) for x in lab.reshape(-1)] for lab in dump.gt_labels]
    return {"present": present, "count": sum(p for p in per if p) if present else 0,
            "per_sample": per, "labels": labels, "in_data_container": in_dc}


def _dump_shapes(tensors: Mapping[str, Any], path: Path) -> tuple[dict, int, int]:
    """Shapes of a dump and its (B, Nq); their consistency was checked when the file was loaded
    (:mod:`aqr_cli.io.validate`, the same verdict for every command)."""
    lw = tensors["lidar_weights"]
    b, nq = int(lw.shape[0]), int(lw.shape[1])
    shapes: dict[str, Any] = {"bev": None, "pers": None, "aqr_window_sizes": None,
                              "bias_window": None, "source": "dump"}
    mb, mp = tensors.get("weight_map_bev"), tensors.get("weight_map_pers")
    if mb is not None:
        shapes["bev"] = [int(mb.shape[1]), int(mb.shape[2])]
    if mp is not None:
        shapes["pers"] = [int(s) for s in mp.shape[1:]]
    return shapes, b, nq


def _check_dump_vs_config(shapes: dict, cfg: AQRConfig | None, path: Path, checks: list[Check]):
    if cfg is None:
        return
    for key, label in (("bev", "bev_feature_shape"), ("pers", "pers_feature_shape")):
        item = cfg.aqr_config.get(label)
        if shapes[key] is None or not _decisive(item):
            continue
        want = _as_list(item.value)
        if list(shapes[key]) != list(want):
            raise ShapeMismatchError(path, f"shapes disagree with the config: the dump's {key} maps "
                                     f"are {shapes[key]}, but aqr_config.{label}={want} "
                                     f"({item.source})")
        checks.append(Check(f"dump {key} shape", "ok", f"{key} maps {shapes[key]} match {label}"))
    shapes["aqr_window_sizes"] = _as_list(cfg.aqr_config["window_sizes"].value)
    ws = cfg.attention_bias_config["window_size"].value
    shapes["bias_window"] = ws if isinstance(ws, int) else None


def _sentinel(lf: LoadedFile, metas: list[dict], shapes: dict, b: int, nq: int, num_query: int,
              ckpt: LoadedFile | None, ckpt_cfg: AQRConfig | None, notes: list[str]) -> dict:
    """Q3 for a dump: the exact count needs the checkpoint's reference points (not in dumps)."""
    mp = lf.dump.tensors.get("weight_map_pers")
    cell = [float(mp[i, 0, 0, 0]) for i in range(b)] if mp is not None and mp.numel() else None
    out: dict[str, Any] = {"decidable": False, "count": None, "total": None, "per_sample": None,
                           "checkpoint": None, "matches_dump": None, "cell_value": cell,
                           "reason": "the dump holds no pts_pers or reference points; pass "
                                     "--checkpoint with the run's checkpoint to count them"}
    if ckpt is None:
        return out
    out["checkpoint"] = ckpt.name
    pre = head_prefix(ckpt.state_dict) or ""
    ref = _tensor(ckpt.state_dict, pre + "reference_points.weight")
    if ref is None or ref.dim() != 2 or ref.shape[1] != 3:
        out["reason"] = f"{ckpt.name} holds no reference_points.weight [N, 3]"
        return out
    if nq < ref.shape[0] or not metas or len(metas) != b or shapes["bev"] is None \
            or shapes["pers"] is None:
        out["reason"] = "the dump's queries, img_metas or maps do not fit the reference points"
        return out
    pc = _sourced(ckpt_cfg, None, "pc_range")
    pc = list(pc.value) if pc is not None and isinstance(pc.value, (list, tuple)) \
        else [-54.0, -54.0, -5.0, 54.0, 54.0, 3.0]
    refs = ref.detach().float()[None].expand(b, -1, -1).contiguous()
    try:
        gen = _projector(pc, shapes["bev"], shapes["pers"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", QuirkWarning)
            pts_bev = gen.project_3d_to_features(refs, metas)[0]
            view = gen.first_valid_view(refs, metas)
    except AQRInputError as e:
        out["reason"] = f"projection with the dump's img_metas failed: {e}"
        return out
    n = int(ref.shape[0])
    dump_bev = lf.dump.tensors.get("pts_bev")
    match = None if dump_bev is None else bool(torch.equal(dump_bev[:, nq - n:].float(), pts_bev))
    if match is False:
        notes.append(f"the reference points of {ckpt.name} do not reproduce this dump's pts_bev: "
                     "the Q3 count is for that checkpoint, not necessarily for this dump")
    per = [int((view[i] == -1).sum()) for i in range(b)]
    out.update(decidable=True, count=sum(per), total=n * b, per_sample=per, matches_dump=match,
               reason=None)
    return out


def inspect_dump(path: str | os.PathLike | LoadedFile, *,
                 checkpoint: str | os.PathLike | LoadedFile | None = None,
                 config_path: str | os.PathLike | None = None,
                 trust: bool = False) -> DumpReport:
    """Inspect one upstream debug dump: contents, iteration, queries and DN share (Q19), weight
    and map statistics, GT boxes, and the dump quirks (Q1, Q2, Q3 with ``checkpoint``, Q4, Q19,
    Q28, Q29, Q38).

    ``checkpoint`` supplies the reference points (for the exact Q3 count) and, unless
    ``config_path`` is given, the config (for ``num_query`` and the shape cross-check).
    """
    lf = path if isinstance(path, LoadedFile) else load_file(path, trust=trust, expect="debug_dump")
    if lf.kind != "debug_dump":
        raise LoadError(lf.path, "expected an AQR debug dump, but the file is a checkpoint")
    ck = checkpoint
    if ck is not None and not isinstance(ck, LoadedFile):
        ck = load_file(ck, trust=trust, expect="checkpoint")
    cfg, _, cfg_source, notes = resolve_config(ck, config_path)
    notes = list(lf.notes) + notes
    if cfg_source is not None and cfg_source["kind"] == "meta" and ck is not None:
        cfg_source = {"kind": "meta", "label": f"{ck.name}:meta['config']"}
    dump = lf.dump
    shapes, b, nq = _dump_shapes(dump.tensors, lf.path)
    checks: list[Check] = []
    _check_dump_vs_config(shapes, cfg, lf.path, checks)
    nq_item = _sourced(cfg, None, "num_query")
    num_query = int(nq_item.value) if nq_item is not None and isinstance(nq_item.value, int) else 900
    queries = split_dn(nq, num_query)
    queries["num_query"] = num_query
    if nq < num_query:
        notes.append(f"{nq} queries per sample, fewer than num_query={num_query}")
    meta_summary, metas = _dump_metas(lf)
    pb = dump.tensors.get("pts_bev")
    outside = 0
    if pb is not None and shapes["bev"] is not None:
        h, w = shapes["bev"]
        outside = int(((pb[..., 0] < 0) | (pb[..., 0] >= h) | (pb[..., 1] < 0) | (pb[..., 1] >= w)).sum())
    weights = {"lidar": weight_stats(dump.tensors["lidar_weights"]),
               "camera": weight_stats(dump.tensors["camera_weights"]),
               "by_query_group": weights_by_query_group(dump.tensors["lidar_weights"].float(),
                                                        dump.tensors["camera_weights"].float(),
                                                        num_query)}
    maps = {}
    if "weight_map_bev" in dump.tensors:
        maps["bev"] = map_stats(dump.tensors["weight_map_bev"], dump.tensors["lidar_weights"])
    if "weight_map_pers" in dump.tensors:
        maps["pers"] = map_stats(dump.tensors["weight_map_pers"], dump.tensors["camera_weights"])
    contents = [{"key": str(k), **_describe_value(v)}
                for k, v in (lf.raw.items() if isinstance(lf.raw, Mapping) else [])]
    report = DumpReport(
        path=os.fspath(lf.path), name=lf.name, format=lf.format, size_bytes=lf.size_bytes,
        container=lf.container, trusted=lf.trusted, iteration=dump.iteration, contents=contents,
        batch_size=b, queries=queries, shapes=shapes, weights=weights, maps=maps,
        gt_boxes=_gt_boxes(lf),
        sentinel=_sentinel(lf, metas, shapes, b, nq, num_query, ck, cfg, notes),
        img_metas=meta_summary, bev_outside_grid=outside, config_source=cfg_source, config=cfg,
        nonfinite=_nonfinite(dump.tensors), checks=checks, notes=notes,
        inert_records=list(lf.records))
    report.findings = dump_findings(report)
    return report


def inspect_file(path: str | os.PathLike, *, rig: CameraRig | str | os.PathLike | None = None,
                 config_path: str | os.PathLike | None = None, trust: bool = False,
                 checkpoint: str | os.PathLike | LoadedFile | None = None
                 ) -> CheckpointReport | DumpReport:
    """:func:`inspect_checkpoint` or :func:`inspect_dump`, whichever ``path`` holds."""
    lf = load_file(path, trust=trust)
    if lf.kind == "debug_dump":
        return inspect_dump(lf, checkpoint=checkpoint, config_path=config_path, trust=trust)
    return inspect_checkpoint(lf, rig=rig, config_path=config_path, trust=trust)


# ---------------------------------------------------------------- key tree


_MAX_CHILDREN = 50


def _node(name: str, value: Any, depth: int, in_state_dict: bool = False) -> dict[str, Any]:
    node: dict[str, Any] = {"key": name}
    if isinstance(value, torch.Tensor):
        node.update(type="tensor", shape=list(value.shape),
                    dtype=str(value.dtype).replace("torch.", ""))
        return node
    if isinstance(value, np.ndarray):
        node.update(type="ndarray", shape=list(value.shape), dtype=str(value.dtype))
        return node
    if isinstance(value, Placeholder):
        node["type"] = type(value).upstream_name()
        children = list(vars(value).items())
    elif isinstance(value, Mapping):
        node["type"] = type(value).__name__
        children = list(value.items())
    elif isinstance(value, (list, tuple)):
        node["type"] = type(value).__name__
        if value and all(isinstance(v, (int, float, str, bool)) or v is None for v in value) \
                and len(value) <= 12:
            node["value"] = list(value)
            return node
        children = list(enumerate(value))
    elif isinstance(value, str):
        node["type"] = "str"
        node["value" if len(value) <= 80 and "\n" not in value else "len"] = \
            value if len(value) <= 80 and "\n" not in value else len(value)
        return node
    elif isinstance(value, (bool, int, float)) or value is None:
        node.update(type=type(value).__name__, value=value)
        return node
    elif isinstance(value, type):
        node.update(type="class", value=getattr(value, "upstream_name", lambda: value.__name__)())
        return node
    else:
        node.update(type=type(value).__name__, value=str(value)[:80])
        return node
    node["len"] = len(children)
    limit = None if in_state_dict else _MAX_CHILDREN
    if limit is not None and len(children) > limit:
        node["truncated"] = len(children) - limit
        children = children[:limit]
    node["children"] = [_node(str(k), v, depth + 1, in_state_dict) for k, v in children]
    return node


def _module_tree(name: str, flat: Mapping[str, Any]) -> dict[str, Any]:
    """A flat ``a.b.c -> tensor`` mapping as a module tree with element counts per node."""
    root: dict[str, Any] = {"key": name, "type": "state_dict", "children": []}
    index: dict[tuple, dict] = {(): root}
    for key, value in flat.items():
        parts = key.split(".")
        for i in range(1, len(parts)):
            path = tuple(parts[:i])
            if path not in index:
                node = {"key": parts[i - 1], "type": "module", "children": []}
                index[path[:-1]]["children"].append(node)
                index[path] = node
        leaf = _node(parts[-1], value, len(parts))
        index[tuple(parts[:-1])]["children"].append(leaf)

    def count(node):
        if "children" not in node:
            return int(math.prod(node.get("shape") or [])) if node.get("type") == "tensor" else 0
        node["numel"] = sum(count(c) for c in node["children"])
        return node["numel"]

    count(root)
    return root


def key_tree(lf: LoadedFile) -> dict[str, Any]:
    """The file's structure as nested ``{key, type, shape, dtype, value, len, children}`` nodes.

    The state dict is shown as a module tree (split at dots) with element counts; other
    containers with more than 50 entries are cut (``truncated`` says how many were left out).
    """
    raw = lf.raw
    root: dict[str, Any] = {"key": lf.name, "type": lf.format, "children": []}
    if lf.kind == "checkpoint" and lf.format in ("bare-state-dict", "safetensors"):
        root["children"] = [_module_tree("state_dict", lf.state_dict)]
        return root
    if not isinstance(raw, Mapping):
        root["children"] = [_node("object", raw, 1)]
        return root
    for key, value in raw.items():
        if lf.kind == "checkpoint" and key in ("state_dict", "model") and isinstance(value, Mapping):
            root["children"].append(_module_tree(str(key), lf.state_dict))
        else:
            root["children"].append(_node(str(key), value, 1))
    return root


# ---------------------------------------------------------------- across epochs


def epoch_series(reports: Sequence[CheckpointReport]) -> dict[str, Any]:
    """Arrays for :func:`aqr_cli.plots.inspect.epoch_evolution_figure`, sorted along x.

    x is the epoch when every checkpoint has one, else the iteration, else the file order.
    Missing values are NaN. Keys: ``x`` [N], ``x_label``, ``names`` [N], ``bias_raw``,
    ``bias_effective`` [N], ``bias_init``, ``bias_min``, ``bias_max`` (floats or None),
    ``head_bias`` / ``head_bias_tanh`` / ``head_row_norm`` [N, 2] (LiDAR, camera).
    """
    reps = [r for r in reports if isinstance(r, CheckpointReport)]
    epochs = [r.meta.get("epoch") for r in reps]
    iters = [r.meta.get("iter") for r in reps]
    if reps and all(e is not None for e in epochs):
        x, label = [float(e) for e in epochs], "epoch"
    elif reps and all(i is not None for i in iters):
        x, label = [float(i) for i in iters], "iteration"
    else:
        x, label = [float(i) for i in range(len(reps))], "file (argument order)"
    order = sorted(range(len(reps)), key=lambda i: (x[i], reps[i].name))
    nan2 = [math.nan, math.nan]

    def pick(fn):
        return np.array([fn(reps[i]) for i in order], dtype=np.float64)

    def first(attr):
        vals = [getattr(r.bias_scale, attr) for r in reps if r.bias_scale is not None]
        return vals[0] if vals and all(v == vals[0] for v in vals) else None

    wh = lambda r, f: (f(r.weight_head) if r.weight_head is not None else nan2)  # noqa: E731
    return {
        "x": np.array([x[i] for i in order], dtype=np.float64), "x_label": label,
        "names": [reps[i].name for i in order],
        "bias_raw": pick(lambda r: r.bias_scale.raw if r.bias_scale else math.nan),
        "bias_effective": pick(lambda r: r.bias_scale.effective if r.bias_scale else math.nan),
        "bias_init": first("init"), "bias_min": first("min"), "bias_max": first("max"),
        "head_bias": pick(lambda r: wh(r, lambda w: w.bias_raw)),
        "head_bias_tanh": pick(lambda r: wh(r, lambda w: w.bias_tanh)),
        "head_row_norm": pick(lambda r: wh(r, lambda w: w.weight_row_norm or nan2)),
    }
