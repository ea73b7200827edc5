"""One verdict per file: the content checks every command applies to a loaded file.

:func:`validate_loaded` runs inside :func:`aqr_cli.io.checkpoint.load_file`, so
``inspect-checkpoint``, ``render-weights`` and ``compare-modes`` accept or refuse a file for its
content with the same line. It checks what holds whatever the config says: tensor kinds and
dtypes per key, shapes the AQR code indexes into, values every command computes with, and the
sizes of a dump's maps. Checks of tensors against their settings live in
:mod:`aqr_cli.inputs.checks` (also shared by all commands).

Accepted with a note: float16/bfloat16 weights (computed in float32). Refused: complex, bool or
integer tensors where weights belong, float offset buffers, tensors stored as lists, meta
tensors (no data), NaN/Inf in any AQR tensor of a checkpoint (generator, embeddings, reference
points, bias) or in a dump's weights, positions and maps, dumps without queries, GT boxes that
are not ``[N, 7..9]``. NaN/Inf in other tensors is left to the ``NONFINITE`` finding.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from aqr_cli.io.errors import LoadError
from aqr_cli.io.placeholders import InertRecord, MetaTensor

AQR_PARTS = ("aqr_weight_generator.", "weight_renderer.", "feature_modulator.",
             "attention_bias_generator.", "reference_points.", "bev_embedding.", "rv_embedding.")
OFFSET_BUFFERS = ("y_offsets", "x_offsets", "window_offsets_bev", "window_offsets_pers")
_INT_OK = OFFSET_BUFFERS + ("num_batches_tracked",)
MAX_SIDE = 1024  # cells per feature-map side; the reference configs use at most 180
MAX_ABS = 1e6
"""Largest magnitude accepted in AQR tensors, weights and maps: learned AQR parameters are O(1),
weights are tanh/sigmoid outputs and maps are clamped to 1.5 (or sums of a few hundred weights);
past this, statistics overflow float32 and no upstream run could have written the file."""
MAX_VIEWS = 12


def _what(value: Any) -> str:
    if isinstance(value, MetaTensor):
        return f"a meta tensor of shape {value.shape} ({value.dtype}) without data"
    if isinstance(value, InertRecord):
        return f"an inert record of {value.global_name}"
    return f"a {type(value).__name__}"


def _dtype(t: Any) -> str:
    return str(t.dtype).replace("torch.", "")


_AQR_KEY = re.compile("|".join(re.escape(part) for part in AQR_PARTS))


def _is_aqr_key(key: str) -> bool:
    return _AQR_KEY.search(key) is not None


def _finite(t: Any) -> bool:
    import torch

    return bool(torch.isfinite(t).all()) if t.is_floating_point() else True


def _nonfinite_text(t: Any) -> str:
    import torch

    return f"{int(torch.isnan(t).sum())} NaN and {int(torch.isinf(t).sum())} Inf values"


def validate_loaded(lf: Any) -> None:
    """LoadError (naming the file, the key and what is wrong) for content no command can use."""
    if lf.kind == "debug_dump":
        _validate_dump(lf)
    else:
        _validate_checkpoint(lf)


def _raw_state_dict(lf: Any) -> Mapping | None:
    raw = lf.raw
    if not isinstance(raw, Mapping):
        return None
    for key in ("state_dict", "model"):
        if isinstance(raw.get(key), Mapping):
            return raw[key]
    return raw if lf.format == "bare-state-dict" else None


def _validate_checkpoint(lf: Any) -> None:
    import torch

    path = lf.path
    raw_sd = _raw_state_dict(lf)
    if raw_sd is not None:
        for key, value in raw_sd.items():
            if not isinstance(value, (torch.Tensor, Mapping)) and isinstance(key, str) \
                    and _is_aqr_key(key):
                raise LoadError(path, f"state_dict[{key!r}] is {_what(value)}, expected a tensor")
    half = [key for key, t in lf.state_dict.items() if _is_aqr_key(key) and _aqr_dtype(path, key, t)]
    if half:
        lf.notes.append(f"{len(half)} AQR tensors are {_dtype(lf.state_dict[half[0]])} "
                        "(e.g. " + half[0] + "); computed in float32")
    for key, t in lf.state_dict.items():
        if key.endswith(_SHAPED):  # a plain test: a state dict may hold a million keys
            _check_known_shape(path, key, t)
    _check_finite(path, {k: t for k, t in lf.state_dict.items()
                         if _is_aqr_key(k) and t.is_floating_point()})


def _aqr_dtype(path: Any, key: str, t: Any) -> bool:
    """LoadError for a dtype no AQR tensor can have; True for half precision (noted, accepted)."""
    import torch

    if t.is_complex():
        raise LoadError(path, f"{key} is a complex tensor ({_dtype(t)}); AQR weights are real")
    if key.rsplit(".", 1)[-1] in _INT_OK:
        if t.is_floating_point() or t.dtype == torch.bool:
            raise LoadError(path, f"{key} is {_dtype(t)}, expected an integer tensor (offsets)")
        return False
    if not t.is_floating_point():
        raise LoadError(path, f"{key} is {_dtype(t)}, expected a floating-point tensor")
    return t.dtype in (torch.float16, torch.bfloat16)


_SHAPED = ("attention_bias_generator.bias_scale", "reference_points.weight")


def _check_known_shape(path: Any, key: str, t: Any) -> None:
    """The bias scale is one finite value; reference points are a finite ``[N >= 1, 3]``."""
    if key.endswith("attention_bias_generator.bias_scale"):
        if t.numel() != 1:
            raise LoadError(path, f"{key} has shape {list(t.shape)}, expected one value "
                                  "([1] at HEAD or [] in CMTTEST/bias)")
        if not _finite(t):
            raise LoadError(path, f"{key} is {float(t.reshape(-1)[0])}, not a finite number")
    elif key.endswith("reference_points.weight"):
        if t.dim() != 2 or t.shape[1] != 3 or t.shape[0] < 1:
            raise LoadError(path, f"{key} has shape {list(t.shape)}, expected [num_query >= 1, 3]")
        if not _finite(t):
            raise LoadError(path, f"{key} holds {_nonfinite_text(t)}")


def _check_finite(path: Any, tensors: dict) -> None:
    """LoadError naming the first tensor with NaN/Inf (one batched test, then per tensor)."""
    import torch

    if not tensors:
        return
    unique = {id(t): t for t in tensors.values()}
    flat = torch.cat([t.detach().reshape(-1).float() for t in unique.values()])
    if bool(torch.isfinite(flat).all()) and (not flat.numel() or float(flat.abs().max()) <= MAX_ABS):
        return
    for key, t in tensors.items():
        if not _finite(t):
            raise LoadError(path, f"{key} holds {_nonfinite_text(t)}; every command computes "
                                  "with it")
        peak = float(t.detach().abs().max()) if t.numel() else 0.0
        if peak > MAX_ABS:
            raise LoadError(path, f"{key} holds values up to {peak:.3g} in magnitude; more than "
                                  f"{MAX_ABS:g} is not plausible for AQR tensors")


def _tensor_at(lf: Any, key: str, required: bool = False) -> Any:
    import torch

    raw = lf.raw if isinstance(lf.raw, Mapping) else {}
    if key not in raw:
        return None
    value = raw[key]
    if not isinstance(value, torch.Tensor):
        raise LoadError(lf.path, f"{key} is {_what(value)}, expected a tensor")
    if value.is_complex() or not value.is_floating_point():
        raise LoadError(lf.path, f"{key} is {_dtype(value)}, expected a floating-point tensor")
    return value


def _validate_dump(lf: Any) -> None:
    path = lf.path
    lw, cw = _tensor_at(lf, "lidar_weights"), _tensor_at(lf, "camera_weights")
    if lw is None or cw is None:
        return
    if lw.dim() != 2 or list(cw.shape) != list(lw.shape):
        raise LoadError(path, f"lidar_weights {list(lw.shape)} and camera_weights "
                              f"{list(cw.shape)} must both be [B, Nq]")
    b, nq = int(lw.shape[0]), int(lw.shape[1])
    if b < 1 or nq < 1:
        raise LoadError(path, f"lidar_weights is {list(lw.shape)}: the dump holds no queries")
    pb = _tensor_at(lf, "pts_bev")
    if pb is not None and list(pb.shape) != [b, nq, 2]:
        raise LoadError(path, f"pts_bev is {list(pb.shape)}, expected [B, Nq, 2] = [{b}, {nq}, 2] "
                              "(from lidar_weights)")
    mb, mp = _dump_maps(lf, b)
    for key, t in (("lidar_weights", lw), ("camera_weights", cw), ("pts_bev", pb),
                   ("weight_map_bev", mb), ("weight_map_pers", mp)):
        if t is not None:
            _check_values(path, key, t)
    if pb is not None and mb is not None:
        _check_cells(path, pb, (int(mb.shape[1]), int(mb.shape[2])))
    _check_features(lf, b, mb, mp)
    _validate_gt(lf)


def _dump_maps(lf: Any, b: int) -> tuple[Any, Any]:
    """The dump's ``weight_map_bev`` [B, H, W] and ``weight_map_pers`` [B, V, h, w], checked."""
    path = lf.path
    mb, mp = _tensor_at(lf, "weight_map_bev"), _tensor_at(lf, "weight_map_pers")
    if mb is not None and (mb.dim() != 3 or mb.shape[0] != b):
        raise LoadError(path, f"weight_map_bev is {list(mb.shape)}, expected [B={b}, H, W]")
    if mp is not None and (mp.dim() != 4 or mp.shape[0] != b):
        raise LoadError(path, f"weight_map_pers is {list(mp.shape)}, expected [B={b}, V, h, w]")
    sides = ([] if mb is None else list(mb.shape[1:])) + ([] if mp is None else list(mp.shape[2:]))
    if any(s < 1 or s > MAX_SIDE for s in sides) or (mp is not None and not 1 <= mp.shape[1] <= MAX_VIEWS):
        raise LoadError(path, f"map shapes BEV {None if mb is None else list(mb.shape[1:])} / cameras "
                              f"{None if mp is None else list(mp.shape[1:])} are not plausible "
                              f"(each side 1..{MAX_SIDE} cells, 1..{MAX_VIEWS} views)")
    return mb, mp


def _check_values(path: Any, key: str, t: Any) -> None:
    """Weights, positions and maps: finite, and no larger than :data:`MAX_ABS`."""
    if not _finite(t):
        raise LoadError(path, f"{key} holds {_nonfinite_text(t)}")
    if t.numel() and float(t.abs().max()) > MAX_ABS:
        raise LoadError(path, f"{key} holds values up to {float(t.abs().max()):.3g} in "
                              f"magnitude; more than {MAX_ABS:g} is not plausible for AQR "
                              "weights and maps")


def _check_features(lf: Any, b: int, mb: Any, mp: Any) -> None:
    """Recorded features: ``[N, C, H, W]`` with N and the sides the maps imply, finite."""
    bev = None if mb is None else (b, *mb.shape[1:])
    pers = None if mp is None else (b * mp.shape[1], *mp.shape[2:])
    for key, want in (("original_bev_features", bev), ("modulated_bev_features", bev),
                      ("original_pers_features", pers), ("modulated_pers_features", pers)):
        t = _tensor_at(lf, key)
        if t is None:
            continue
        if t.dim() != 4 or (want is not None and (t.shape[0], *t.shape[2:]) != tuple(int(v) for v in want)):
            need = "[N, C, H, W]" if want is None else f"[{want[0]}, C, {want[1]}, {want[2]}] (from the maps)"
            raise LoadError(lf.path, f"{key} is {list(t.shape)}, expected {need}")
        if not _finite(t):
            raise LoadError(lf.path, f"{key} holds {_nonfinite_text(t)}")


def _check_cells(path: Any, pts_bev: Any, hw: tuple[int, int]) -> None:
    """BEV cells must be whole numbers within one grid size of the grid.

    Upstream floors ``(xy + 54) * H / 108``, so drifted reference points land a few cells off the
    grid (quirk Q2, reported later); fractional cells or cells far away cannot come from it.
    """
    h, w = hw
    rows, cols = pts_bev[..., 0], pts_bev[..., 1]
    whole = bool((pts_bev == pts_bev.floor()).all())
    near = bool(((rows >= -h) & (rows < 2 * h) & (cols >= -w) & (cols < 2 * w)).all())
    if not (whole and near):
        raise LoadError(path, f"pts_bev holds positions outside the grid or fractional cells "
                              f"(rows {float(rows.min()):g}..{float(rows.max()):g}, cols "
                              f"{float(cols.min()):g}..{float(cols.max()):g}; grid {h}x{w})")


def _validate_gt(lf: Any) -> None:
    import torch

    dump = lf.dump
    for i, (boxes, labels) in enumerate(zip(dump.gt_boxes, dump.gt_labels)):
        if boxes is not None:
            if boxes.dim() != 2 or not 7 <= boxes.shape[1] <= 9 or not boxes.is_floating_point():
                raise LoadError(lf.path, f"img_metas[{i}].gt_bboxes_3d is {list(boxes.shape)} "
                                         f"({_dtype(boxes)}), expected float [N, 7..9]")
            if not _finite(boxes):
                raise LoadError(lf.path, f"img_metas[{i}].gt_bboxes_3d holds {_nonfinite_text(boxes)}")
        if labels is not None:
            if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool \
                    or labels.dim() != 1 or (boxes is not None and labels.shape[0] != boxes.shape[0]):
                raise LoadError(lf.path, f"img_metas[{i}].gt_labels_3d is {list(labels.shape)} "
                                         f"({_dtype(labels)}), expected integer [N] matching the boxes")
