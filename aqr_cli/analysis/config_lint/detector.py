"""What the rest of a detector config implies for the AQR settings: the feature-map sizes
(BEV from the voxel grid, camera from the image size) and the parameter names ``CmtHead`` builds
(for Q33 ``custom_keys`` shadowing)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aqr_cli.analysis.config_lint.status import enabled
from aqr_cli.inputs.checks import CheckList, ShapesReport
from aqr_cli.io import AQRConfig, ParsedConfig

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


def _ints(value: Any) -> list[int] | None:
    if isinstance(value, (list, tuple)) and value and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return [int(v) for v in value]
    return None


def detector_shapes(parsed: ParsedConfig) -> dict:
    """The feature-map sizes the rest of the detector config implies (not the AQR settings).

    BEV: ``grid_size`` (x, y) / ``out_size_factor`` of ``train_cfg.pts`` (else from
    ``point_cloud_range`` / ``voxel_size``); camera: ``ida_aug_conf.final_dim`` (H, W) / 16
    (the stride of the image feature level the head uses, spec 8.2), 6 views.
    """
    out: dict[str, Any] = {"bev": None, "pers": None, "bev_from": None, "pers_from": None}
    osf = _out_size_factor(parsed)
    grid, out["bev_from"] = _grid(parsed)
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


def _out_size_factor(parsed: ParsedConfig) -> int | None:
    for key in ("model.train_cfg.pts.out_size_factor", "model.test_cfg.pts.out_size_factor",
                "out_size_factor"):
        v = parsed.get(key)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return None


def _grid(parsed: ParsedConfig) -> tuple[list[int] | None, str | None]:
    """The voxel grid (x, y, ...) and where it comes from."""
    grid = _ints(parsed.get("model.train_cfg.pts.grid_size")) or \
        _ints(parsed.get("model.test_cfg.pts.grid_size"))
    if grid is not None:
        return grid, ("train_cfg.pts.grid_size / out_size_factor" if grid else None)
    pcr, vox = parsed.get("point_cloud_range"), parsed.get("voxel_size")
    if isinstance(pcr, (list, tuple)) and len(pcr) == 6 and isinstance(vox, (list, tuple)) \
            and len(vox) >= 2 and all(isinstance(v, (int, float)) and v for v in vox[:2]):
        grid = [round((pcr[3] - pcr[0]) / vox[0]), round((pcr[4] - pcr[1]) / vox[1])]
        return grid, "point_cloud_range / voxel_size / out_size_factor"
    return None, None


def detector_checks(shapes: ShapesReport, detector: dict, chk: CheckList) -> None:
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


def parameter_names(cfg: AQRConfig) -> list[str]:
    names = list(_DETECTOR_PARAMS)
    if enabled(cfg):
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
