"""Typed events a training log yields, in the order the parser meets them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

@dataclass
class TrainRecord:
    """One training log record (``Epoch [e][i/N]`` or a JSON ``mode: train`` line).

    ``iter`` is the iteration inside the epoch (1-based as logged); ``iters_per_epoch`` is the
    ``N`` of ``[i/N]`` when the format prints it. ``losses`` holds every key with ``loss`` in its
    name except the total ``loss`` (decoder layers ``d0.`` ... and DN terms included), in log
    order; ``extra`` any other numeric field. Missing fields are None, ``nan`` stays a float NaN.
    """

    line: int
    epoch: int | None
    iter: int
    iters_per_epoch: int | None = None
    lr: float | None = None
    time: float | None = None
    data_time: float | None = None
    memory: float | None = None
    loss: float | None = None
    grad_norm: float | None = None
    losses: dict[str, float] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)

    def global_iter(self, fallback_per_epoch: int | None = None) -> int:
        """Iterations since the start of training (epochs before this one counted in full)."""
        per = self.iters_per_epoch or fallback_per_epoch
        if self.epoch is None or not per:
            return self.iter
        return (self.epoch - 1) * per + self.iter


@dataclass
class ValRecord:
    """One validation record with metrics (``Epoch(val) [e][n]``, or JSON ``mode: val``).

    ``values``: every numeric field, the metric prefix (``pts_bbox_NuScenes/``,
    ``NuScenes metric/pred_instances_3d_NuScenes/``) removed.
    """

    line: int
    epoch: int | None
    iter: int | None
    values: dict[str, float] = field(default_factory=dict)


@dataclass
class DebugBlock:
    """One AQR debug print.

    ``kind``: ``'modulation'`` (old scheme, ``AQR Debug Info (Forward #N)``), ``'bias_monitor'``
    (new scheme, ``[AttentionBias] Monitoring Report (Iter N)``, spec 5.3) or ``'head_bias'``
    (``AQR Attention Bias Debug (Iteration N)`` of ``CmtHead``). ``counter`` is the printing
    process's own call counter; ``order`` the position among blocks with the same kind and
    counter, in order of appearance (ranks print in no fixed order and without their rank).
    ``sections`` maps a section (``lidar_weights_stats``, ``bias``, ``scale`` ...) to its values;
    ``complete`` is False when the block was cut (end of file, interleaved log record).
    """

    line: int
    kind: str
    counter: int
    order: int = 0
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    complete: bool = True

    def value(self, section: str, key: str) -> float | None:
        v = self.sections.get(section, {}).get(key)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


@dataclass
class HeaderItem:
    """One fact of the run header: ``key`` (``torch``, ``seed``, ``work_dir`` ...) and its value."""

    line: int
    key: str
    value: Any


@dataclass
class ConfigText:
    """The config as the log printed it (mmcv ``Config:`` dump, or the JSON log's ``config``)."""

    line: int
    text: str
    truncated: bool = False


@dataclass
class ModelParts:
    """AQR submodules named in the printed model (``Model:`` repr)."""

    line: int
    parts: tuple[str, ...]


Event = Union[TrainRecord, ValRecord, DebugBlock, HeaderItem, ConfigText, ModelParts]
