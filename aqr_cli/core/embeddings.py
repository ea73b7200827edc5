"""CMT position/query embeddings the AQR path consumes (spec 1.2-1.7), bit-for-bit upstream.

``CMTEmbeddings`` owns the three ``CmtHead`` modules the embeddings need
(``reference_points``, ``bev_embedding``, ``rv_embedding``) under their upstream names, so the
matching subset of a head state_dict loads with ``strict=True``. Operation order follows
``cmt_head.py`` so float32 results match upstream.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ._checks import check_finite, check_positive_shape, check_shape, check_tensor
from .configs import POINT_CLOUD_RANGE
from .errors import AQRInputError, warn_quirk

_ROWS_PER_CHUNK = 32768
"""Rows per ``rv_embedding`` call: bounds the 1024-wide hidden activation to ~128 MB."""


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """mmdet ``inverse_sigmoid``: ``log(max(x', eps) / max(1 - x', eps))``, x' = clamp(x, 0, 1)."""
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


def pos2embed(pos: torch.Tensor, num_pos_feats: int = 128,
              temperature: float = 10000) -> torch.Tensor:
    """Sine embedding of normalised ``pos[..., :2]`` -> ``[..., 2*num_pos_feats]`` (y block first).

    ``temperature`` is accepted and ignored, as upstream (spec 1.3, Q36): channel i divides
    ``2*pi*p`` by ``1 + 2*(i//2)/num_pos_feats``; sin on even, cos on odd channels.
    """
    pos = pos * (2 * math.pi)
    dim_t = torch.arange(num_pos_feats, dtype=torch.float32, device=pos.device)
    dim_t = 2 * (dim_t // 2) / num_pos_feats + 1
    pos_x = pos[..., 0, None] / dim_t
    pos_y = pos[..., 1, None] / dim_t
    pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=-1).flatten(-2)
    pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=-1).flatten(-2)
    return torch.cat((pos_y, pos_x), dim=-1)


def coords_bev(bev_h: int, bev_w: int) -> torch.Tensor:
    """Normalised (x, y) of every BEV cell centre, ``[bev_h*bev_w, 2]``, BEV token order.

    Row ``t = i*bev_w + j`` (i = BEV row <-> y, j = column <-> x) holds
    ``((j + 0.5)/bev_h, (i + 0.5)/bev_w)``: upstream divides by crossed sizes (spec 1.4, Q37),
    which only matters for non-square grids (then a ``Q37`` QuirkWarning is emitted).
    """
    bev_h, bev_w = check_positive_shape("bev_shape", (bev_h, bev_w), 2)
    if bev_h != bev_w:
        warn_quirk("Q37", f"coords_bev on a non-square {bev_h}x{bev_w} grid divides x by "
                   f"bev_h and y by bev_w, as upstream", bev_h=bev_h, bev_w=bev_w)
    # upstream: x_size = grid_size[1]//ds = bev_h, y_size = grid_size[0]//ds = bev_w
    x_size, y_size = bev_h, bev_w
    batch_y, batch_x = torch.meshgrid(torch.linspace(0, x_size - 1, x_size),
                                      torch.linspace(0, y_size - 1, y_size), indexing="ij")
    batch_x = (batch_x + 0.5) / x_size
    batch_y = (batch_y + 0.5) / y_size
    return torch.cat([batch_x[None], batch_y[None]], dim=0).view(2, -1).transpose(1, 0)


def build_memory(bev_feats: torch.Tensor, cam_feats: torch.Tensor) -> torch.Tensor:
    """Decoder/AQR memory ``[F, B, C]``: BEV ``(h w)`` tokens, then camera ``(v h w)`` tokens.

    ``bev_feats`` [B, C, H, W] (post ``shared_conv``), ``cam_feats`` [B*V, C, h, w] with row
    ``b*V + v``; F = H*W + V*h*w (spec 1.2).
    """
    check_tensor("bev_feats", bev_feats, 4)
    check_tensor("cam_feats", cam_feats, 4)
    b, c = bev_feats.shape[:2]
    bn, c2, h, w = cam_feats.shape
    if c2 != c or bn % b or bn == 0:
        raise AQRInputError(f"cam_feats: expected shape [B*V, C, h, w] with B = {b}, C = {c}, "
                            f"got {list(cam_feats.shape)}")
    bev = bev_feats.flatten(2).transpose(1, 2)
    rv = cam_feats.view(b, bn // b, c, h, w).permute(0, 1, 3, 4, 2).flatten(1, 3)
    return torch.cat([bev, rv], dim=1).transpose(0, 1)


def build_pos_embed(bev_pos_embed: torch.Tensor, rv_pos_embed: torch.Tensor,
                    batch_size: int) -> torch.Tensor:
    """Key position embedding ``[F, B, C]`` in memory order (spec 1.2).

    ``bev_pos_embed`` [H*W, C] (shared by the batch), ``rv_pos_embed`` [B*V, h, w, C].
    """
    check_tensor("bev_pos_embed", bev_pos_embed, 2)
    check_tensor("rv_pos_embed", rv_pos_embed, 4)
    c = bev_pos_embed.shape[1]
    if rv_pos_embed.shape[-1] != c or rv_pos_embed.shape[0] % batch_size:
        raise AQRInputError(f"rv_pos_embed: expected shape [B*V, h, w, {c}] with B = "
                            f"{batch_size}, got {list(rv_pos_embed.shape)}")
    bev = bev_pos_embed.unsqueeze(1).repeat(1, batch_size, 1)
    rv = rv_pos_embed.reshape(batch_size, -1, c).transpose(0, 1)
    return torch.cat([bev, rv], dim=0)


def lidar2img_stack(img_metas, num_views: int | None = None) -> np.ndarray:
    """``[B, V, 4, 4]`` float64 from ``img_metas[b]['lidar2img']``, validated."""
    if isinstance(img_metas, Mapping) or not isinstance(img_metas, Sequence) or not img_metas:
        raise AQRInputError("img_metas: expected a non-empty list with one dict per sample")
    mats = []
    for b, meta in enumerate(img_metas):
        if not isinstance(meta, Mapping) or "lidar2img" not in meta:
            raise AQRInputError(f"img_metas[{b}]: missing 'lidar2img' (list of V 4x4 matrices)")
        try:
            arr = np.stack([np.asarray(m, dtype=np.float64) for m in meta["lidar2img"]])
        except (TypeError, ValueError):
            raise AQRInputError(f"img_metas[{b}]['lidar2img']: expected V 4x4 matrices") from None
        if arr.ndim != 3 or arr.shape[1:] != (4, 4):
            raise AQRInputError(f"img_metas[{b}]['lidar2img']: expected shape [V, 4, 4], "
                                f"got {list(arr.shape)}")
        if num_views is not None and arr.shape[0] != num_views:
            raise AQRInputError(f"img_metas[{b}]['lidar2img']: expected {num_views} matrices "
                                f"(one per camera), got {arr.shape[0]}")
        if not np.isfinite(arr).all():
            raise AQRInputError(f"img_metas[{b}]['lidar2img']: contains NaN or Inf")
        mats.append(arr)
    if len({m.shape[0] for m in mats}) != 1:
        raise AQRInputError("img_metas: samples have different numbers of lidar2img matrices")
    return np.stack(mats)


def meta_hw(img_metas, key: str) -> tuple[int, int]:
    """``img_metas[0][key][0][:2]`` (sample 0, camera 0, as upstream), validated."""
    try:
        h, w = img_metas[0][key][0][:2]
    except (KeyError, IndexError, TypeError, ValueError):
        raise AQRInputError(f"img_metas[0]['{key}']: expected a list of (H, W, 3) tuples") from None
    return check_positive_shape(f"img_metas[0]['{key}'][0]", (h, w), 2)


def _mlp_chunked(mlp: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``mlp(x)`` applied to ``x.view(-1, d)`` in row chunks; returns ``[..., out]``."""
    flat = x.reshape(-1, x.shape[-1])
    if flat.shape[0] <= _ROWS_PER_CHUNK:
        out = mlp(flat)
    else:
        out = torch.cat([mlp(part) for part in flat.split(_ROWS_PER_CHUNK)])
    return out.view(*x.shape[:-1], out.shape[-1])


def _device_of(module: nn.Module) -> torch.device:
    """Device of ``module``'s first parameter (where its inputs must live)."""
    return next(module.parameters()).device


class CMTEmbeddings(nn.Module):
    """``CmtHead`` query and key position embeddings (spec 1.4, 1.5, 1.7).

    Parameters keep upstream names: ``reference_points.weight`` [num_query, 3],
    ``bev_embedding.{0,2}.*`` (Linear 2C->C, ReLU, Linear C->C) and ``rv_embedding.{0,2}.*``
    (Linear 3D->4C, ReLU, Linear 4C->C) with C = ``hidden_dim``, D = ``depth_num``.
    ``pc_range`` = [x_min, y_min, z_min, x_max, y_max, z_max] in metres.
    """

    def __init__(self, num_query: int = 900, hidden_dim: int = 256, depth_num: int = 64,
                 pc_range: Sequence[float] = POINT_CLOUD_RANGE):
        super().__init__()
        if len(pc_range) != 6 or not all(math.isfinite(float(v)) for v in pc_range):
            raise AQRInputError(f"pc_range: expected 6 finite numbers, got {list(pc_range)}")
        self.hidden_dim, self.depth_num = int(hidden_dim), int(depth_num)
        self.pc_range = [float(v) for v in pc_range]
        self.reference_points = nn.Embedding(num_query, 3)
        nn.init.uniform_(self.reference_points.weight, 0, 1)  # CmtHead.init_weights
        self.bev_embedding = nn.Sequential(
            nn.Linear(hidden_dim * 2, hidden_dim), nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, hidden_dim))
        self.rv_embedding = nn.Sequential(
            nn.Linear(depth_num * 3, hidden_dim * 4), nn.ReLU(inplace=True),
            nn.Linear(hidden_dim * 4, hidden_dim))

    @classmethod
    def from_state_dict(cls, head_sd: Mapping[str, torch.Tensor],
                        pc_range: Sequence[float] = POINT_CLOUD_RANGE,
                        depth_num: int | None = None) -> "CMTEmbeddings":
        """Build from a ``pts_bbox_head.*`` state_dict (prefix optional); sizes from shapes.

        num_query = rows of ``reference_points.weight``, hidden = rows of
        ``bev_embedding.2.weight``, depth_num = columns of ``rv_embedding.0.weight`` / 3
        (must equal ``depth_num`` when that is given).
        """
        pre = "pts_bbox_head."
        sd = {k[len(pre):] if k.startswith(pre) else k: v for k, v in head_sd.items()}
        own = ("reference_points.", "bev_embedding.", "rv_embedding.")
        sub = {k: v for k, v in sd.items() if k.startswith(own)}
        try:
            num_query = sub["reference_points.weight"].shape[0]
            hidden = sub["bev_embedding.2.weight"].shape[0]
            rv_in = sub["rv_embedding.0.weight"].shape[1]
        except KeyError as exc:
            raise AQRInputError(f"head_sd: missing key {exc.args[0]!r}") from None
        if rv_in % 3 or (depth_num is not None and rv_in != 3 * depth_num):
            raise AQRInputError(f"head_sd['rv_embedding.0.weight']: expected "
                                f"{3 * (depth_num or 64)} input columns (3 x depth_num), "
                                f"got {rv_in}")
        module = cls(num_query, hidden, rv_in // 3, pc_range)
        try:
            module.load_state_dict(sub, strict=True)
        except RuntimeError as exc:
            raise AQRInputError(f"head_sd: does not fit CMTEmbeddings: {exc}") from None
        return module

    def query_embed(self, ref_points: torch.Tensor, img_metas) -> tuple[torch.Tensor, torch.Tensor]:
        """``CmtHead.query_embed``: ``(bev_query_embeds, rv_query_embeds)``, each [B, Q, C].

        ``ref_points`` [B, Q, 3] normalised (x, y, z); clamped by the
        ``sigmoid(inverse_sigmoid(.))`` round trip first (spec 1.7). The sum of the two is the
        query position embedding.
        """
        check_shape("ref_points", ref_points, (len(img_metas), None, 3), "[B, Q, 3]")
        check_finite("ref_points", ref_points)
        ref = inverse_sigmoid(ref_points.clone()).sigmoid()
        bev = self.bev_embedding(pos2embed(ref, num_pos_feats=self.hidden_dim))
        return bev, self._rv_query_embed(ref, img_metas)

    def _rv_query_embed(self, ref_points: torch.Tensor, img_metas) -> torch.Tensor:
        """``CmtHead._rv_query_embed``: [B, Q, C], summed over the views that see each point."""
        pad_h, pad_w = meta_hw(img_metas, "pad_shape")
        mats = lidar2img_stack(img_metas)
        l2i = torch.from_numpy(mats).float().to(ref_points.device)
        i2l = torch.from_numpy(np.linalg.inv(mats)).float().to(ref_points.device)
        lo = ref_points.new_tensor(self.pc_range[:3])
        span = ref_points.new_tensor(self.pc_range[3:]) - lo
        ref = ref_points * span + lo
        hom = torch.cat([ref, ref.new_ones(*ref.shape[:-1], 1)], dim=-1)
        proj = torch.einsum("bnd, bvcd -> bvnc", hom, l2i)
        pts = proj.clone()
        z_mask = proj[..., 2:3] > 0
        pts[..., :3] = proj[..., :3] / (proj[..., 2:3] + z_mask * 1e-6 - (~z_mask) * 1e-6)
        mask = ((pts[..., 0] < pad_w) & (pts[..., 0] >= 0)
                & (pts[..., 1] < pad_h) & (pts[..., 1] >= 0))
        mask &= z_mask.squeeze(-1)
        pts = torch.einsum("bvnc, d -> bvndc", pts, self._depths(ref.device))
        pts = torch.cat([pts[..., :3], pts.new_ones(*pts.shape[:-1], 1)], dim=-1)
        back = torch.einsum("bvndo, bvco -> bvndc", pts, i2l)
        back = (back[..., :3] - lo[None, None, None, :]) / span[None, None, None, :]
        rv = _mlp_chunked(self.rv_embedding, back.reshape(*back.shape[:-2], -1))
        return (rv * mask.unsqueeze(-1)).sum(dim=1)

    def _depths(self, device) -> torch.Tensor:
        """Depth bins ``1 + k*(x_max - 1)/D`` in metres, k = 0..D-1 (spec 1.5)."""
        k = torch.arange(self.depth_num, device=device).float()
        return 1 + k * (self.pc_range[3] - 1) / self.depth_num

    def bev_pos_embed(self, bev_h: int, bev_w: int) -> torch.Tensor:
        """BEV key position embedding ``bev_embedding(pos2embed(coords_bev))``, [H*W, C]."""
        device = _device_of(self.bev_embedding)
        coords = coords_bev(bev_h, bev_w).to(device)
        return self.bev_embedding(pos2embed(coords, num_pos_feats=self.hidden_dim))

    def rv_pos_embed(self, pers_shape, img_metas) -> torch.Tensor:
        """``CmtHead._rv_pe``: camera key position embedding [B*V, h, w, C].

        ``pers_shape`` is (h, w), (V, h, w) or the camera feature tensor [B*V, C, h, w]; the
        pixel grid uses ``img_metas[0]['pad_shape'][0]`` (cell top-left corners).
        """
        h, w = self._pers_hw(pers_shape)
        pad_h, pad_w = meta_hw(img_metas, "pad_shape")
        mats = lidar2img_stack(img_metas)
        device = _device_of(self.rv_embedding)
        coords_h = torch.arange(h, device=device).float() * pad_h / h
        coords_w = torch.arange(w, device=device).float() * pad_w / w
        grid_h, grid_w, grid_d = torch.meshgrid([coords_h, coords_w, self._depths(device)],
                                                indexing="ij")
        coords = torch.stack([grid_w, grid_h, grid_d, grid_h.new_ones(grid_h.shape)], dim=-1)
        coords[..., :2] = coords[..., :2] * coords[..., 2:3]
        i2l = torch.from_numpy(np.linalg.inv(mats).reshape(-1, 4, 4)).float().to(device)
        lo = coords.new_tensor(self.pc_range[:3])
        span = coords.new_tensor(self.pc_range[3:]) - lo
        out = []
        for mat in i2l:  # one image at a time bounds memory at 1600x640
            pts = torch.einsum("hwdo, bco -> bhwdc", coords, mat[None])
            pts = (pts[..., :3] - lo[None, None, None, :]) / span[None, None, None, :]
            out.append(_mlp_chunked(self.rv_embedding, pts.reshape(*pts.shape[:-2], -1)))
        return torch.cat(out)

    @staticmethod
    def _pers_hw(pers_shape) -> tuple[int, int]:
        if isinstance(pers_shape, torch.Tensor):
            check_tensor("x_img", pers_shape, 4)
            return int(pers_shape.shape[2]), int(pers_shape.shape[3])
        shape = tuple(pers_shape)
        if len(shape) not in (2, 3):
            raise AQRInputError(f"pers_shape: expected (h, w) or (V, h, w), got {shape!r}")
        return check_positive_shape("pers_shape", shape[-2:], 2)

    def pos_embed(self, bev_shape, pers_shape, img_metas) -> torch.Tensor:
        """Full key position embedding ``[F, B, C]`` in memory order for ``img_metas``."""
        bev = self.bev_pos_embed(*check_positive_shape("bev_shape", bev_shape, 2))
        return build_pos_embed(bev, self.rv_pos_embed(pers_shape, img_metas), len(img_metas))
