"""Checkpoints and debug dumps as one normalised :class:`LoadedFile`.

Formats recognised (``LoadedFile.format``):

- ``mmcv1-runner``: ``{'meta', 'state_dict'[, 'optimizer']}`` (mmcv 1.x ``save_checkpoint``)
- ``mmengine``: ``{'meta', 'state_dict', 'message_hub', ...}`` (mmengine runner)
- ``state-dict-wrapper``: ``{'state_dict': ...}`` without ``meta``
- ``model-wrapper``: ``{'model': ...}``
- ``bare-state-dict``: a flat ``name -> tensor`` mapping
- ``safetensors``: a ``.safetensors`` file
- ``debug-dump``: ``aqr_debug_weights/weights_iter_N.pth`` (spec 6.2)
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aqr_cli.io.errors import LoadError
from aqr_cli.io.placeholders import (
    BOX_CLASSES,
    DataContainer,
    InertRecord,
    Placeholder,
    is_record_class,
    placeholder_by_name,
)
from aqr_cli.io.safe_load import RawLoad, safe_torch_load
from aqr_cli.io.validate import validate_loaded

DUMP_KEYS = ("iteration", "weight_map_bev", "weight_map_pers", "lidar_weights", "camera_weights",
             "pts_bev", "modulated_bev_features", "modulated_pers_features",
             "original_bev_features", "original_pers_features", "img_metas")
"""Keys of the old-scheme debug dump ``weights_iter_N.pth`` (spec 6.2), in save order."""

_DUMP_REQUIRED = frozenset({"lidar_weights", "camera_weights"})
_DUMP_MIN_KEYS = 6
_WRAPPER_KEYS = ("state_dict", "model", "optimizer", "meta", "message_hub", "param_schedulers")


@dataclass
class CheckpointMeta:
    """What a checkpoint says about its run; every field None when the file does not say."""

    epoch: int | None = None
    iter: int | None = None
    versions: dict[str, str] = field(default_factory=dict)  # 'mmcv' -> '1.7.2', 'mmdet3d' -> ...
    config_text: str | None = None  # mmcv ``meta['config']`` / mmengine ``meta['cfg']``
    config_name: str | None = None  # ``exp_name`` (mmcv) or ``experiment_name`` (mmengine)
    classes: list[str] | None = None  # ``CLASSES`` (tuple or list) / ``dataset_meta['classes']``
    time: str | None = None
    seed: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)  # the whole meta, plain values


@dataclass
class DebugDump:
    """Contents of an upstream debug dump (spec 6.2), placeholders resolved to plain data.

    ``tensors`` holds every tensor-valued top-level entry in file order (``lidar_weights`` [B, Nq],
    ``weight_map_bev`` [B, H, W], ...). ``img_metas`` are plain dicts: numpy arrays and torch
    tensors stay as they are, ``DataContainer`` is replaced by its ``data``, boxes by
    ``{'type', 'tensor', 'box_dim', 'with_yaw'}``, ``box_type_3d`` by the class name, and
    ``box_mode_3d`` stays an ``IntEnum`` member (``int`` value and ``.name``).
    """

    iteration: int | None
    tensors: dict[str, Any]
    img_metas: list[dict[str, Any]]
    gt_boxes: list[Any]  # per sample: float tensor [N, box_dim] or None
    gt_labels: list[Any]  # per sample: int64 tensor [N] or None
    box_mode: list[Any]  # per sample: Box3DMode member (IntEnum) or None
    missing_keys: list[str] = field(default_factory=list)  # of DUMP_KEYS
    extra_keys: list[str] = field(default_factory=list)

    @property
    def batch_size(self) -> int | None:
        w = self.tensors.get("lidar_weights")
        return None if w is None or w.dim() < 1 else int(w.shape[0])

    @property
    def num_queries(self) -> int | None:
        """Nq of the dump (900 + DN padding in training dumps)."""
        w = self.tensors.get("lidar_weights")
        return None if w is None or w.dim() < 2 else int(w.shape[1])


@dataclass
class LoadedFile:
    """One checkpoint or debug dump, loaded safely and normalised."""

    path: Path
    kind: str  # 'checkpoint' | 'debug_dump'
    format: str  # see module docstring
    size_bytes: int
    state_dict: dict[str, Any]  # flat name -> tensor, 'module.' stripped; {} for dumps
    meta: CheckpointMeta
    has_optimizer: bool
    notes: list[str] = field(default_factory=list)  # e.g. "stripped 'module.' prefix from 33 keys"
    dump: DebugDump | None = None
    optimizer: Any = field(default=None, repr=False)  # the raw optimizer entry, if any
    container: str = "zip"  # 'zip' | 'legacy' | 'safetensors'
    mmapped: bool = False
    trusted: bool = False  # always False: no file is ever fully unpickled (kept for reports)
    records: list[str] = field(default_factory=list)  # foreign globals kept as inert records
    raw: Any = field(default=None, repr=False)  # the unpickled object as is

    @property
    def name(self) -> str:
        return self.path.name


def _is_tensor(x: Any) -> bool:
    import torch

    return isinstance(x, torch.Tensor)


def plain(value: Any) -> Any:
    """``value`` with stand-in objects replaced by plain data (see :class:`DebugDump`)."""
    import numpy as np

    if isinstance(value, DataContainer):
        return plain(value.data)
    if isinstance(value, InertRecord):
        return record_summary(value)
    if isinstance(value, BOX_CLASSES):
        box: Any = value
        return {"type": type(box).__name__, "tensor": box.tensor,
                "box_dim": box.box_dim, "with_yaw": box.with_yaw}
    if isinstance(value, type):
        if is_record_class(value):
            return f"{getattr(value, 'global_name')} (inert)"
        if value in placeholder_by_name().values():
            return value.__name__
        return f"{value.__module__}.{value.__qualname__}"
    if isinstance(value, enum.Enum) or _is_tensor(value) or isinstance(value, np.ndarray):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(plain(v) for v in value)
    if isinstance(value, Placeholder):
        return {k: plain(v) for k, v in vars(value).items()}
    return value


def stand_in(value: Any) -> tuple[str, dict[str, Any]] | None:
    """(upstream class name, fields) of a stand-in object the loader built, else None."""
    if isinstance(value, Placeholder):
        return type(value).upstream_name(), vars(value)
    return None


def record_summary(record: InertRecord) -> dict[str, Any]:
    """An inert record as plain data: the global it names and what the file passed to it."""
    rec: Any = record  # its fields are __slots__ filled by the unpickler
    out: dict[str, Any] = {"inert_global": rec.global_name}
    if rec.args:
        out["args"] = [plain(a) for a in rec.args]
    if rec.kwargs:
        out["kwargs"] = {str(k): plain(v) for k, v in rec.kwargs.items()}
    if rec.state is not None:
        out["state"] = plain(rec.state)
    if rec.items:
        out["items"] = [plain(v) for v in rec.items]
    if rec.setitems:
        out["setitems"] = [[plain(k), plain(v)] for k, v in rec.setitems]
    return out


def _as_int(x: Any) -> int | None:
    if isinstance(x, bool):
        return None
    if isinstance(x, int):
        return x
    if isinstance(x, str) and x.strip().lstrip("-").isdigit():
        return int(x.strip())
    try:
        import numpy as np

        if isinstance(x, np.integer):
            return int(x)
    except ImportError:
        pass
    return None


def parse_meta(meta: Mapping[str, Any], runtime: Mapping[str, Any] | None = None) -> CheckpointMeta:
    """Normalise an mmcv-1.x / mmengine ``meta`` dict (``runtime``: mmengine ``runtime_info``)."""
    runtime = runtime or {}
    out = CheckpointMeta(raw=plain(dict(meta)))
    out.epoch = _as_int(meta.get("epoch", runtime.get("epoch")))
    out.iter = _as_int(meta.get("iter", meta.get("iteration", runtime.get("iter"))))
    for key, value in meta.items():
        if isinstance(key, str) and key.endswith("_version") and isinstance(value, str):
            out.versions[key[: -len("_version")]] = value
    for key in ("config", "cfg"):
        if isinstance(meta.get(key), str):
            out.config_text = meta[key]
            break
    for key in ("exp_name", "experiment_name"):
        if isinstance(meta.get(key), str):
            out.config_name = meta[key]
            break
    classes = meta.get("CLASSES")
    if classes is None and isinstance(meta.get("dataset_meta"), Mapping):
        classes = meta["dataset_meta"].get("classes")
    if isinstance(classes, (list, tuple)):
        out.classes = [str(c) for c in classes]
    if isinstance(meta.get("time"), str):
        out.time = meta["time"]
    out.seed = _as_int(meta.get("seed"))
    return out


def flatten_state_dict(sd: Mapping[str, Any], notes: list[str]) -> dict[str, Any]:
    """Flat ``name -> tensor``: nested mappings joined with '.', DDP ``module.`` prefixes stripped."""
    flat: dict[str, Any] = {}
    skipped: list[str] = []
    nested = False

    def walk(prefix: str, d: Mapping[str, Any]) -> None:
        nonlocal nested
        for k, v in d.items():
            name = f"{prefix}{k}"
            if _is_tensor(v):
                flat[name] = v
            elif isinstance(v, Mapping):
                nested = True
                walk(name + ".", v)
            else:
                skipped.append(name)

    walk("", sd)
    if nested:
        notes.append("flattened nested state_dict entries with '.'")
    if skipped:
        notes.append(f"ignored {len(skipped)} non-tensor state_dict entries (e.g. {skipped[0]!r})")
    stripped = 0
    while flat and all(k.startswith("module.") for k in flat):
        flat = {k[len("module."):]: v for k, v in flat.items()}
        stripped += 1
    if stripped:
        times = "" if stripped == 1 else f" {stripped} times"
        notes.append(f"stripped 'module.' prefix{times} from {len(flat)} keys (DataParallel/DDP)")
    return flat


def is_debug_dump(obj: Any) -> bool:
    """True for a dict with the key set of the old-scheme debug dump (spec 6.2)."""
    if not isinstance(obj, Mapping):
        return False
    keys = {k for k in obj if isinstance(k, str)}
    return _DUMP_REQUIRED <= keys and len(keys & set(DUMP_KEYS)) >= _DUMP_MIN_KEYS


def _gt_from_meta(m: Mapping[str, Any]) -> tuple[Any, Any]:
    import numpy as np
    import torch

    boxes: Any = m.get("gt_bboxes_3d")
    while isinstance(boxes, DataContainer):
        boxes = boxes.data
    if isinstance(boxes, BOX_CLASSES):
        boxes = getattr(boxes, "tensor")
    if isinstance(boxes, np.ndarray):
        boxes = torch.from_numpy(boxes)
    labels = m.get("gt_labels_3d")
    while isinstance(labels, DataContainer):
        labels = labels.data
    if isinstance(labels, np.ndarray):
        labels = torch.from_numpy(labels)
    return (boxes if _is_tensor(boxes) else None), (labels if _is_tensor(labels) else None)


def parse_dump(obj: Mapping[str, Any], notes: list[str]) -> DebugDump:
    """Normalise a debug-dump dict (see :class:`DebugDump`)."""
    tensors = {k: v for k, v in obj.items() if _is_tensor(v)}
    metas_raw = obj.get("img_metas")
    if isinstance(metas_raw, Mapping):
        metas_raw = [metas_raw]
    metas_raw = list(metas_raw) if isinstance(metas_raw, (list, tuple)) else []
    metas = [plain(m) if isinstance(m, Mapping) else {} for m in metas_raw]
    gt_boxes, gt_labels, box_mode = [], [], []
    for m in metas_raw:
        b, lab = _gt_from_meta(m) if isinstance(m, Mapping) else (None, None)
        gt_boxes.append(b)
        gt_labels.append(lab)
        mode = m.get("box_mode_3d") if isinstance(m, Mapping) else None
        box_mode.append(mode if isinstance(mode, enum.Enum) else None)
    missing = [k for k in DUMP_KEYS if k not in obj]
    extra = [str(k) for k in obj if k not in DUMP_KEYS]
    if missing:
        notes.append("debug dump lacks " + ", ".join(missing))
    iteration = _as_int(obj.get("iteration"))
    return DebugDump(iteration=iteration, tensors=tensors, img_metas=metas, gt_boxes=gt_boxes,
                     gt_labels=gt_labels, box_mode=box_mode, missing_keys=missing, extra_keys=extra)


def _describe(obj: Any) -> str:
    if isinstance(obj, Mapping):
        keys = [repr(k) for k in list(obj)[:6]]
        more = ", ..." if len(obj) > 6 else ""
        return f"a dict with keys [{', '.join(keys)}{more}]" if keys else "an empty dict"
    return f"a {type(obj).__name__}"


def _load_notes(raw: RawLoad) -> list[str]:
    notes: list[str] = []
    if raw.container == "legacy":
        notes.append("legacy (pre-1.6, non-zip) torch.save format: not memory-mapped")
    if raw.records:
        shown = ", ".join(raw.records[:8]) + (f", ... ({len(raw.records)} in all)"
                                              if len(raw.records) > 8 else "")
        notes.append(f"kept as inert records (never imported or called): {shown}")
    return notes


def _from_object(path: Path, raw: RawLoad, size: int) -> LoadedFile:
    obj = raw.obj
    notes = _load_notes(raw)
    base: dict[str, Any] = dict(path=path, size_bytes=size, container=raw.container,
                                mmapped=raw.mmapped, records=list(raw.records), raw=obj)
    if raw.container == "safetensors":
        meta = parse_meta(raw.metadata)
        sd = flatten_state_dict(obj, notes)
        return LoadedFile(kind="checkpoint", format="safetensors", state_dict=sd, meta=meta,
                          has_optimizer=False, notes=notes, **base)
    if not isinstance(obj, Mapping):
        raise LoadError(path, f"not a checkpoint or AQR debug dump: the file holds {_describe(obj)}")
    if is_debug_dump(obj):
        dump = parse_dump(obj, notes)
        meta = CheckpointMeta(iter=dump.iteration)
        return LoadedFile(kind="debug_dump", format="debug-dump", state_dict={}, meta=meta,
                          has_optimizer=False, notes=notes, dump=dump, **base)
    optimizer = obj.get("optimizer")
    has_optimizer = optimizer is not None and not (isinstance(optimizer, Mapping) and not optimizer)
    fmt, sd_src, meta = _checkpoint_layout(path, obj)
    sd = flatten_state_dict(sd_src, notes)
    if not sd:
        notes.append("the state_dict holds no tensors")
    return LoadedFile(kind="checkpoint", format=fmt, state_dict=sd, meta=meta,
                      has_optimizer=has_optimizer, notes=notes, optimizer=optimizer, **base)


def _checkpoint_layout(path: Path, obj: Mapping[str, Any]
                       ) -> tuple[str, Mapping[str, Any], CheckpointMeta]:
    """(format, the state dict as stored, meta) of a checkpoint dict (see the module docstring)."""
    meta_src = obj.get("meta") if isinstance(obj.get("meta"), Mapping) else None
    if isinstance(obj.get("state_dict"), Mapping):
        hub = obj.get("message_hub")
        runtime = hub.get("runtime_info") if isinstance(hub, Mapping) else None
        mmengine = hub is not None or (meta_src is not None and (
            "mmengine_version" in meta_src or "cfg" in meta_src or "dataset_meta" in meta_src))
        if mmengine:
            fmt = "mmengine"
        elif meta_src is not None:
            fmt = "mmcv1-runner"
        else:
            fmt = "state-dict-wrapper"
        meta = parse_meta(meta_src if meta_src is not None else _top_level_meta(obj),
                          runtime if isinstance(runtime, Mapping) else None)
        return fmt, obj["state_dict"], meta
    if "model" in obj and (isinstance(obj["model"], Mapping) or hasattr(obj["model"], "state_dict")):
        if not isinstance(obj["model"], Mapping):
            raise LoadError(path, "'model' is a pickled module object, not a state_dict; "
                                  "its weights cannot be read without running its code")
        meta = parse_meta(meta_src if meta_src is not None else _top_level_meta(obj))
        return "model-wrapper", obj["model"], meta
    if obj and all(_is_tensor(v) for v in obj.values()):
        return "bare-state-dict", obj, CheckpointMeta()
    raise LoadError(path, f"not a checkpoint or AQR debug dump: the file holds {_describe(obj)} "
                          "(expected 'state_dict', 'model', a name -> tensor mapping, or the "
                          "debug-dump keys)")


def _top_level_meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Run information stored beside the weights (``{'model': ..., 'epoch': 3}`` style files)."""
    out = {k: v for k, v in obj.items() if isinstance(k, str) and k not in _WRAPPER_KEYS
           and not _is_tensor(v) and not isinstance(v, Mapping)}
    if "iter" not in out:
        for alt in ("iteration", "global_step", "step"):
            if alt in out:
                out["iter"] = out[alt]
                break
    return out


def load_file(path: str | os.PathLike, *, trust: bool | None = None, mmap: bool | None = None,
              expect: str | None = None) -> LoadedFile:
    """Load a checkpoint or debug dump safely, normalise and validate it.

    No file ever runs code (see :mod:`aqr_cli.io.safe_load`); ``trust`` is accepted for
    compatibility and ignored. ``mmap``: None = auto (zip files >= ``MMAP_MIN_BYTES``).
    ``expect``: ``'checkpoint'`` or ``'debug_dump'`` to refuse the other kind.
    Raises :class:`LoadError` (one line, naming the file) for every bad input, including content
    that no command can use (:mod:`aqr_cli.io.validate`).
    """
    raw = safe_torch_load(path, mmap=mmap)
    p = Path(path)
    loaded = _from_object(p, raw, p.stat().st_size)
    if expect is not None and loaded.kind != expect:
        want = "a checkpoint" if expect == "checkpoint" else "an AQR debug dump"
        got = "an AQR debug dump" if loaded.kind == "debug_dump" else "a checkpoint"
        raise LoadError(path, f"expected {want}, but the file is {got}")
    validate_loaded(loaded)
    return loaded


def load_checkpoint(path: str | os.PathLike, **kwargs: Any) -> LoadedFile:
    """:func:`load_file` that refuses debug dumps."""
    return load_file(path, expect="checkpoint", **kwargs)


def load_dump(path: str | os.PathLike, **kwargs: Any) -> LoadedFile:
    """:func:`load_file` that refuses checkpoints."""
    return load_file(path, expect="debug_dump", **kwargs)
