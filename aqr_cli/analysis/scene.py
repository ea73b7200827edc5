"""A seeded synthetic driving scene: objects, BEV and camera features, reference points.

The scene follows the recipe of the upstream fixtures: features are ``0.5 * N(0, 1)`` noise plus,
for each object, a Gaussian blob times one fixed random 256-d signature (norm 12), drawn in BEV
at the object's centre and in every camera that sees the centre. Reference points are a mix of
queries placed on objects and queries spread uniformly over the BEV range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from aqr_cli.core.configs import CLASS_NAMES, SMALL_CLASSES, ReferenceConfig

# nuScenes class-mean sizes (length dx, width dy, height dz) in metres.
CLASS_SIZES = {
    "car": (4.6, 1.95, 1.73), "truck": (6.9, 2.5, 2.8), "construction_vehicle": (6.4, 2.8, 3.2),
    "bus": (11.1, 2.95, 3.5), "trailer": (12.3, 2.9, 3.9), "barrier": (0.5, 2.5, 1.0),
    "motorcycle": (2.1, 0.8, 1.45), "bicycle": (1.7, 0.6, 1.3), "pedestrian": (0.73, 0.67, 1.77),
    "traffic_cone": (0.41, 0.41, 1.07),
}
# How many of each class a scene holds (before per-sample jitter).
SCENE_MIX = (("car", 4), ("truck", 1), ("bus", 1), ("pedestrian", 3), ("traffic_cone", 2),
             ("bicycle", 1), ("motorcycle", 1), ("barrier", 1))


@dataclass
class Scene:
    """One synthetic batch. Boxes use the mmdet3d LiDAR layout of the upstream dumps."""

    config: ReferenceConfig
    lidar2img: np.ndarray            # [V, 4, 4] float64
    img_hw: tuple[int, int]
    boxes: list[np.ndarray]          # per sample [N, 9]: x, y, z_bottom, dx, dy, dz, yaw, vx, vy
    labels: list[np.ndarray]         # per sample [N] int64 class index into CLASS_NAMES
    bev_features: torch.Tensor       # [B, C, H, W]
    cam_features: torch.Tensor       # [B*V, C, h, w], sample-major
    ref_points: torch.Tensor         # [B, Q, 3] normalised to pc_range
    seed: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def batch_size(self) -> int:
        return self.bev_features.shape[0]


def _place_objects(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Return boxes [N, 9] and labels [N] of one sample, spread 6-45 m around the ego car."""
    rows, labels = [], []
    for cls, count in SCENE_MIX:
        dx, dy, dz = CLASS_SIZES[cls]
        for _ in range(count):
            rng_m = rng.uniform(6.0, 45.0) if cls not in SMALL_CLASSES else rng.uniform(6.0, 35.0)
            ang = rng.uniform(-math.pi, math.pi)
            x, y = rng_m * math.cos(ang), rng_m * math.sin(ang)
            s = rng.uniform(0.9, 1.1)
            yaw = rng.uniform(-math.pi, math.pi)
            z_bottom = -1.8 + rng.uniform(-0.1, 0.1)
            rows.append([x, y, z_bottom, dx * s, dy * s, dz * s, yaw, 0.0, 0.0])
            labels.append(CLASS_NAMES.index(cls))
    return np.asarray(rows, dtype=np.float32), np.asarray(labels, dtype=np.int64)


def _gauss_blobs(shape_hw: tuple[int, int], centres: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    """Sum-free stack of Gaussian blobs: [N, H, W] with peak 1 at each (row, col) centre."""
    h, w = shape_hw
    if len(centres) == 0:
        return np.zeros((0, h, w), dtype=np.float32)
    rr = np.arange(h, dtype=np.float32)[None, :, None]
    cc = np.arange(w, dtype=np.float32)[None, None, :]
    d2 = (rr - centres[:, 0, None, None]) ** 2 + (cc - centres[:, 1, None, None]) ** 2
    return np.exp(-d2 / (2.0 * sigmas[:, None, None] ** 2)).astype(np.float32)


def _bev_cells(xy: np.ndarray, cfg: ReferenceConfig) -> np.ndarray:
    """Continuous (row, col) BEV cell coordinates of LiDAR (x, y) metres [N, 2] (cell centres at +0.5)."""
    pc = cfg.pc_range
    h, w = cfg.bev_shape
    col = (xy[:, 0] - pc[0]) / (pc[3] - pc[0]) * w - 0.5
    row = (xy[:, 1] - pc[1]) / (pc[4] - pc[1]) * h - 0.5
    return np.stack([row, col], axis=1)


def _camera_blobs(boxes: np.ndarray, lidar2img: np.ndarray, img_hw, pers_shape):
    """Per view: (object index, (row, col) feature cell, sigma in cells) of objects whose centre is visible."""
    _, fh, fw = pers_shape
    img_h, img_w = img_hw
    centre = boxes[:, :3].astype(np.float64).copy()
    centre[:, 2] += boxes[:, 5] / 2.0
    homog = np.concatenate([centre, np.ones((len(boxes), 1))], axis=1)
    out = []
    for v in range(lidar2img.shape[0]):
        q = homog @ lidar2img[v].T
        depth = q[:, 2]
        ok = depth > 0.5
        u = np.where(ok, q[:, 0] / np.maximum(depth, 1e-6), -1.0)
        r = np.where(ok, q[:, 1] / np.maximum(depth, 1e-6), -1.0)
        ok &= (u >= 0) & (u < img_w) & (r >= 0) & (r < img_h)
        focal = np.linalg.norm(lidar2img[v, 0, :3])  # ~fx for a level camera
        size = np.maximum(boxes[:, 3], boxes[:, 4]) * 0.5
        sigma = np.clip(focal * size / np.maximum(depth, 1e-3) * fw / img_w, 0.6, fw / 4)
        idx = np.nonzero(ok)[0]
        cells = np.stack([r[idx] * fh / img_h, u[idx] * fw / img_w], axis=1) if len(idx) else np.zeros((0, 2))
        out.append((idx, cells, sigma[idx]))
    return out


def _ref_points(rng, boxes: np.ndarray, cfg: ReferenceConfig, num_query: int, near_share: float):
    """[Q, 3] normalised reference points: ``near_share`` of them on objects, the rest uniform."""
    pc = np.asarray(cfg.pc_range, dtype=np.float64)
    n_near = int(round(num_query * near_share)) if len(boxes) else 0
    pick = rng.integers(0, len(boxes), size=n_near) if n_near else np.zeros(0, dtype=int)
    spread = np.maximum(boxes[pick, 3:5], 1.0) * 0.6
    xy = boxes[pick, :2] + rng.normal(0.0, 1.0, size=(n_near, 2)) * spread
    z = boxes[pick, 2] + boxes[pick, 5] / 2.0 + rng.normal(0.0, 0.3, size=n_near)
    near = np.concatenate([xy, z[:, None]], axis=1)
    near = (near - pc[:3]) / (pc[3:] - pc[:3])
    far = rng.uniform(0.0, 1.0, size=(num_query - n_near, 3))
    ref = np.concatenate([near, far], axis=0)
    ref = ref[rng.permutation(num_query)]
    return np.clip(ref, 0.0, 1.0 - 1e-6).astype(np.float32)


def make_scene(cfg: ReferenceConfig, lidar2img: np.ndarray, img_hw: tuple[int, int], *,
               batch_size: int = 1, seed: int = 0, channels: int = 256,
               num_query: int | None = None, near_share: float = 0.35) -> Scene:
    """Build a seeded scene for ``cfg`` and a rig (``lidar2img`` [V, 4, 4], image (H, W)).

    Same arguments, same scene (numpy ``default_rng(seed)`` and torch generator seeded alike).
    """
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    num_query = num_query or cfg.num_query
    h, w = cfg.bev_shape
    views, fh, fw = cfg.pers_shape
    if lidar2img.shape[0] != views:
        raise ValueError(f"rig has {lidar2img.shape[0]} cameras, config expects {views}")
    bev = 0.5 * torch.randn(batch_size, channels, h, w, generator=gen)
    cam = 0.5 * torch.randn(batch_size * views, channels, fh, fw, generator=gen)
    cell_m = (cfg.pc_range[3] - cfg.pc_range[0]) / w
    boxes_all, labels_all, refs = [], [], []
    for b in range(batch_size):  # a handful of samples, each a different object layout
        boxes, labels = _place_objects(rng)
        sig = torch.randn(len(boxes), channels, generator=gen)
        sig = 12.0 * sig / sig.norm(dim=1, keepdim=True)
        radius_cells = np.maximum(boxes[:, 3], boxes[:, 4]) * 0.5 / cell_m
        blobs = _gauss_blobs((h, w), _bev_cells(boxes[:, :2], cfg), np.maximum(radius_cells, 0.7))
        bev[b] += torch.einsum("nc,nhw->chw", sig, torch.from_numpy(blobs))
        for v, (idx, cells, sigmas) in enumerate(_camera_blobs(boxes, lidar2img, img_hw, cfg.pers_shape)):
            if len(idx):
                cb = torch.from_numpy(_gauss_blobs((fh, fw), cells, sigmas))
                cam[b * views + v] += torch.einsum("nc,nhw->chw", sig[idx], cb)
        refs.append(_ref_points(rng, boxes, cfg, num_query, near_share))
        boxes_all.append(boxes)
        labels_all.append(labels)
    return Scene(config=cfg, lidar2img=np.asarray(lidar2img, dtype=np.float64), img_hw=tuple(img_hw),
                 boxes=boxes_all, labels=labels_all, bev_features=bev, cam_features=cam,
                 ref_points=torch.from_numpy(np.stack(refs)), seed=seed)


def scene_weights(scene: Scene, pts_xy: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The documented synthetic weight model (``--weights scene``): tanh weights [B, Q] each.

    For a query within 3 m of an object's footprint, with object size ``s`` (longer side, m)
    and range ``r`` (m): LiDAR logit ``0.9*ln(s/2) - 0.02*(r - 20) + 0.3``, camera logit
    ``-0.7*ln(s/2) + 0.015*(r - 20) + 0.3``: LiDAR favoured for large near objects, camera for
    small far ones. Queries away from objects get logits ``N(-0.3, 0.3)`` (mild suppression).
    Every logit gets ``N(0, 0.15)`` noise. ``pts_xy`` [B, Q, 2] are query positions in metres.
    """
    gen = torch.Generator().manual_seed(seed + 7)
    lidar, camera = [], []
    for b in range(scene.batch_size):  # per sample: its own boxes
        boxes = torch.from_numpy(scene.boxes[b]).double()
        xy = pts_xy[b].double()
        d = torch.cdist(xy, boxes[:, :2])                              # [Q, N]
        reach = 0.5 * torch.maximum(boxes[:, 3], boxes[:, 4]) + 3.0    # [N]
        near = d <= reach
        nearest = torch.where(near, d, torch.full_like(d, float("inf"))).argmin(dim=1)
        has = near.any(dim=1)
        size = torch.maximum(boxes[nearest, 3], boxes[nearest, 4])
        rng_m = boxes[nearest, :2].norm(dim=1)
        l_obj = 0.9 * torch.log(size / 2) - 0.02 * (rng_m - 20) + 0.3
        c_obj = -0.7 * torch.log(size / 2) + 0.015 * (rng_m - 20) + 0.3
        q = xy.shape[0]
        l_bg = -0.3 + 0.3 * torch.randn(q, generator=gen, dtype=torch.float64)
        c_bg = -0.3 + 0.3 * torch.randn(q, generator=gen, dtype=torch.float64)
        noise = 0.15 * torch.randn(2, q, generator=gen, dtype=torch.float64)
        lidar.append(torch.tanh(torch.where(has, l_obj, l_bg) + noise[0]))
        camera.append(torch.tanh(torch.where(has, c_obj, c_bg) + noise[1]))
    return torch.stack(lidar).float(), torch.stack(camera).float()
