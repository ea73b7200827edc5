"""Where queries and ground-truth boxes sit on the maps of a source: query centres in metres,
box masks on the BEV grid and the camera cells."""

from __future__ import annotations

import torch

from aqr_cli.analysis.sources import WeightSource


def query_xy(src: WeightSource) -> torch.Tensor:
    """[B, Q, 2] metres of each query's BEV cell centre."""
    from aqr_cli.core.geometry import bev_cell_centres

    xy = bev_cell_centres(src.pts_bev[..., 0], src.pts_bev[..., 1], src.cfg.bev_shape, src.cfg.pc_range)
    return torch.stack(xy, dim=-1)


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
