"""``AQRWeightGenerator``: per-query LiDAR and camera weights (spec 2), pure torch.

Reproduces upstream ``aqr_weight_generator.py`` with the two variant switches a checkpoint or
dump needs: the weight activation (``tanh`` at HEAD, ``sigmoid`` in the logged runs) and
whether the encoder attention honours the local attention mask (LAM). The module is meant to
run in ``eval()`` mode (dropout off), which is how every golden number was produced; in
``train()`` mode attention and residual dropout (p from ``encoder_config``) are applied.

Reproducibility: projection, LAM and indices are bit-exact. Outputs behind the encoder depend
on float32 GEMM rounding: with the checkpoint's random-normal in-projection the attention
logits reach |770|, so different CPUs/BLAS builds (including upstream's) agree only to ~1e-4.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_finite, check_positive_shape, check_shape, check_tensor
from .configs import POINT_CLOUD_RANGE
from .embeddings import lidar2img_stack, meta_hw
from .errors import AQRInputError, warn_quirk

_CHUNK_BYTES = 256 * 2**20
"""Budget for the attention intermediates of one query chunk."""

ATTENTION_HONOURS_LAM = {
    "PETRMultiheadFlashAttention": False,
    "MultiheadAttention": True,
    "PETRMultiheadAttention": True,
}
"""Encoder attention types that build upstream, and whether they apply ``attn_mask`` (spec 2.4)."""

_OPERATION_ORDER = ("cross_attn", "norm", "ffn", "norm")


@dataclass(frozen=True)
class EncoderSpec:
    """What the AQR encoder config determines (spec 2.4)."""

    attention_type: str
    num_layers: int
    num_heads: int
    feedforward_channels: int
    attn_drop: float
    proj_drop: float
    post_norm: bool


def _one(name: str, value):
    """A config that may be given as a dict or a one-element list."""
    if isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise AQRInputError(f"{name}: expected one entry (only 'cross_attn'), got {len(value)}")
        value = value[0]
    if not isinstance(value, Mapping):
        raise AQRInputError(f"{name}: expected a dict, got {type(value).__name__}")
    return value


def parse_encoder_config(cfg, embed_dims: int) -> EncoderSpec:
    """Read heads, FFN width, layers and dropouts from an mmcv ``PETRTransformerDecoder`` dict."""
    if cfg is None:
        raise AQRInputError("encoder_config: required (upstream raises ValueError without it)")
    if not isinstance(cfg, Mapping):
        raise AQRInputError(f"encoder_config: expected a dict, got {type(cfg).__name__}")
    layers = cfg.get("transformerlayers")
    num_layers = int(cfg.get("num_layers", 1))
    if isinstance(layers, (list, tuple)):
        if len(layers) != num_layers or any(dict(x) != dict(layers[0]) for x in layers):
            raise AQRInputError(
                "encoder_config.transformerlayers: per-layer configs must be identical")
        layers = layers[0]
    layer = _one("encoder_config.transformerlayers", layers)
    order = tuple(layer.get("operation_order", ()))
    if order != _OPERATION_ORDER:
        raise AQRInputError(f"encoder_config.transformerlayers.operation_order: expected "
                            f"{_OPERATION_ORDER}, got {order}")
    attn = _one("encoder_config.transformerlayers.attn_cfgs", layer.get("attn_cfgs"))
    ffn = _one("encoder_config.transformerlayers.ffn_cfgs", layer.get("ffn_cfgs", {}))
    heads = int(attn.get("num_heads", 8))
    if int(attn.get("embed_dims", embed_dims)) != embed_dims or embed_dims % heads:
        raise AQRInputError(f"encoder_config attn_cfgs: embed_dims must be {embed_dims} and "
                            f"divisible by num_heads={heads}")
    if int(ffn.get("num_fcs", 2)) != 2 or ffn.get("act_cfg", {"type": "ReLU"})["type"] != "ReLU":
        raise AQRInputError("encoder_config ffn_cfgs: only the 2-layer ReLU FFN is supported")
    ff = ffn.get("feedforward_channels", layer.get("feedforward_channels", 1024))
    drop = float(attn.get("dropout", 0.0))
    return EncoderSpec(
        attention_type=str(attn.get("type")), num_layers=num_layers, num_heads=heads,
        feedforward_channels=int(ff), attn_drop=float(attn.get("attn_drop", drop)),
        proj_drop=drop, post_norm=cfg.get("post_norm_cfg", {"type": "LN"}) is not None)


def resolve_honour_lam(attention_type: str, honour_lam: bool | None) -> bool:
    """Whether the encoder applies the LAM: explicit switch, else the attention type (spec 2.4)."""
    if attention_type == "MultiFheadFlashAttention":
        raise AQRInputError(
            "encoder_config: attention type 'MultiFheadFlashAttention' (the misspelt CmtHead "
            "default, spec Q21) is not registered upstream, so upstream fails to build this "
            "generator; use 'PETRMultiheadFlashAttention' (ignores the LAM, HEAD configs) or "
            "'MultiheadAttention' (applies it, logged runs)")
    if attention_type not in ATTENTION_HONOURS_LAM:
        raise AQRInputError(
            f"encoder_config: unknown attention type {attention_type!r}; upstream would fail "
            f"to build it. Known: {sorted(ATTENTION_HONOURS_LAM)}")
    return ATTENTION_HONOURS_LAM[attention_type] if honour_lam is None else bool(honour_lam)


def _heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """[B, L, C] -> [B, heads, L, C/heads]."""
    b, n, c = x.shape
    return x.view(b, n, num_heads, c // num_heads).transpose(1, 2)


def global_attention(q, k, v, num_heads: int, dropout_p: float = 0.0) -> torch.Tensor:
    """Softmax attention of every query over every key -> [B, Q, C] (SDPA, as upstream).

    ``q`` [B, Q, C], ``k``/``v`` [B, F, C] (already projected); scale 1/sqrt(C/heads). Without
    dropout SDPA's CPU flash kernel never materialises [B, heads, Q, F]; with dropout (training)
    it falls back to the math kernel, so queries are then processed in chunks.
    """
    b, n_q, c = q.shape
    qh, kh, vh = _heads(q, num_heads), _heads(k, num_heads), _heads(v, num_heads)
    step = n_q if dropout_p == 0 else max(1, _CHUNK_BYTES // (8 * b * num_heads * k.shape[1]))
    out = [F.scaled_dot_product_attention(qh[:, :, s:s + step], kh, vh, dropout_p=dropout_p)
           for s in range(0, n_q, step)]
    return torch.cat(out, dim=2).transpose(1, 2).reshape(b, n_q, c)


def local_attention(q, k, v, keys, allowed, num_heads: int, dropout_p: float = 0.0) -> torch.Tensor:
    """Attention restricted to each query's key set (the LAM's unmasked keys) -> [B, Q, C].

    ``keys`` [B, Q, K] memory indices, ``allowed`` [B, Q, K] (False = not attended, e.g.
    padding). Equals a dense softmax with ``-inf`` at every masked key.
    """
    b, n_q, c = q.shape
    qh = _heads(q * (1.0 / math.sqrt(c // num_heads)), num_heads)
    kh, vh = _heads(k, num_heads).contiguous(), _heads(v, num_heads).contiguous()
    bi = torch.arange(b, device=q.device)[:, None, None, None]
    hi = torch.arange(num_heads, device=q.device)[None, :, None, None]
    step = max(1, _CHUNK_BYTES // (8 * b * keys.shape[2] * c))
    out = []
    for s in range(0, n_q, step):
        idx = keys[:, None, s:s + step]  # [B, 1, Qc, K]
        kg, vg = kh[bi, hi, idx], vh[bi, hi, idx]  # [B, heads, Qc, K, d]
        logits = (kg @ qh[:, :, s:s + step, :, None]).squeeze(-1)
        logits = logits.masked_fill(~allowed[:, None, s:s + step], float("-inf"))
        prob = F.dropout(logits.softmax(dim=-1), p=dropout_p)
        out.append((prob.unsqueeze(-2) @ vg).squeeze(-2))
    return torch.cat(out, dim=2).transpose(1, 2).reshape(b, n_q, c)


class _PackedAttention(nn.Module):
    """Packed q/k/v in-projection + out-projection (``attn.*`` keys of all variants)."""

    def __init__(self, embed_dims: int, num_heads: int, attn_drop: float):
        super().__init__()
        self.num_heads, self.attn_drop = num_heads, attn_drop
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dims, embed_dims))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * embed_dims))
        self.out_proj = nn.Linear(embed_dims, embed_dims)

    def forward(self, query, key, value, key_sets=None) -> torch.Tensor:
        """Batch-first ``query`` [B, Q, C], ``key``/``value`` [B, F, C] -> [B, Q, C]."""
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3)
        q, k, v = F.linear(query, w_q, b_q), F.linear(key, w_k, b_k), F.linear(value, w_v, b_v)
        p = self.attn_drop if self.training else 0.0
        if key_sets is None:
            ctx = global_attention(q, k, v, self.num_heads, p)
        else:
            keys, allowed = key_sets
            ctx = local_attention(q, k, v, keys, allowed, self.num_heads, p)
        return self.out_proj(ctx)


class _CrossAttention(nn.Module):
    """mmcv-style wrapper: adds positions to q and k, returns ``query + dropout(attn)``."""

    def __init__(self, embed_dims: int, num_heads: int, attn_drop: float, proj_drop: float):
        super().__init__()
        self.num_heads = num_heads
        self.attn = _PackedAttention(embed_dims, num_heads, attn_drop)
        self.dropout_layer = nn.Dropout(proj_drop)

    def forward(self, query, key, value, query_pos, key_pos, key_sets=None):
        """``query``/``query_pos`` [Q, B, C]; ``key``/``value``/``key_pos`` [F, B, C]."""
        out = self.attn((query + query_pos).transpose(0, 1), (key + key_pos).transpose(0, 1),
                        value.transpose(0, 1), key_sets)
        return query + self.dropout_layer(out.transpose(0, 1))


class _FFN(nn.Module):
    """mmcv ``FFN``: ``x + Linear(Dropout(ReLU(Linear(x))))``; upstream FFN dropout is 0 (Q23)."""

    def __init__(self, embed_dims: int, feedforward_channels: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Sequential(nn.Linear(embed_dims, feedforward_channels), nn.ReLU(inplace=True),
                          nn.Dropout(0.0)),
            nn.Linear(feedforward_channels, embed_dims), nn.Dropout(0.0))

    def forward(self, x):
        return x + self.layers(x)


class _DecoderLayer(nn.Module):
    """``PETRTransformerDecoderLayer`` with operation order (cross_attn, norm, ffn, norm)."""

    def __init__(self, embed_dims: int, spec: EncoderSpec):
        super().__init__()
        self.attentions = nn.ModuleList([_CrossAttention(
            embed_dims, spec.num_heads, spec.attn_drop, spec.proj_drop)])
        self.ffns = nn.ModuleList([_FFN(embed_dims, spec.feedforward_channels)])
        self.norms = nn.ModuleList([nn.LayerNorm(embed_dims), nn.LayerNorm(embed_dims)])

    def forward(self, query, key, value, query_pos, key_pos, key_sets=None):
        query = self.attentions[0](query, key, value, query_pos, key_pos, key_sets)
        query = self.norms[0](query)
        return self.norms[1](self.ffns[0](query))


class _Encoder(nn.Module):
    """``PETRTransformerDecoder`` (return_intermediate): output [num_layers, Q, B, C]."""

    def __init__(self, embed_dims: int, spec: EncoderSpec):
        super().__init__()
        self.layers = nn.ModuleList(
            [_DecoderLayer(embed_dims, spec) for _ in range(spec.num_layers)])
        self.post_norm = nn.LayerNorm(embed_dims) if spec.post_norm else None

    def forward(self, query, key, value, query_pos, key_pos, key_sets=None):
        inter = []
        for layer in self.layers:
            query = layer(query, key, value, query_pos, key_pos, key_sets)
            inter.append(self.post_norm(query) if self.post_norm is not None else query)
        return torch.stack(inter)


class AQRWeightGenerator(nn.Module):
    """Per-query LiDAR/camera weights from a one-layer encoder over BEV + camera memory.

    Upstream keyword arguments (``AQRWeightGenerator(**aqr_config)`` works for the dicts in
    :mod:`aqr_cli.core.configs`): ``window_sizes`` = [camera, lidar] LAM windows in cells,
    ``pc_range`` in metres, ``bev_feature_shape`` = (H, W), ``pers_feature_shape`` =
    (V, h, w). Variant switches: ``weight_activation`` ('tanh' | 'sigmoid') and
    ``honour_lam`` (None = decided by the encoder attention type, spec 2.4).
    """

    def __init__(self, embed_dims: int = 256, encoder_config: dict | None = None,
                 window_sizes: Sequence[int] = (15, 5), use_type_embed: bool = True,
                 pc_range: Sequence[float] = POINT_CLOUD_RANGE,
                 bev_feature_shape: Sequence[int] = (180, 180),
                 pers_feature_shape: Sequence[int] = (6, 40, 100), init_cfg=None, *,
                 weight_activation: str = "tanh", honour_lam: bool | None = None):
        super().__init__()
        self.embed_dims = check_positive_shape("embed_dims", (embed_dims,), 1)[0]
        self.spec = parse_encoder_config(encoder_config, self.embed_dims)
        self.honour_lam = resolve_honour_lam(self.spec.attention_type, honour_lam)
        if weight_activation not in ("tanh", "sigmoid"):
            raise AQRInputError(
                f"weight_activation: expected 'tanh' or 'sigmoid', got {weight_activation!r}")
        self.weight_activation = weight_activation
        self.window_sizes = list(check_positive_shape("window_sizes", window_sizes, 2))
        if len(pc_range) != 6 or not all(math.isfinite(float(x)) for x in pc_range):
            raise AQRInputError(f"pc_range: expected 6 finite numbers, got {list(pc_range)}")
        self.pc_range = [float(x) for x in pc_range]
        self.bev_h, self.bev_w = check_positive_shape("bev_feature_shape", bev_feature_shape, 2)
        self.num_views, self.pers_h, self.pers_w = check_positive_shape(
            "pers_feature_shape", pers_feature_shape, 3)
        self._check_windows()
        self.use_type_embed, self.init_cfg = bool(use_type_embed), init_cfg
        if self.use_type_embed:
            self.bev_type_embed = nn.Parameter(torch.randn(self.embed_dims))
            self.rv_type_embed = nn.Parameter(torch.randn(self.embed_dims))
        self.encoder = _Encoder(self.embed_dims, self.spec)
        self.e_num_heads = self.spec.num_heads
        self.weight_predictor = nn.Linear(self.embed_dims, 2)
        self.init_weights()

    def _check_windows(self) -> None:
        """Both LAM windows (2k+1 cells per side) must fit their maps (spec Q10)."""
        for name, win, (h, w) in (("camera", self.window_sizes[0], (self.pers_h, self.pers_w)),
                                  ("lidar", self.window_sizes[1], (self.bev_h, self.bev_w))):
            side = 2 * (win // 2) + 1
            if side > h or side > w:
                raise AQRInputError(
                    f"window_sizes: the {name} window {win} spans {side}x{side} cells (offsets "
                    f"-{win // 2}..{win // 2}), which does not fit the {h}x{w} {name} feature "
                    f"map; upstream would wrap it into neighbouring rows/views (spec Q10)")

    def init_weights(self) -> None:
        """Upstream init: xavier-uniform Linear weights, zero biases, predictor bias 1.5."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, _PackedAttention):
                if self.spec.attention_type == "PETRMultiheadFlashAttention":
                    nn.init.normal_(m.in_proj_weight)  # FlashBiasAttention keeps randn
                    nn.init.normal_(m.in_proj_bias)
                else:
                    nn.init.xavier_uniform_(m.in_proj_weight)
                    nn.init.zeros_(m.in_proj_bias)
        nn.init.constant_(self.weight_predictor.bias, 1.5)

    @property
    def num_features(self) -> int:
        """Memory length F = H*W + V*h*w."""
        return self.bev_h * self.bev_w + self.num_views * self.pers_h * self.pers_w

    def project_3d_to_features(self, ref_points: torch.Tensor, img_metas):
        """Feature-map cells of the reference points (spec 2.2), bit-exact to upstream.

        ``ref_points`` [B, Q, 3] normalised (raw, not clamped). Returns ``pts_bev`` [B, Q, 2]
        (row, col) BEV cells, ``pts_pers`` [B, Q, 3] (view, row, col) camera cells with the
        sentinel (0, 0, 0) for queries no camera sees, ``pts_idx`` [B, Q] = row*bev_w + col and
        ``pts_pers_idx`` [B, Q] = view*pers_h*pers_w + row*pers_w + col; all float32 holding
        integers. Emits QuirkWarnings Q3 (sentinel count), Q2 (cells off the grid), Q4.
        """
        return self._project(ref_points, img_metas)[:4]

    def first_valid_view(self, ref_points: torch.Tensor, img_metas) -> torch.Tensor:
        """[B, Q] int64: view picked by ``project_3d_to_features``, -1 = none (pre-sentinel)."""
        return self._project(ref_points, img_metas, warn=False)[4]

    def project_with_views(self, ref_points: torch.Tensor, img_metas):
        """``project_3d_to_features`` and ``first_valid_view`` from one projection:
        ``(pts_bev, pts_pers, pts_idx, pts_pers_idx, view)`` (same warnings as the former)."""
        return self._project(ref_points, img_metas)

    def _project(self, ref_points, img_metas, warn: bool = True):
        b, n_q = self._check_ref_points(ref_points, img_metas)
        ref_points = ref_points.float()  # upstream projects in float32
        mats = torch.tensor(lidar2img_stack(img_metas, self.num_views)).float()
        mats = mats.to(ref_points.device)
        img_h, img_w = meta_hw(img_metas, "img_shape")
        ref = self._denormalize(ref_points)
        hom = torch.cat([ref, torch.ones((b, n_q, 1), device=ref.device)], dim=-1)
        pts_2d = torch.einsum("bni,bvij->bvnj", hom, mats.transpose(2, 3))
        pts_2d[..., 2] = torch.clip(pts_2d[..., 2], min=1e-5, max=99999)
        pts_2d[..., 0] /= pts_2d[..., 2]
        pts_2d[..., 1] /= pts_2d[..., 2]
        fov = ((pts_2d[..., 0] < img_w) & (pts_2d[..., 0] >= 0)
               & (pts_2d[..., 1] < img_h) & (pts_2d[..., 1] >= 0))
        pad = torch.zeros((b, 1, n_q), dtype=torch.bool, device=fov.device)
        first = torch.cat([pad, fov], dim=1).to(torch.float32).argmax(dim=1)  # first maximum
        view = torch.where(first == 0, -1, first - 1)
        pts_pers = self._pers_coords(pts_2d, view, img_h)
        pts_bev = torch.floor((ref[..., :2] + 54.0) * (self.bev_h / 108))[:, :, [1, 0]]
        pts_idx = pts_bev[:, :, 0] * self.bev_w + pts_bev[:, :, 1]
        pts_pers_idx = (pts_pers[:, :, 0] * self.pers_h * self.pers_w
                        + pts_pers[:, :, 1] * self.pers_w + pts_pers[:, :, 2])
        if warn:
            self._warn_projection(pts_bev, view, img_metas)
        return pts_bev, pts_pers, pts_idx, pts_pers_idx, view

    def _denormalize(self, ref_points: torch.Tensor) -> torch.Tensor:
        """Normalised -> metres, per axis ``r*(max - min) + min`` in float32 (no clamp)."""
        pc = self.pc_range
        ref = ref_points.new_zeros(ref_points.shape)
        for a in range(3):
            ref[..., a:a + 1] = ref_points[..., a:a + 1] * (pc[a + 3] - pc[a]) + pc[a]
        return ref

    def _pers_coords(self, pts_2d, view, img_h: int) -> torch.Tensor:
        """(view, floor(row*ratio), floor(col*ratio)) with the (0, 0, 0) sentinel, [B, Q, 3]."""
        b, _, n_q, _ = pts_2d.shape
        idx = view.clamp(min=0)[:, None, :, None].expand(b, 1, n_q, 4)
        chosen = pts_2d.gather(1, idx).squeeze(1)[..., [1, 0]]
        chosen = torch.where((view >= 0)[..., None], chosen, torch.full_like(chosen, float("nan")))
        pts_pers = torch.cat([view.unsqueeze(-1).to(chosen.dtype), chosen], dim=-1)
        ratio = torch.tensor(self.pers_h / img_h, device=pts_2d.device)
        pts_pers[:, :, 1:] = torch.floor(pts_pers[:, :, 1:] * ratio)
        pts_pers[pts_pers[:, :, 0] == -1] = 0.0
        return pts_pers

    def _warn_projection(self, pts_bev, view, img_metas) -> None:
        total = view.numel()
        unseen = int((view == -1).sum())
        if unseen:
            warn_quirk("Q3", f"{unseen} of {total} queries are seen by no camera; their pts_pers "
                       "is the sentinel (0, 0, 0) = CAM_FRONT cell (0, 0)",
                       count=unseen, total=total)
        rows, cols = pts_bev[..., 0], pts_bev[..., 1]
        out = int(((rows < 0) | (rows >= self.bev_h) | (cols < 0) | (cols >= self.bev_w)).sum())
        if out:
            warn_quirk("Q2", f"{out} of {total} pts_bev cells fall outside the {self.bev_h}x"
                       f"{self.bev_w} BEV grid (hard-coded +-54 m mapping, no clamp)",
                       count=out, total=total)
        shapes = {tuple(s[:2]) for m in img_metas for s in m.get("img_shape", [])}
        if len(shapes) > 1:
            warn_quirk("Q4", "img_shape differs between samples/views; upstream uses sample 0, "
                       "camera 0 for every FOV test", shapes=sorted(shapes))

    def local_key_sets(self, pts_idx: torch.Tensor, pts_pers_idx: torch.Tensor):
        """Keys each query may attend under the LAM: ``(keys [B, Q, K] int64, allowed [B, Q, K])``.

        ``keys`` are memory indices (BEV then camera); each allowed key appears once, K =
        (2kl+1)^2 + (2kc+1)^2. Exactly the False entries of
        :meth:`generate_local_attention_masks`.
        """
        check_shape("pts_idx", pts_idx, (None, None), "[B, Q]")
        check_shape("pts_pers_idx", pts_pers_idx, tuple(pts_idx.shape), "[B, Q]")
        check_finite("pts_idx", pts_idx)
        check_finite("pts_pers_idx", pts_pers_idx)
        lid_keys, lid_ok = self._lidar_window(pts_idx)
        cam_keys, cam_ok = self._camera_window(pts_pers_idx)
        keys = torch.cat([lid_keys, cam_keys + self.bev_h * self.bev_w], dim=-1)
        ok = torch.cat([lid_ok, cam_ok], dim=-1)
        keys, _ = torch.where(ok, keys, -1).sort(dim=-1)
        dup = torch.zeros_like(ok)
        dup[..., 1:] = keys[..., 1:] == keys[..., :-1]
        return keys.clamp(min=0), (keys >= 0) & ~dup

    def _camera_window(self, pts_pers_idx):
        """Upstream camera LAM candidates: clamped indices [B, Q, (2k+1)^2] and validity."""
        k = self.window_sizes[0] // 2
        h, w = self.pers_h, self.pers_w
        offsets = torch.arange(-k, k + 1, device=pts_pers_idx.device)
        window = (offsets.unsqueeze(1) * w + offsets.unsqueeze(0)).view(-1)
        idx = pts_pers_idx.unsqueeze(-1) + window
        q_rows, q_cols = (pts_pers_idx % (h * w)) // w, pts_pers_idx % w
        valid = (((idx % (h * w)) // w - q_rows.unsqueeze(-1)).abs() <= k) & (
            (idx % w - q_cols.unsqueeze(-1)).abs() <= k)
        return torch.clamp(idx, 0, self.num_views * h * w - 1).long(), valid

    def _lidar_window(self, pts_idx):
        """Upstream LiDAR LAM candidates [B, Q, (2k+1)^2]: in range, column-only check (Q10)."""
        k = self.window_sizes[1] // 2
        offsets = torch.arange(-k, k + 1, device=pts_idx.device)
        oy, ox = torch.meshgrid(offsets, offsets, indexing="ij")
        idx = pts_idx.unsqueeze(-1) + (oy * self.bev_w + ox).reshape(-1)
        valid = (idx >= 0) & (idx < self.bev_h * self.bev_w)
        cols = (idx % self.bev_w).float() - (pts_idx % self.bev_w).unsqueeze(-1).float()
        valid &= cols.abs() <= k
        return torch.where(valid, idx, torch.zeros_like(idx)).long(), valid

    def generate_local_attention_masks(self, pts_idx: torch.Tensor,
                                       pts_pers_idx: torch.Tensor) -> torch.Tensor:
        """The LAM, bool ``[B*heads, Q, F]``, True = masked; row ``b*heads + h`` (spec 2.3)."""
        keys, allowed = self.local_key_sets(pts_idx, pts_pers_idx)
        b, n_q, _ = keys.shape
        n_f = self.num_features
        mask = torch.ones((b, n_q, n_f + 1), dtype=torch.bool, device=keys.device)
        mask.scatter_(-1, torch.where(allowed, keys, n_f), False)
        mask = mask[..., :n_f].unsqueeze(1).expand(b, self.e_num_heads, n_q, n_f)
        return mask.reshape(b * self.e_num_heads, n_q, n_f)

    def forward(self, query_embed: torch.Tensor, memory: torch.Tensor, pos_embed: torch.Tensor,
                ref_points: torch.Tensor, img_metas, reg_branch=None):
        """Weights per query: ``(lidar_weights [B, Q], camera_weights [B, Q], None, info)``.

        ``query_embed`` [Q, B, C] query positions, ``memory``/``pos_embed`` [F, B, C] in memory
        order, ``ref_points`` [B, Q, 3]. ``info`` holds ``pts_bev``, ``pts_pers``, ``pts_idx``,
        ``pts_pers_idx`` (as upstream) plus ``first_valid_view`` [B, Q] (-1 = no camera).
        ``reg_branch`` is accepted and unused, as upstream.
        """
        dtype = self.weight_predictor.weight.dtype
        query_embed, memory, pos_embed = self._check_forward(query_embed, memory, pos_embed,
                                                             ref_points, img_metas, dtype)
        pts_bev, pts_pers, pts_idx, pts_pers_idx, view = self._project(ref_points, img_metas)
        key_sets = None
        if self.honour_lam:
            key_sets = self.local_key_sets(pts_idx, pts_pers_idx)
        else:
            warn_quirk("Q16", f"encoder attention {self.spec.attention_type} ignores the local "
                       "attention mask: every query attends to all F tokens",
                       attention_type=self.spec.attention_type)
        target = torch.zeros_like(query_embed)
        out = self.encoder(target, memory, memory, query_embed, pos_embed, key_sets)
        logits = self.weight_predictor(out[-1].transpose(1, 0))
        weights = torch.tanh(logits) if self.weight_activation == "tanh" else torch.sigmoid(logits)
        info = dict(pts_bev=pts_bev, pts_pers=pts_pers, pts_idx=pts_idx,
                    pts_pers_idx=pts_pers_idx, first_valid_view=view)
        return weights[..., 0], weights[..., 1], None, info

    def _check_ref_points(self, ref_points, img_metas) -> tuple[int, int]:
        check_tensor("ref_points", ref_points, 3)
        if ref_points.shape[2] != 3 or not ref_points.is_floating_point():
            raise AQRInputError(f"ref_points: expected a float tensor of shape [B, Q, 3], got "
                                f"{ref_points.dtype} {list(ref_points.shape)}")
        check_finite("ref_points", ref_points)
        b = ref_points.shape[0]
        if (isinstance(img_metas, Mapping) or not isinstance(img_metas, Sequence)
                or len(img_metas) != b):
            raise AQRInputError(f"img_metas: expected a list of B = {b} per-sample dicts")
        return b, ref_points.shape[1]

    def _check_forward(self, query_embed, memory, pos_embed, ref_points, img_metas, dtype):
        b, n_q = self._check_ref_points(ref_points, img_metas)
        c, n_f = self.embed_dims, self.num_features
        check_shape("query_embed", query_embed, (n_q, b, c), "[Q, B, C]")
        check_shape("memory", memory, (n_f, b, c), "[F = H*W + V*h*w, B, C]")
        check_shape("pos_embed", pos_embed, (n_f, b, c), "[F = H*W + V*h*w, B, C]")
        out = []
        for name, x in (("query_embed", query_embed), ("memory", memory), ("pos_embed", pos_embed)):
            if not x.is_floating_point():
                raise AQRInputError(f"{name}: expected a floating tensor, got {x.dtype}")
            out.append(check_finite(name, x).to(dtype))
        return out
