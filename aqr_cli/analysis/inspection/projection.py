"""Where AQR's projection puts a checkpoint's reference points: BEV cells, cameras, unseen ones."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch

from aqr_cli.analysis.inspection.reports import RefPointsReport
from aqr_cli.core.errors import AQRInputError, QuirkWarning
from aqr_cli.core.geometry import CameraRig, project_points_to_cameras
from aqr_cli.inputs.checks import ShapesReport, sourced, tensor_at

DEFAULT_PC_RANGE = [-54.0, -54.0, -5.0, 54.0, 54.0, 3.0]


def projector(pc_range, bev, pers):
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


def reference_points_report(sd, pre, cfg, shapes: ShapesReport, rig: CameraRig, rig_label: str
                            ) -> RefPointsReport | None:
    """Counts and projection of ``reference_points.weight`` under ``rig`` (None without it)."""
    ref = tensor_at(sd, pre + "reference_points.weight")
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
    pc_item = sourced(cfg, None, "pc_range")
    pc = list(pc_item.value) if pc_item is not None and isinstance(pc_item.value, (list, tuple)) \
        and len(pc_item.value) == 6 \
        else list(DEFAULT_PC_RANGE)
    bev = shapes.bev if shapes.bev and None not in shapes.bev else [128, 128]
    pers = shapes.pers if shapes.pers and None not in shapes.pers else \
        [rig.num_views, max(1, rig.img_shape[0] // 16), max(1, rig.img_shape[1] // 16)]
    if pers[0] != rig.num_views:
        rep.error = (f"the rig has {rig.num_views} cameras but the config {pers[0]} views; "
                     "camera visibility not computed")
        return rep
    try:
        gen = projector(pc, bev, pers)
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
