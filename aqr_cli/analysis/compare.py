"""What ``aqr compare-modes`` computes: the same per-query weights applied both ways.

Three paths on one source's features: baseline (no AQR), multiplicative (WeightRenderer +
FeatureModulator, the old scheme) and additive (AttentionBiasGenerator bias on the decoder's
cross-attention logits, the new scheme). Feature statistics per modality, attention statistics
per query for all three paths, and an optional bias-scale sweep of the additive path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from aqr_cli.analysis.sources import WeightSource, build_embeddings, metas_for_batch
from aqr_cli.errors import UserError

DEFAULT_SCALES = (0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class CompareResult:
    source: WeightSource
    features: dict                       # compare_features output
    attention: object                    # AttentionResult
    sweep: object | None                 # SweepResult or None
    gains: tuple                         # (bev_gain [B,H,W], pers_gain [B,V,h,w])
    selected: list                       # query indices with kept attention rows
    summary: dict = field(default_factory=dict)


def _embeddings_for(src: WeightSource) -> tuple[torch.Tensor, torch.Tensor]:
    """(query_pos [B, Q, C], key_pos [F, B, C]) of the source, recomputed for dumps."""
    if src.query_embed is not None and src.pos_embed is not None:
        return src.query_embed, src.pos_embed
    head = src.head_state
    if not head or "reference_points.weight" not in head or not src.img_metas:
        raise UserError(f"{src.label}: attention needs query/key position embeddings; pass "
                        "--checkpoint (its embeddings and reference points)")
    emb = build_embeddings(src.cfg, head, None)
    b, q = src.batch_size, src.num_queries
    ref = head["reference_points.weight"].float()
    if ref.shape[0] != q:
        raise UserError(f"{src.label}: {q} queries but the checkpoint has {ref.shape[0]} reference "
                        "points (DN queries cannot be embedded without their noised centres)")
    metas = metas_for_batch(src.img_metas, b)
    with torch.no_grad():
        qb, qr = emb.query_embed(ref[None].expand(b, -1, -1), metas)
        pos = emb.pos_embed(src.cfg.bev_shape, src.cfg.pers_shape, metas)
    return qb + qr, pos


def box_masks(src: WeightSource):
    """Per-sample BEV [N, H, W] and camera [N, V, h, w] box masks, or (None, None, None)."""
    from aqr_cli.analysis.features import rasterize_boxes_bev, rasterize_boxes_camera
    from aqr_cli.core.geometry import CameraRig

    if not src.boxes:
        return None, None, None
    bev = [rasterize_boxes_bev(b, src.cfg.bev_shape, src.cfg.pc_range) for b in src.boxes]
    cam = None
    if src.img_metas:
        rig = CameraRig.from_img_metas(src.img_metas[0])
        cam = [rasterize_boxes_camera(b, rig.lidar2img, rig.img_shape, src.cfg.pers_shape)
               for b in src.boxes]
    return bev, cam, src.box_labels


def select_queries(src: WeightSource, n: int = 3, sample: int = 0) -> list[int]:
    """Queries to draw from ``sample``: strongest LiDAR preference, strongest camera preference,
    and the query nearest the largest object (or the median-weight query)."""
    lw, cw = src.lidar_weights[sample], src.camera_weights[sample]
    diff = lw - cw
    picks = [int(diff.argmax()), int(diff.argmin())]
    if src.boxes and len(src.boxes[sample]):
        cell_xy = query_xy(src)[sample]
        boxes = torch.as_tensor(np.asarray(src.boxes[sample]), dtype=torch.float32)
        big = int((boxes[:, 3] * boxes[:, 4]).argmax())
        picks.append(int((cell_xy - boxes[big, :2]).norm(dim=1).argmin()))
    else:
        picks.append(int((lw - lw.median()).abs().argmin()))
    out = []
    for p in picks:
        if p not in out:
            out.append(p)
    return out[:n]


def query_xy(src: WeightSource) -> torch.Tensor:
    """[B, Q, 2] metres of each query's BEV cell centre."""
    from aqr_cli.core.geometry import bev_cell_centres

    xy = bev_cell_centres(src.pts_bev[..., 0], src.pts_bev[..., 1], src.cfg.bev_shape, src.cfg.pc_range)
    return torch.stack(xy, dim=-1)


def compare_source(src: WeightSource, *, method: str | None = None, bias_scale: float | None = None,
                   scales=DEFAULT_SCALES, width_mode: str = "zero_pad", top_k: int = 10,
                   sample: int = 0) -> CompareResult:
    """Run the three paths on one source and collect feature and attention statistics."""
    from aqr_cli.analysis.attention import CrossAttentionWeights, compare_attention, query_groups
    from aqr_cli.analysis.features import apply_multiplicative, compare_features
    from aqr_cli.analysis.render import build_renderer, sparse_bias
    from aqr_cli.analysis.sweep import bias_scale_sweep, unit_bias
    from aqr_cli.analysis.attention import align_width
    from aqr_cli.core.embeddings import build_memory
    from aqr_cli.core.modulator import FeatureModulator

    if src.features is None:
        raise UserError(f"{src.label}: holds no features to modulate")
    if src.pts_pers is None:
        raise UserError(f"{src.label}: camera cells unknown (a dump stores no pts_pers); pass "
                        "--checkpoint to recompute them from its reference points")
    bev, cam = src.features
    renderer = build_renderer(src, method or src.cfg.renderer_config.get("render_method", "gaussian"))
    modulator = FeatureModulator(**{k: v for k, v in src.cfg.modulator_config.items() if k != "type"})
    pers = src.pts_pers.clamp(min=-1)
    mult = apply_multiplicative(renderer, modulator, src.lidar_weights, src.camera_weights,
                                src.pts_bev, pers, bev, cam)
    bev_masks, cam_masks, labels = box_masks(src)
    feats = compare_features(bev, cam, bev_multiplicative=mult["bev"], cam_multiplicative=mult["camera"],
                             bev_gain=mult["bev_gain"], cam_gain=mult["pers_gain"],
                             bev_weight_map=mult["bev_map"], cam_weight_map=mult["pers_map"],
                             bev_masks=bev_masks, cam_masks=cam_masks, labels=labels)
    sb, gen = sparse_bias(src, bias_scale)
    query_pos, key_pos = _embeddings_for(src)
    memory = build_memory(bev, cam).transpose(0, 1)
    modulated = build_memory(mult["bev"], mult["camera"]).transpose(0, 1)
    key_pos = key_pos.transpose(0, 1)
    weights = CrossAttentionWeights.resolve(src.head_state or None, int(query_pos.shape[-1]))
    num_bev = src.cfg.bev_shape[0] * src.cfg.bev_shape[1]
    selected = select_queries(src, sample=sample)
    groups = query_groups(src.lidar_weights, src.camera_weights, query_xy(src),
                          src.boxes, src.box_labels)
    with torch.no_grad():
        att = compare_attention(query_pos, memory, key_pos, num_bev=num_bev, bias=sb,
                                modulated_memory=modulated, weights=weights, width_mode=width_mode,
                                top_k=top_k, keep_rows=selected)
        sweep = None
        if scales and att.status == "ok":
            mem, _ = align_width(memory, int(query_pos.shape[-1]), width_mode)
            unit = unit_bias(sb)
            sweep = bias_scale_sweep(query_pos.float(), mem + key_pos.float(), weights, unit, scales,
                                     num_bev=num_bev, max_bias=gen.max_bias, groups=groups, top_k=top_k)
    res = CompareResult(source=src, features=feats, attention=att, sweep=sweep,
                        gains=(mult["bev_gain"], mult["pers_gain"]), selected=selected)
    res.summary = {
        "features": feats,
        "attention": _attention_doc(att, groups),
        "sweep": sweep.to_dict() if sweep is not None else None,
        "settings": {
            "source": {"label": src.label, "kind": src.kind, "settings_from": src.settings_from,
                       "iteration": src.iteration, "notes": list(src.notes)},
            "bev_shape": list(src.cfg.bev_shape), "pers_shape": list(src.cfg.pers_shape),
            "render_method": renderer.render_method,
            "modulator": dict(modulator_config_doc(src)),
            "bias_scale_effective": gen.effective_scale(), "bias_window": gen.window_size,
            "bias_dtype": "float16" if gen.fp16 else "float32",
            "attention_weights": weights.describe(),
            "feature_width": int(bev.shape[1]), "embedding_width": int(query_pos.shape[-1]),
            "selected_queries": selected, "scales": list(scales) if scales else [],
        },
    }
    return res


def modulator_config_doc(src: WeightSource) -> dict:
    return {k: v for k, v in src.cfg.modulator_config.items() if k != "type"}


def _attention_doc(att, groups) -> dict:
    """``{'baseline', 'multiplicative', 'additive'}`` summaries plus the settings."""
    doc = att.to_dict(groups)
    paths = doc.pop("paths")
    out = {p: paths.get(p) for p in ("baseline", "multiplicative", "additive")}
    out["settings"] = doc["settings"]
    return out
