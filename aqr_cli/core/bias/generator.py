"""The upstream ``AttentionBiasGenerator`` (HEAD) module: windows, scale, forward passes."""

from __future__ import annotations

import torch
from torch import nn

from .._checks import check_finite, check_positive_shape, check_shape
from ..errors import AQRInputError, warn_quirk
from .boxes import WindowLayout
from .debug_stats import dense_stats, sparse_stats, weight_summary
from .sparse import SparseBias
from .state_dict import infer_parity, strip_prefix
from .windows import check_window, merge_view_overflow, window_axis_offsets

_GENERATION_HEAD = "head"
_GENERATION_OLD = "bias_snapshot"


def _check_number(name: str, value, positive: bool = False) -> float:
    """Return ``value`` as a finite float (> 0 when ``positive``), else raise."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise AQRInputError(f"{name}: expected a finite number, got {value!r}") from None
    if out != out or out in (float("inf"), float("-inf")) or (positive and out <= 0):
        kind = "finite positive" if positive else "finite"
        raise AQRInputError(f"{name}: expected a {kind} number, got {value!r}")
    return out


class AttentionBiasGenerator(nn.Module):
    """Upstream ``AttentionBiasGenerator`` (HEAD), CPU/pure torch, without the debug print.

    Constructor arguments and defaults are upstream's (``init_cfg`` is accepted and ignored), so
    ``AttentionBiasGenerator(**attention_bias_config)`` works for the reference configs.
    ``window_parity`` selects the even-window rule: ``'head'`` (-ws/2+1..ws/2) or
    ``'symmetric'`` (the ``CMTTEST/bias`` snapshot, -ws//2..ws//2, (ws+1)^2 cells for even ws).

    State: ``bias_scale`` [1] float32 (Parameter if ``learnable_scale`` else buffer),
    ``y_offsets``, ``x_offsets``, ``window_offsets_bev``, ``window_offsets_pers`` [K] int64,
    ``gaussian_weights`` [K] float32 (ones unless ``use_gaussian_window``); K = ws^2 (head).
    """

    bias_scale: torch.Tensor
    y_offsets: torch.Tensor
    x_offsets: torch.Tensor
    window_offsets_bev: torch.Tensor
    window_offsets_pers: torch.Tensor
    gaussian_weights: torch.Tensor

    def __init__(self, bev_feature_shape=(180, 180), pers_feature_shape=(6, 40, 100),
                 window_size=15, bias_scale=2.5, learnable_scale=True, min_scale=0.5,
                 max_scale=5.0, use_local_bias=True, use_gaussian_window=False,
                 gaussian_sigma=2.5, debug_print=True, print_interval=1000, fp16=True,
                 init_cfg=None, *, window_parity: str = "head"):
        super().__init__()
        self.bev_h, self.bev_w = check_positive_shape("bev_feature_shape", bev_feature_shape, 2)
        self.num_views, self.pers_h, self.pers_w = check_positive_shape(
            "pers_feature_shape", pers_feature_shape, 3)
        min_side = min(self.bev_h, self.bev_w, self.pers_h, self.pers_w)
        self.window_size = check_window(window_size, window_parity, min_side)
        self.window_parity = window_parity
        self.min_scale = _check_number("min_scale", min_scale)
        self.max_scale = _check_number("max_scale", max_scale, positive=True)
        if self.min_scale > self.max_scale:
            raise AQRInputError(f"min_scale: expected <= max_scale = {max_scale}, got {min_scale}")
        self.gaussian_sigma = _check_number("gaussian_sigma", gaussian_sigma,
                                            positive=bool(use_gaussian_window))
        if type(print_interval) is not int or print_interval < 1:
            raise AQRInputError(
                f"print_interval: expected a positive integer, got {print_interval!r}")
        self.use_local_bias = bool(use_local_bias)
        self.use_gaussian_window = bool(use_gaussian_window)
        self.learnable_scale = bool(learnable_scale)
        self.debug_print = bool(debug_print)
        self.print_interval = int(print_interval)
        self.fp16 = bool(fp16)
        self._iter_count = 0
        self.last_call_would_print = False
        self.checkpoint_generation = _GENERATION_HEAD
        scale = torch.tensor([_check_number("bias_scale", bias_scale)], dtype=torch.float32)
        if self.learnable_scale:
            self.bias_scale = nn.Parameter(scale)
        else:
            self.register_buffer("bias_scale", scale)
        for name, value in self._window_buffers().items():
            self.register_buffer(name, value)

    def _window_buffers(self) -> dict:
        """Offset and Gaussian buffers for the configured window, as upstream computes them."""
        axis = window_axis_offsets(self.window_size, self.window_parity)
        y, x = torch.meshgrid(axis, axis, indexing="ij")
        y, x = y.reshape(-1), x.reshape(-1)
        if self.use_gaussian_window:
            # Same expression as upstream (sqrt then square), for bit-identical weights.
            dist = torch.sqrt(y.float() ** 2 + x.float() ** 2)
            gauss = torch.exp(-dist ** 2 / (2 * self.gaussian_sigma ** 2))
        else:
            gauss = torch.ones(y.numel(), dtype=torch.float32)
        return dict(y_offsets=y, x_offsets=x, window_offsets_bev=y * self.bev_w + x,
                    window_offsets_pers=y * self.pers_w + x, gaussian_weights=gauss)

    def extra_repr(self) -> str:
        mode = "local" if self.use_local_bias else "global"
        return (f"bev=({self.bev_h}, {self.bev_w}), pers=({self.num_views}, {self.pers_h}, "
                f"{self.pers_w}), window={self.window_size} ({mode}, {self.window_parity}), "
                f"gaussian={self.use_gaussian_window}, learnable_scale={self.learnable_scale}, "
                f"fp16={self.fp16}")

    @property
    def max_bias(self) -> float:
        """Final clamp bound ``min(5, max_scale)``."""
        return min(5.0, self.max_scale)

    def _scale(self) -> torch.Tensor:
        """Scale as a 0-d tensor: clamped to [min, max] if learnable, raw otherwise (Q13)."""
        s = self.bias_scale.reshape(-1)[0]
        if self.learnable_scale:
            s = torch.clamp(s, min=self.min_scale, max=self.max_scale)
        return s

    def effective_scale(self) -> float:
        """The scale the forward pass multiplies by, as a float."""
        return float(self._scale().detach())

    @property
    def upstream_print_would_crash(self) -> bool:
        """True if upstream's debug print would raise (Q12) whenever it fires.

        Upstream formats the fixed ``[1]`` scale with ``:.4f`` (TypeError), so the head gets no
        bias on every ``print_interval``-th call; ``last_call_would_print`` says whether the
        last call was such a call.
        """
        return self.debug_print and not self.learnable_scale

    def _count_call(self) -> None:
        """Advance upstream's per-process call counter (spec 5.3, Q38)."""
        self.last_call_would_print = False
        if self.debug_print:
            self._iter_count += 1
            self.last_call_would_print = self._iter_count % self.print_interval == 0

    def forward(self, lidar_weights: torch.Tensor, camera_weights: torch.Tensor,
                pts_bev_indices: torch.Tensor, pts_pers_indices: torch.Tensor) -> torch.Tensor:
        """Dense attention bias [B, Q, F], float16 if ``fp16`` else float32, as upstream.

        lidar_weights, camera_weights: [B, Q]; pts_bev_indices: [B, Q] flat BEV index
        ``y*W + x`` (upstream ``pts_idx``); pts_pers_indices: [B, Q, 3] (view, h, w).
        """
        return self.forward_sparse(lidar_weights, camera_weights, pts_bev_indices,
                                   pts_pers_indices).to_dense()

    def forward_sparse(self, lidar_weights: torch.Tensor, camera_weights: torch.Tensor,
                       pts_bev_indices: torch.Tensor, pts_pers_indices: torch.Tensor) -> SparseBias:
        """The same bias as ``forward`` as a :class:`SparseBias` (no [B, Q, F] tensor)."""
        lw, cw, bev_idx, pers_idx = self._check_inputs(
            lidar_weights, camera_weights, pts_bev_indices, pts_pers_indices)
        self._count_call()
        if self.use_local_bias:
            self._warn_out_of_grid(bev_idx, pers_idx)
            indices, unscaled, mask, k_bev = self._local_entries(lw, cw, bev_idx, pers_idx)
        else:
            indices, unscaled, mask, k_bev = self._global_entries(lw, cw)
        scale = self._scale()
        values = torch.clamp(unscaled * scale, min=-self.max_bias, max=self.max_bias)
        layout = None
        if self.use_local_bias:
            layout = self._window_layout(bev_idx, pers_idx, (indices, values, mask))
        return SparseBias(indices=indices, values=values, mask=mask,
                          bev_shape=(self.bev_h, self.bev_w),
                          pers_shape=(self.num_views, self.pers_h, self.pers_w), k_bev=k_bev,
                          dtype=torch.float16 if self.fp16 else torch.float32,
                          is_global=not self.use_local_bias, unscaled=unscaled,
                          scale=scale.detach(), layout=layout)

    def _local_entries(self, lw, cw, bev_idx, pers_idx):
        """Both windows: (columns, unscaled values, validity) [B, Q, K] and K_bev."""
        parts = (self._bev_window(lw, bev_idx), self._camera_window(cw, pers_idx))
        cols, raw, ok = (torch.cat(t, -1) for t in zip(*parts))
        return cols, raw, ok, parts[0][0].shape[-1]

    def _window_layout(self, bev_idx, pers_idx, entries: tuple):
        """The :class:`WindowLayout` of the windows just built, or None if they are not uniform
        boxes (Gaussian window, or offset buffers other than the ones ``__init__`` makes).

        ``entries``: the (indices, values, mask) it describes; the index inputs are copied.
        """
        if self.use_gaussian_window or not self._standard_offsets():
            return None
        axis = window_axis_offsets(self.window_size, self.window_parity)
        return WindowLayout(bev_idx.detach().clone(), pers_idx.detach().clone(), int(axis[0]),
                            int(axis.numel()), tuple((t, t._version) for t in entries))

    def _standard_offsets(self) -> bool:
        """True if the offset buffers are those ``__init__`` builds (cached per buffer version)."""
        names = ("y_offsets", "x_offsets", "window_offsets_bev", "window_offsets_pers")
        bufs = [getattr(self, name) for name in names]
        key = tuple((t._version, t.data_ptr(), t.device) for t in bufs)
        cached = self.__dict__.get("_standard_offsets_cache")
        if cached is None or cached[0] != key:
            want = self._window_buffers()
            ok = all(torch.equal(t, want[name].to(t.device)) for name, t in zip(names, bufs))
            cached = self.__dict__["_standard_offsets_cache"] = (key, ok)
        return cached[1]

    def _global_entries(self, lw, cw):
        """One entry per segment: the BEV value at column 0, the camera value at column H*W."""
        b, q = lw.shape
        starts = torch.tensor([0, self.bev_h * self.bev_w], device=lw.device).expand(b, q, 2)
        mask = torch.ones(b, q, 2, dtype=torch.bool, device=lw.device)
        return starts, torch.stack([lw, cw], -1), mask, 1

    def _check_inputs(self, lidar_weights, camera_weights, pts_bev_indices, pts_pers_indices):
        """Validate shapes and finiteness; return float32 weights and the untouched indices."""
        if not isinstance(lidar_weights, torch.Tensor) or lidar_weights.dim() != 2:
            is_t = isinstance(lidar_weights, torch.Tensor)
            got = list(lidar_weights.shape) if is_t else type(lidar_weights).__name__
            raise AQRInputError(f"lidar_weights: expected shape [B, Q], got {got}")
        b, q = lidar_weights.shape
        check_shape("camera_weights", camera_weights, (b, q), "[B, Q]")
        check_shape("pts_bev_indices", pts_bev_indices, (b, q), "[B, Q]")
        check_shape("pts_pers_indices", pts_pers_indices, (b, q, 3), "[B, Q, 3]")
        named = dict(lidar_weights=lidar_weights, camera_weights=camera_weights,
                     pts_bev_indices=pts_bev_indices, pts_pers_indices=pts_pers_indices)
        for name, t in named.items():
            if t.is_complex() or t.dtype == torch.bool:
                raise AQRInputError(f"{name}: expected a real-valued tensor, got dtype {t.dtype}")
            check_finite(name, t)
        # Upstream decorates forward with force_fp32: weights are used in float32.
        return lidar_weights.float(), camera_weights.float(), pts_bev_indices, pts_pers_indices

    def _masked_weights(self, weights: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``w * g`` at valid window slots, 0 elsewhere: [B, Q, K] float32."""
        w = weights.unsqueeze(-1).expand(-1, -1, valid.shape[-1])
        if self.use_gaussian_window:
            w = w * self.gaussian_weights
        return torch.where(valid, w, torch.zeros_like(w))

    def _bev_window(self, weights: torch.Tensor, positions: torch.Tensor):
        """BEV window: (dense columns, unscaled values, validity), each [B, Q, K]."""
        n = self.bev_h * self.bev_w
        target = positions.unsqueeze(-1) + self.window_offsets_bev
        qy = torch.div(positions, self.bev_w, rounding_mode="floor").long()
        qx = positions % self.bev_w
        wy = qy.unsqueeze(-1) + self.y_offsets
        wx = qx.unsqueeze(-1) + self.x_offsets
        valid = (wy >= 0) & (wy < self.bev_h) & (wx >= 0) & (wx < self.bev_w)
        return target.clamp(0, n - 1).long(), self._masked_weights(weights, valid), valid

    def _camera_window(self, weights: torch.Tensor, positions: torch.Tensor):
        """Camera window: (dense columns, unscaled values, validity), each [B, Q, K]."""
        hw = self.pers_h * self.pers_w
        v, h, w = (positions[..., i].long() for i in range(3))
        flat = v * self.pers_h * self.pers_w + h * self.pers_w + w
        target = flat.unsqueeze(-1) + self.window_offsets_pers
        wh = h.unsqueeze(-1) + self.y_offsets
        ww = w.unsqueeze(-1) + self.x_offsets
        same_view = torch.div(target, hw, rounding_mode="floor") == v.unsqueeze(-1)
        valid = (wh >= 0) & (wh < self.pers_h) & (ww >= 0) & (ww < self.pers_w) & same_view
        raw = self._masked_weights(weights, valid)
        raw, valid = merge_view_overflow(v, self.num_views, raw, valid)
        cols = target.clamp(0, self.num_views * hw - 1) + self.bev_h * self.bev_w
        return cols, raw, valid

    def _warn_out_of_grid(self, bev_idx: torch.Tensor, pers_idx: torch.Tensor) -> None:
        """Emit Q2 with counts of BEV indices outside [0, H*W) and camera cells off the maps.

        A flat index inside [0, H*W) whose (y, x) was off the grid (e.g. x = -1) cannot be
        told from an in-grid one here: it silently wraps into the neighbouring row.
        """
        n_bev = int(((bev_idx < 0) | (bev_idx >= self.bev_h * self.bev_w)).sum())
        v, h, w = (pers_idx[..., i].long() for i in range(3))
        inside = ((v >= 0) & (v < self.num_views) & (h >= 0) & (h < self.pers_h)
                  & (w >= 0) & (w < self.pers_w))
        n_cam = int((~inside).sum())
        if n_bev or n_cam:
            warn_quirk("Q2", f"{n_bev} BEV indices outside the {self.bev_h}x{self.bev_w} grid "
                       f"and {n_cam} camera cells outside the maps: upstream keeps their wrapped "
                       f"/ partial windows (wrapped in-range indices are not detectable here)",
                       stacklevel=4, bev_out_of_grid=n_bev, camera_out_of_map=n_cam)

    def debug_statistics(self, bias, lidar_weights: torch.Tensor,
                         camera_weights: torch.Tensor) -> dict:
        """Upstream's debug-print statistics (spec 5.3) as a dict, plus in-window ones (Q11).

        ``bias``: a :class:`SparseBias` (preferred; statistics use the pre-clamp values as
        upstream) or a dense [B, Q, F] tensor (its values as given; "in window" then means the
        nonzero entries). ``all_entries`` counts every one of the B*Q*F entries like upstream
        (near-zero ~99% by construction); ``in_window`` only the window cells.
        """
        lw, cw = lidar_weights.detach().float(), camera_weights.detach().float()
        if isinstance(bias, SparseBias):
            all_entries, in_window, basis = sparse_stats(bias)
        else:
            all_entries, in_window, basis = dense_stats(bias, self.bev_h * self.bev_w)
        return dict(iteration=self._iter_count, scale=self._scale_stats(),
                    all_entries=all_entries, in_window=in_window,
                    in_window_basis=basis,
                    input_weights=dict(lidar=weight_summary(lw), camera=weight_summary(cw)),
                    modality_preference=dict(
                        prefer_lidar=float((lw > cw).float().mean()),
                        prefer_camera=float((cw > lw).float().mean()),
                        balanced=float(((lw - cw).abs() < 0.2).float().mean())))

    def _scale_stats(self) -> dict:
        """Scale, gradient and bound warnings as upstream prints them (bounds: learnable only)."""
        s = self.effective_scale()
        grad = self.bias_scale.grad
        learn = self.learnable_scale
        return dict(value=s, learnable=learn, requires_grad=bool(self.bias_scale.requires_grad),
                    grad=float(grad.reshape(-1)[0]) if learn and grad is not None else None,
                    near_max=learn and s > 0.9 * self.max_scale,
                    near_min=learn and not s > 0.9 * self.max_scale and s < 1.1 * self.min_scale)

    def get_memory_usage(self, batch_size: int, num_queries: int) -> dict:
        """Size of the dense bias [B, Q, F], exactly as upstream's ``get_memory_usage``."""
        total = self.bev_h * self.bev_w + self.num_views * self.pers_h * self.pers_w
        elements = batch_size * num_queries * total
        fp32, fp16 = elements * 4 / (1024 ** 2), elements * 2 / (1024 ** 2)
        return {"total_features": total, "bias_shape": (batch_size, num_queries, total),
                "memory_fp32_mb": fp32, "memory_fp16_mb": fp16,
                "current_dtype": "fp16" if self.fp16 else "fp32",
                "estimated_memory_mb": fp16 if self.fp16 else fp32}

    @classmethod
    def from_state_dict(cls, state_dict: dict, prefix: str | None = None,
                        window_parity: str | None = None, **config) -> "AttentionBiasGenerator":
        """Build from a checkpoint of either generation; stored buffers win (Q14).

        ``prefix`` defaults to whatever precedes ``bias_scale`` (e.g.
        ``'pts_bbox_head.attention_bias_generator.'``). The window parity is read from the
        stored offsets; an explicit ``window_parity`` that disagrees gives a Q14 warning. The
        ``CMTTEST/bias`` generation (0-d ``bias_scale``, no ``gaussian_weights``) is loaded with
        ``bias_scale`` reshaped to [1], window weights computed from ``config`` (uniform unless
        ``use_gaussian_window``) and a Q14 warning;
        ``checkpoint_generation`` records ``'head'`` or ``'bias_snapshot'``.
        """
        sd = strip_prefix(state_dict, prefix)
        ws = config.get("window_size", 15)
        stored = infer_parity(sd["y_offsets"], ws)
        old = sd["bias_scale"].dim() == 0 or "gaussian_weights" not in sd
        module = cls(**config, window_parity=stored)
        sd["bias_scale"] = sd["bias_scale"].detach().reshape(1).float()
        sd.setdefault("gaussian_weights", module.gaussian_weights.clone())
        module._check_stored_offsets(sd)
        module.load_state_dict(sd, strict=True)
        module.checkpoint_generation = _GENERATION_OLD if old else _GENERATION_HEAD
        if old:
            warn_quirk("Q14", f"checkpoint is the CMTTEST/bias generation (0-d bias_scale or no "
                       f"gaussian_weights); using its stored {stored} offsets "
                       f"({sd['y_offsets'].numel()} cells)", stacklevel=3,
                       generation=_GENERATION_OLD, parity=stored, cells=sd["y_offsets"].numel())
        if window_parity is not None and window_parity != stored:
            warn_quirk("Q14", f"window_parity={window_parity!r} requested but the checkpoint "
                       f"stores {stored} offsets; the stored offsets are used", stacklevel=3,
                       generation=module.checkpoint_generation, parity=stored)
        return module

    def _check_stored_offsets(self, sd: dict) -> None:
        """Raise if stored offset buffers do not match this module's shapes (wrong config)."""
        for name, mine in self._window_buffers().items():
            if name == "gaussian_weights":
                check_shape(name, sd[name], tuple(mine.shape), "[K]")
            elif not torch.equal(sd[name].long(), mine):
                raise AQRInputError(
                    f"{name}: stored offsets differ from those for window_size={self.window_size}, "
                    f"bev_feature_shape=({self.bev_h}, {self.bev_w}), pers_feature_shape=("
                    f"{self.num_views}, {self.pers_h}, {self.pers_w}); expected "
                    f"{mine.tolist()[:8]}...")
