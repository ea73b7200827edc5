"""What ``inspect-checkpoint`` reports, as dataclasses: one per checkpoint, one per debug dump.

:class:`CheckpointReport` and :class:`DumpReport` are the results; their ``to_dict`` is the JSON
document (schema in ``README.md, section aqr inspect-checkpoint``). ``Check`` and
``ShapesReport`` come from the checks every command applies (:mod:`aqr_cli.inputs.checks`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aqr_cli.analysis.findings import Finding, torch_version_from_env
from aqr_cli.inputs.checks import Check, ShapesReport
from aqr_cli.io.checkpoint import LoadedFile
from aqr_cli.io.config_parse import AQRConfig

WEIGHT_HEAD_BIAS_INIT = 1.5
"""``AQRWeightGenerator.init_weights`` sets ``weight_predictor.bias`` to this constant."""


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


def meta_dict(lf: LoadedFile) -> dict[str, Any]:
    """The run facts of a checkpoint's meta, as the report shows them."""
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
