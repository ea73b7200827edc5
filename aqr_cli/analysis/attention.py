"""Decoder cross-attention with and without the AQR bias, in query chunks, and its statistics.

What is computed (spec 5.7, 10.1 items 7-9, 11): for every query the head-averaged attention
distribution ``p = mean_h softmax((q_h k_h^T) / sqrt(d_head) + bias)`` over the F memory tokens
(BEV ``(h w)`` tokens first, then camera ``(v h w)`` tokens, spec 1.2), and per path

- ``entropy`` (nats) and ``entropy_norm`` = entropy / log(F);
- ``max_attention`` (saturation shares > 0.9 and > 0.7 are taken in the summaries);
- ``window_mass``: mass on the query's own bias window cells (BEV + camera);
- ``lidar_share`` (mass on the first H*W tokens) and ``camera_share`` (the rest);
- against the reference path (normally ``baseline``): ``mean_abs_delta`` = mean over keys of
  ``|p - p0|``, ``l1_delta`` = its sum, ``kl_from_reference`` = KL(p0 || p), and
  ``topk_overlap`` = |top-k(p) & top-k(p0)| / k.

The bias is the same for every head and is added AFTER the ``1/sqrt(d_head)`` scaling, as
upstream's ``PETRMultiheadAttention`` (the only class with the designed semantics) does. It is
given sparsely (per-query window entries, :class:`WindowBias`) and added to each chunk's logits
with one ``index_add_``; the dense ``[B, Q, F]`` bias is never built.

Efficiency: the per-chunk math is SDPA-like. One batched matmul writes the logits of a chunk of
queries for all heads into a reused buffer, the softmax runs in place, the head average is one
reduction, and every statistic is read off the head-averaged probabilities (a block-maximum
top-k also gives the maximum, one log pass serves entropy and KL, products go into a reused
buffer). Paths that share keys (baseline, additive, the scales of a sweep) share the logits
matmul of each chunk. Measured (benchmarks/bench_attention.py, 2-core Xeon): 1.1-1.35x the
time of ``scaled_dot_product_attention`` doing the same chunks with a dense mask.

Projections: :class:`CrossAttentionWeights` holds the packed in-projection of the first decoder
cross-attention (``transformer.decoder.layers.0.attentions.1.attn.in_proj_*``) when a
checkpoint has it, else an identity fallback (q = query input, k = memory + key position
embedding), with the head count stated (8, as the decoder). The value projection and
``out_proj`` do not change attention maps and are not used.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch

from aqr_cli.core.configs import CLASS_NAMES, SMALL_CLASSES
from aqr_cli.core.errors import AQRInputError

DECODER_CROSS_ATTN = "transformer.decoder.layers.0.attentions.1.attn."
DEFAULT_NUM_HEADS = 8
DEFAULT_TOPK = 10
SATURATION_LEVELS = (0.9, 0.7)
BALANCED_DIFF = 0.2
NEAREST_OBJECT_RADIUS = 3.0
WIDTH_MODES = ("zero_pad", "orthogonal", "skip")
# Queries per chunk: 24 was fastest at both reference resolutions on a 2-core Xeon (logits of
# 17 MB at 800x320 and 43 MB at 1600x640 stay cache-friendly); capped so one chunk's logits
# never exceed MAX_CHUNK_BYTES for large batches.
DEFAULT_CHUNK_QUERIES = 24
MAX_CHUNK_BYTES = 256 * 2 ** 20
# log(p) is taken of max(p, TINY): p can underflow to 0 under strong biases, and 0 * log(0)
# must count as 0 in the entropy. KL(p0 || p) is therefore finite (log p >= log(TINY) = -87.3).
TINY = float(torch.finfo(torch.float32).tiny)

METRICS = ("entropy", "entropy_norm", "max_attention", "window_mass", "lidar_share",
           "camera_share", "mean_abs_delta", "l1_delta", "kl_from_reference", "topk_overlap")
"""Per-query statistics, each ``[B, Q]`` float32, in :attr:`AttentionResult.per_query`."""


# ----------------------------------------------------------------------------- projections

@dataclass
class CrossAttentionWeights:
    """Packed in-projection of one cross-attention: ``in_proj_weight [3C, C]``, ``in_proj_bias [3C]``.

    Rows 0..C-1 project queries, C..2C-1 keys, 2C..3C-1 values (``nn.MultiheadAttention``
    layout). ``source`` is ``'checkpoint'`` or ``'fallback'``; ``key`` the state-dict prefix
    used; ``note`` one sentence for the output.
    """

    in_proj_weight: torch.Tensor
    in_proj_bias: torch.Tensor
    num_heads: int = DEFAULT_NUM_HEADS
    source: str = "fallback"
    key: str | None = None
    note: str = ""
    is_identity: bool = False

    def __post_init__(self):
        w, b = self.in_proj_weight, self.in_proj_bias
        if not isinstance(w, torch.Tensor) or w.dim() != 2 or w.shape[0] != 3 * w.shape[1]:
            got = list(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__
            raise AQRInputError(f"in_proj_weight: expected shape [3C, C], got {got}")
        c = w.shape[1]
        if not isinstance(b, torch.Tensor) or tuple(b.shape) != (3 * c,):
            got = list(b.shape) if isinstance(b, torch.Tensor) else type(b).__name__
            raise AQRInputError(f"in_proj_bias: expected shape [{3 * c}], got {got}")
        if not isinstance(self.num_heads, int) or self.num_heads < 1 or c % self.num_heads:
            raise AQRInputError(f"num_heads: expected a positive divisor of the embedding width "
                                f"{c}, got {self.num_heads!r}")
        self.in_proj_weight = w.detach().float()
        self.in_proj_bias = b.detach().float()

    @property
    def embed_dims(self) -> int:
        return int(self.in_proj_weight.shape[1])

    @property
    def head_dim(self) -> int:
        return self.embed_dims // self.num_heads

    @classmethod
    def identity(cls, embed_dims: int = 256, num_heads: int = DEFAULT_NUM_HEADS) -> "CrossAttentionWeights":
        """The documented fallback: q = query input, k = key input, v = value input, no bias."""
        eye = torch.eye(embed_dims)
        return cls(torch.cat([eye, eye, eye]), torch.zeros(3 * embed_dims), num_heads,
                   source="fallback", is_identity=True,
                   note=(f"no decoder cross-attention weights in the source: identity projections "
                         f"(q = query position embedding, k = memory + key position embedding), "
                         f"{num_heads} heads of width {embed_dims // num_heads}"))

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, torch.Tensor], num_heads: int = DEFAULT_NUM_HEADS,
                        prefix: str | None = None) -> "CrossAttentionWeights":
        """The first decoder cross-attention of a head state_dict (any key prefix).

        Looks for ``...transformer.decoder.layers.0.attentions.1.attn.in_proj_weight`` and
        ``...in_proj_bias`` (``prefix`` overrides the search). Raises :class:`AQRInputError`
        when they are absent or malformed. The head count is not stored in checkpoints: 8 for
        both reference configs.
        """
        if prefix is None:
            hits = sorted(k[: -len("in_proj_weight")] for k in state_dict
                          if k.endswith(DECODER_CROSS_ATTN + "in_proj_weight"))
            if not hits:
                raise AQRInputError(f"state_dict: no '*{DECODER_CROSS_ATTN}in_proj_weight' key "
                                    f"(first decoder cross-attention)")
            prefix = hits[0]
        try:
            w, b = state_dict[prefix + "in_proj_weight"], state_dict[prefix + "in_proj_bias"]
        except KeyError as exc:
            raise AQRInputError(f"state_dict: missing {exc.args[0]!r}") from None
        out = cls(w, b, num_heads, source="checkpoint", key=prefix)
        out.note = (f"first decoder cross-attention from the checkpoint ({prefix}in_proj_*), "
                    f"{num_heads} heads of width {out.head_dim}; decoder target taken as zero "
                    f"(q = W_q query_pos + b_q)")
        return out

    @classmethod
    def resolve(cls, state_dict: Mapping[str, torch.Tensor] | None, embed_dims: int = 256,
                num_heads: int = DEFAULT_NUM_HEADS) -> "CrossAttentionWeights":
        """Checkpoint weights when ``state_dict`` has them (and they fit ``embed_dims``), else identity."""
        if state_dict is not None:
            try:
                found = cls.from_state_dict(state_dict, num_heads)
            except AQRInputError:
                found = None
            if found is not None and found.embed_dims == embed_dims:
                return found
            if found is not None:
                out = cls.identity(embed_dims, num_heads)
                out.note += (f" (the checkpoint's cross-attention has width {found.embed_dims}, "
                             f"the embeddings {embed_dims})")
                return out
        return cls.identity(embed_dims, num_heads)

    def _project(self, x: torch.Tensor, part: int) -> torch.Tensor:
        if self.is_identity:
            return x.float()
        c = self.embed_dims
        w = self.in_proj_weight[part * c:(part + 1) * c]
        return torch.addmm(self.in_proj_bias[part * c:(part + 1) * c], x.reshape(-1, c).float(),
                           w.t()).view(*x.shape[:-1], c)

    def project_query(self, x: torch.Tensor) -> torch.Tensor:
        """``W_q x + b_q`` for ``x [..., C]``."""
        return self._project(x, 0)

    def project_key(self, x: torch.Tensor) -> torch.Tensor:
        """``W_k x + b_k`` for ``x [..., C]``."""
        return self._project(x, 1)

    def project_value(self, x: torch.Tensor) -> torch.Tensor:
        """``W_v x + b_v`` for ``x [..., C]`` (not needed for attention maps)."""
        return self._project(x, 2)

    def describe(self) -> dict:
        return dict(source=self.source, key=self.key, num_heads=self.num_heads,
                    head_dim=self.head_dim, embed_dims=self.embed_dims, note=self.note)


def align_width(memory: torch.Tensor, width: int, mode: str = "zero_pad",
                seed: int = 0) -> tuple[torch.Tensor | None, dict]:
    """Memory ``[B, F, c]`` brought to the embedding width ``C``: ``(tensor or None, info)``.

    Modes (used only when c != C; otherwise the memory is returned unchanged):

    - ``zero_pad``: channels 0..c-1 kept, the rest zero (c < C), or the first C kept (c > C).
      For the fixture dumps, which keep the first 16 of 256 channels, this is exactly the
      memory with the dropped channels set to zero.
    - ``orthogonal``: ``memory @ P`` with a fixed seeded matrix ``P [c, C]`` with orthonormal
      rows (c <= C, norms and inner products preserved) or orthonormal columns (c > C).
    - ``skip``: no tensor; ``info['status'] == 'skipped'``.

    ``info``: mode, from, to, status (``'unchanged'``, ``'projected'``, ``'skipped'``), note.
    """
    if mode not in WIDTH_MODES:
        raise AQRInputError(f"width_mode: expected one of {list(WIDTH_MODES)}, got {mode!r}")
    c = int(memory.shape[-1])
    info = dict(mode=mode, **{"from": c, "to": int(width)})
    if c == width:
        return memory, dict(info, status="unchanged", note="feature width equals embedding width")
    if mode == "skip":
        return None, dict(info, status="skipped",
                          note=f"feature width {c} != embedding width {width}; attention skipped")
    if mode == "zero_pad":
        if c < width:
            out = torch.nn.functional.pad(memory.float(), (0, width - c))
            note = f"features zero-padded from {c} to {width} channels"
        else:
            out = memory[..., :width].float()
            note = f"first {width} of {c} feature channels kept"
        return out, dict(info, status="projected", note=note)
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(max(c, width), min(c, width), generator=gen, dtype=torch.float64)
    qmat, r = torch.linalg.qr(a)
    qmat = qmat * torch.sign(torch.diagonal(r)).unsqueeze(0)
    proj = (qmat.t() if c < width else qmat).float()                     # [c, C]
    note = f"features projected {c} -> {width} channels by a seeded orthogonal matrix (seed {seed})"
    return memory.float() @ proj, dict(info, status="projected", note=note, seed=seed)


# ----------------------------------------------------------------------------- bias windows

@dataclass
class WindowBias:
    """Per-query window entries of an additive bias: no dense ``[B, Q, F]`` tensor.

    ``indices [B, Q, K]`` int64 dense columns (BEV first, camera from ``num_bev``), ``values``
    ``[B, Q, K]`` float32 logits, ``valid [B, Q, K]`` bool. Invalid slots are ignored; valid
    columns of one row must be distinct. ``is_global``: K = 2 segment values (slot 0 on all BEV
    columns, slot 1 on all camera columns), upstream's ``use_local_bias=False``.
    """

    indices: torch.Tensor
    values: torch.Tensor
    valid: torch.Tensor
    is_global: bool = False
    num_bev: int | None = None

    def __post_init__(self):
        for name in ("indices", "values", "valid"):
            t = getattr(self, name)
            if not isinstance(t, torch.Tensor) or t.dim() != 3:
                got = list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise AQRInputError(f"bias.{name}: expected shape [B, Q, K], got {got}")
        if not (self.indices.shape == self.values.shape == self.valid.shape):
            raise AQRInputError(f"bias: indices {list(self.indices.shape)}, values "
                                f"{list(self.values.shape)} and valid {list(self.valid.shape)} "
                                f"must have the same shape [B, Q, K]")
        self.indices = self.indices.detach().long()
        self.valid = self.valid.detach().bool()
        # detached: a learnable bias_scale would otherwise carry autograd into every chunk
        self.values = torch.where(self.valid, self.values.detach().float(), 0.0)
        if self.is_global and self.values.shape[-1] != 2:
            raise AQRInputError("bias: a global bias needs K = 2 (BEV, camera segment values)")

    @classmethod
    def from_sparse(cls, sparse, values: torch.Tensor | None = None,
                    round_to_dtype: bool = True) -> "WindowBias":
        """From a ``SparseBias`` (``aqr_cli.core.bias``) or an ``(indices, values, valid)`` triple.

        ``values`` replaces the stored values (e.g. the unscaled ones). With ``round_to_dtype``
        the values are rounded to the SparseBias' dense dtype (float16 for ``fp16=True``), as the
        decoder sees upstream's fp16 bias cast back to float32 logits (spec 5.7, Q17).
        """
        if isinstance(sparse, WindowBias):
            return sparse if values is None else cls(sparse.indices, values, sparse.valid,
                                                     sparse.is_global, sparse.num_bev)
        if isinstance(sparse, tuple):
            if len(sparse) != 3:
                raise AQRInputError("bias: expected a SparseBias or an (indices, values, valid) triple")
            idx, vals, valid = sparse
            return cls(idx, vals if values is None else values, valid)
        vals = sparse.values if values is None else values
        if round_to_dtype and getattr(sparse, "dtype", torch.float32) != torch.float32:
            vals = vals.to(sparse.dtype).float()
        return cls(sparse.indices, vals, sparse.mask, bool(sparse.is_global),
                   int(sparse.num_bev_features))

    def rows(self, start: int, stop: int) -> "WindowBias":
        return WindowBias(self.indices[:, start:stop], self.values[:, start:stop],
                          self.valid[:, start:stop], self.is_global, self.num_bev)

    def with_values(self, values: torch.Tensor) -> "WindowBias":
        return WindowBias(self.indices, values, self.valid, self.is_global, self.num_bev)

    def to_dense(self, num_keys: int, num_bev: int | None = None) -> torch.Tensor:
        """Dense ``[B, Q, F]`` float32 (tests and small cases only)."""
        b, q, _ = self.values.shape
        out = torch.zeros(b, q, num_keys)
        if self.is_global:
            hw = self.num_bev if num_bev is None else num_bev
            out[..., :hw] = self.values[..., :1]
            out[..., hw:] = self.values[..., 1:]
            return out
        out.scatter_add_(2, self.indices.clamp(0, num_keys - 1), self.values)
        return out


def _as_window_bias(bias) -> WindowBias | None:
    return None if bias is None else WindowBias.from_sparse(bias)


# ----------------------------------------------------------------------------- engine

@dataclass
class AttentionPath:
    """One way of attending: its key input ``[B, F, C]`` (None = the engine's keys) and bias."""

    name: str
    keys: torch.Tensor | None = None
    bias: WindowBias | None = None
    values: torch.Tensor | None = None   # [B, F, C] value input (None = the engine's values)


@dataclass
class AttentionResult:
    """Per-query statistics of every path, selected attention rows, and how they were computed.

    ``per_query[path][metric]`` is ``[B, Q]`` float32 (metrics in :data:`METRICS`);
    ``rows[path]`` is ``[B, len(row_queries), F]`` head-averaged attention of the selected
    queries. ``status`` is ``'ok'`` or ``'skipped'`` (then ``reason`` says why and the dicts are
    empty).
    """

    status: str = "ok"
    reason: str | None = None
    per_query: dict = field(default_factory=dict)
    rows: dict = field(default_factory=dict)
    row_queries: list = field(default_factory=list)
    reference: str = "baseline"
    num_keys: int = 0
    num_bev: int = 0
    num_queries: int = 0
    batch_size: int = 0
    top_k: int = DEFAULT_TOPK
    chunk_size: int = 0
    weights: dict = field(default_factory=dict)
    projection: dict | None = None
    readout: dict = field(default_factory=dict)
    seconds: float = 0.0

    @classmethod
    def skipped(cls, reason: str, projection: dict | None = None, weights: dict | None = None):
        return cls(status="skipped", reason=reason, projection=projection, weights=weights or {})

    @property
    def paths(self) -> list[str]:
        return list(self.per_query)

    def summary(self, groups: Mapping[str, Mapping[str, torch.Tensor]] | None = None) -> dict:
        """``{path: {'overall': ..., <family>: {<group>: ...}}}`` of :func:`summarize_metrics`."""
        out = {}
        for path, metrics in self.per_query.items():
            entry = {"overall": summarize_metrics(metrics)}
            for family, members in (groups or {}).items():
                entry[family] = {g: summarize_metrics(metrics, mask) for g, mask in members.items()}
            out[path] = entry
        return out

    def settings(self) -> dict:
        return dict(status=self.status, reason=self.reason, reference=self.reference,
                    num_keys=self.num_keys, num_bev_keys=self.num_bev,
                    num_camera_keys=self.num_keys - self.num_bev, num_queries=self.num_queries,
                    batch_size=self.batch_size, top_k=self.top_k, chunk_size=self.chunk_size,
                    weights=self.weights, projection=self.projection,
                    logits="softmax(q k^T / sqrt(d_head) + bias), bias identical for every head")

    def to_dict(self, groups=None) -> dict:
        """JSON-ready: ``settings`` and ``paths`` (the summary); no per-query arrays.

        Wall time (``seconds``) is left out so the same input gives the same document.
        """
        return dict(settings=self.settings(), paths=self.summary(groups) if self.status == "ok" else {})


def _auto_chunk(batch: int, heads: int, num_keys: int) -> int:
    """Default queries per chunk: DEFAULT_CHUNK_QUERIES, fewer if the logits would pass the cap."""
    return max(1, min(DEFAULT_CHUNK_QUERIES, MAX_CHUNK_BYTES // max(1, batch * heads * num_keys * 4)))


def _heads_T(keys: torch.Tensor, weights: CrossAttentionWeights) -> torch.Tensor:
    """Projected keys as ``[B, h, d, F]`` contiguous (the right operand of the logits matmul).

    Built as the plain ``[C, F]`` transpose of each sample (channel c = head * d + i), several
    times faster than permuting a ``[B, F, h, d]`` view.
    """
    b, f, c = keys.shape
    k = weights.project_key(keys)
    out = torch.empty(b, c, f)
    for i in range(b):  # a 2-D transpose copy is ~3x faster than the batched 3-D one
        out[i].copy_(k[i].t())
    return out.view(b, weights.num_heads, weights.head_dim, f)


_TOPK_BLOCK = 64


def _topk(p: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.topk(p, k)`` over the last dim (values descending, indices), via block maxima.

    The k largest entries lie in the k blocks with the largest block maxima (each such entry's
    block has a maximum at least as large, and at most k blocks can hold one), so a top-k over
    ``F / 64`` block maxima, then over those blocks' entries (plus the ragged tail), gives the
    same set as a full top-k at a fraction of the cost. Small rows use ``torch.topk``.
    """
    f = p.shape[-1]
    nb = f // _TOPK_BLOCK
    if nb < 4 * k:
        return p.topk(k, dim=-1)
    lead = p.shape[:-1]
    main = p[..., : nb * _TOPK_BLOCK].unflatten(-1, (nb, _TOPK_BLOCK))
    blocks = main.amax(-1).topk(k, dim=-1).indices                              # [..., k]
    cand = (blocks.unsqueeze(-1) * _TOPK_BLOCK + torch.arange(_TOPK_BLOCK)).reshape(*lead, -1)
    if f > nb * _TOPK_BLOCK:
        tail = torch.arange(nb * _TOPK_BLOCK, f).expand(*lead, -1)
        cand = torch.cat([cand, tail], -1)
    vals, pos = p.gather(-1, cand).topk(k, dim=-1)
    return vals, cand.gather(-1, pos)


def _check_inputs(query, keys, weights, num_bev, paths):
    for name, t in (("query", query), ("keys", keys)):
        if not isinstance(t, torch.Tensor) or t.dim() != 3:
            got = list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise AQRInputError(f"{name}: expected shape [B, N, C], got {got}")
        # One summation pass finds NaN/Inf (they propagate); the exact count only on failure.
        if t.is_floating_point() and not math.isfinite(float(t.sum())):
            bad = int((~torch.isfinite(t)).sum())
            if bad:
                raise AQRInputError(f"{name}: contains {bad} NaN or Inf values")
    b, q, c = query.shape
    _, f, _ = keys.shape
    if keys.shape[0] != b or keys.shape[2] != c:
        raise AQRInputError(f"keys: expected shape [B, F, C] = [{b}, F, {c}] to match query "
                            f"{list(query.shape)}, got {list(keys.shape)}")
    if c != weights.embed_dims:
        raise AQRInputError(f"query: width {c} does not match the attention weights' embedding "
                            f"width {weights.embed_dims}")
    if not 0 <= num_bev <= f:
        raise AQRInputError(f"num_bev: expected 0 <= num_bev <= F = {f}, got {num_bev}")
    names = [p.name for p in paths]
    if len(set(names)) != len(names):
        raise AQRInputError(f"paths: names must be unique, got {names}")
    for p in paths:
        if p.keys is not None and tuple(p.keys.shape) != tuple(keys.shape):
            raise AQRInputError(f"paths[{p.name!r}].keys: expected shape {list(keys.shape)}, "
                                f"got {list(p.keys.shape)}")
        if p.bias is not None and tuple(p.bias.values.shape[:2]) != (b, q):
            raise AQRInputError(f"paths[{p.name!r}].bias: expected [B, Q, K] with B, Q = {b}, {q}, "
                                f"got {list(p.bias.values.shape)}")
        if p.bias is not None and not p.bias.is_global and p.bias.valid.any():
            cols = p.bias.indices[p.bias.valid]
            if int(cols.min()) < 0 or int(cols.max()) >= f:
                raise AQRInputError(f"paths[{p.name!r}].bias: window columns outside [0, {f})")


class _Chunk:
    """Reusable flat buffers for one chunk size (allocating per chunk costs page faults)."""

    def __init__(self, b: int, h: int, n: int, f: int, need_work: bool):
        self.raw = torch.empty(b * h * n * f)
        self.work = torch.empty(b * h * n * f) if need_work else None
        self.p = torch.empty(b * n * f)
        self.logp = torch.empty(b * n * f)
        self.p0 = torch.empty(b * n * f)
        self.logp0 = torch.empty(b * n * f)
        self.tmp = torch.empty(b * n * f)
        self.shape = (b, h, n, f)

    def view(self, buf: torch.Tensor, n: int, heads: bool) -> torch.Tensor:
        b, h, _, f = self.shape
        return buf[: b * (h if heads else 1) * n * f].view(b, h, n, f) if heads else \
            buf[: b * n * f].view(b, n, f)


def _add_bias(logits: torch.Tensor, bias: WindowBias, num_bev: int) -> None:
    """Add the window bias ``[B, n, K]`` to every head of ``logits [B, h, n, F]`` in place."""
    b, h, n, f = logits.shape
    if bias.is_global:
        logits[..., :num_bev] += bias.values[:, None, :, 0:1]
        logits[..., num_bev:] += bias.values[:, None, :, 1:2]
        return
    k = bias.indices.shape[-1]
    base = (torch.arange(b * h).view(b, h, 1, 1) * n + torch.arange(n).view(1, 1, n, 1)) * f
    flat = (base + bias.indices.clamp(0, f - 1).unsqueeze(1)).reshape(-1)
    logits.view(-1).index_add_(0, flat, bias.values.unsqueeze(1).expand(b, h, n, k).reshape(-1))


def _window_mass(p: torch.Tensor, window: WindowBias | None) -> torch.Tensor:
    """Mass of ``p [B, n, F]`` on each query's window cells: ``[B, n]`` (NaN without a window)."""
    if window is None:
        return torch.full(p.shape[:2], float("nan"))
    if window.is_global:
        return p.sum(-1)
    got = p.gather(2, window.indices.clamp(0, p.shape[-1] - 1))
    return torch.where(window.valid, got, 0.0).sum(-1)


def compute_attention(query: torch.Tensor, keys: torch.Tensor, weights: CrossAttentionWeights, *,
                      num_bev: int, paths: Sequence[AttentionPath] | None = None,
                      window=None, reference: str | None = None, top_k: int = DEFAULT_TOPK,
                      chunk_size: int | None = None, keep_rows: Sequence[int] = (),
                      projection: dict | None = None, values: torch.Tensor | None = None) -> AttentionResult:
    """Run every path over query chunks; return per-query statistics and selected rows.

    ``query [B, Q, C]``: the cross-attention query input (decoder target + query position
    embedding). ``keys [B, F, C]``: key input (memory + key position embedding) shared by paths
    whose ``keys`` is None. ``num_bev``: H*W, the number of leading BEV tokens. ``paths``:
    default one path ``baseline``. ``window``: bias whose window cells define ``window_mass``
    (default: the first path bias found). ``reference``: the path the deltas, KL and top-k
    overlap compare with (default ``baseline`` if present, else the first path).
    ``chunk_size``: queries per chunk (default 24, fewer when one chunk's logits would pass
    256 MiB). ``keep_rows``: query indices whose full head-averaged rows are returned.
    ``values [B, F, C]``: value input shared by paths whose ``values`` is None; when given, the
    per-query attention output (what the decoder reads: per head ``p_h W_v v``, heads
    concatenated, before ``out_proj``) is compared with the reference path's in
    :attr:`AttentionResult.readout`.
    """
    t0 = time.perf_counter()
    paths = list(paths or [AttentionPath("baseline")])
    paths = [AttentionPath(p.name, p.keys, _as_window_bias(p.bias)) for p in paths]
    _check_inputs(query, keys, weights, num_bev, paths)
    window = _as_window_bias(window) if window is not None else \
        next((p.bias for p in paths if p.bias is not None), None)
    if window is not None and tuple(window.values.shape[:2]) != tuple(query.shape[:2]):
        raise AQRInputError(f"window: expected [B, Q, K] with B, Q = {list(query.shape[:2])}, "
                            f"got {list(window.values.shape)}")
    names = [p.name for p in paths]
    reference = reference or ("baseline" if "baseline" in names else names[0])
    if reference not in names:
        raise AQRInputError(f"reference: {reference!r} is not one of the paths {names}")
    b, q, _ = query.shape
    f = keys.shape[1]
    if not isinstance(top_k, int) or not 1 <= top_k <= f:
        raise AQRInputError(f"top_k: expected an integer in [1, {f}], got {top_k!r}")
    keep_rows = [int(i) for i in keep_rows]
    if any(not 0 <= i < q for i in keep_rows):
        raise AQRInputError(f"keep_rows: query indices must lie in [0, {q}), got {keep_rows}")
    h, d = weights.num_heads, weights.head_dim
    n_chunk = int(chunk_size) if chunk_size else _auto_chunk(b, h, f)
    if n_chunk < 1:
        raise AQRInputError(f"chunk_size: expected a positive integer, got {chunk_size!r}")
    n_chunk = min(n_chunk, q) if q else 1

    with torch.no_grad():
        # Key sets: paths without own keys share the engine's keys (and the logits matmul).
        groups: dict[int, list[AttentionPath]] = {}
        key_sets: list[torch.Tensor] = []
        for p in sorted(paths, key=lambda p: p.name != reference):
            src = keys if p.keys is None else p.keys
            idx = next((i for i, s in enumerate(key_sets) if s is src), None)
            if idx is None:
                key_sets.append(src)
                idx = len(key_sets) - 1
            groups.setdefault(idx, []).append(p)
        k_t = [_heads_T(s, weights) for s in key_sets]
        v_heads = _value_heads(paths, values, weights) if values is not None else {}
        readouts = {p.name: torch.empty(b, q, h * d) for p in paths} if v_heads else {}
        qh = (weights.project_query(query) * (1.0 / math.sqrt(d))).view(b, q, h, d).transpose(1, 2)
        buf = _Chunk(b, h, n_chunk, f, any(len(g) > 1 for g in groups.values()))
        stats = {p.name: {m: torch.empty(b, q) for m in METRICS} for p in paths}
        rows = {p.name: torch.empty(b, len(keep_rows), f) for p in paths}
        keep = torch.tensor(keep_rows, dtype=torch.long)
        log_f = math.log(f) if f > 1 else float("nan")

        for c0 in range(0, q, n_chunk):
            c1 = min(q, c0 + n_chunk)
            n = c1 - c0
            qc = qh[:, :, c0:c1]
            win = window.rows(c0, c1) if window is not None else None
            ref_state = None
            for gi, members in groups.items():
                raw = buf.view(buf.raw, n, True)
                torch.matmul(qc, k_t[gi], out=raw)
                for j, path in enumerate(members):
                    if j < len(members) - 1:
                        logits = buf.view(buf.work, n, True)
                        logits.copy_(raw)
                    else:
                        logits = raw
                    is_ref = path.name == reference
                    out = {m: v[:, c0:c1] for m, v in stats[path.name].items()}
                    ref_state = _chunk_stats(
                        logits, path.bias.rows(c0, c1) if path.bias is not None else None, win,
                        num_bev, top_k, log_f, buf, n, out, ref_state, is_ref)
                    if v_heads:  # logits now hold the per-head probabilities of this chunk
                        r = torch.matmul(logits, v_heads[path.name])          # [B, h, n, d]
                        readouts[path.name][:, c0:c1] = r.transpose(1, 2).reshape(b, n, h * d)
                    sel = (keep >= c0) & (keep < c1)
                    if bool(sel.any()):
                        p_now = buf.view(buf.p0 if is_ref else buf.p, n, False)
                        rows[path.name][:, sel] = p_now[:, keep[sel] - c0]

    return AttentionResult(
        per_query={p.name: stats[p.name] for p in paths}, rows=rows, row_queries=keep_rows,
        reference=reference, num_keys=f, num_bev=num_bev, num_queries=q, batch_size=b,
        top_k=top_k, chunk_size=n_chunk, weights=weights.describe(), projection=projection,
        readout=readout_change(readouts, reference) if readouts else {},
        seconds=time.perf_counter() - t0)


def _value_heads(paths, values: torch.Tensor, weights: CrossAttentionWeights) -> dict:
    """Projected values ``[B, h, F, d]`` per path (paths sharing a value tensor share it)."""
    b, f, _ = values.shape
    cache: list[tuple[torch.Tensor, torch.Tensor]] = []
    out = {}
    for p in paths:
        src = values if p.values is None else p.values
        hit = next((v for s, v in cache if s is src), None)
        if hit is None:
            hit = weights.project_value(src.float()).view(b, f, weights.num_heads,
                                                          weights.head_dim).transpose(1, 2).contiguous()
            cache.append((src, hit))
        out[p.name] = hit
    return out


def readout_change(readouts: Mapping[str, torch.Tensor], reference: str) -> dict:
    """Per path: how the attention output ``[B, Q, C]`` differs from the reference path's.

    ``relative_change``: ``|r - r0| / |r0|`` per query; ``cosine``: cosine similarity per
    query; each as mean and median over queries; ``identical``: bit-equal outputs.
    """
    r0 = readouts[reference].double()
    n0 = r0.norm(dim=-1)
    out = {}
    for name, r in readouts.items():
        r = r.double()
        rel = (r - r0).norm(dim=-1) / n0.clamp_min(1e-30)
        cos = (r * r0).sum(-1) / (r.norm(dim=-1) * n0).clamp_min(1e-30)
        out[name] = {
            "relative_change": {"mean": float(rel.mean()), "median": float(rel.median())},
            "cosine": {"mean": float(cos.mean()), "median": float(cos.median())},
            "identical": bool(torch.equal(readouts[name], readouts[reference])),
        }
    return out


def _chunk_stats(logits, bias, window, num_bev, top_k, log_f, buf, n, out, ref_state, is_ref):
    """Softmax one chunk in place, head-average it and write its statistics into ``out``.

    Returns the reference state ``(p0, logp0, neg_entropy0, topk0)`` (from this path when it is
    the reference, else the one passed in).
    """
    h = logits.shape[1]
    if bias is not None:
        _add_bias(logits, bias, num_bev)
    torch.ops.aten._softmax.out(logits, -1, False, out=logits)
    p = buf.view(buf.p0 if is_ref else buf.p, n, False)
    logp = buf.view(buf.logp0 if is_ref else buf.logp, n, False)
    torch.sum(logits, 1, out=p)
    p.mul_(1.0 / h)
    top_vals, top_idx = _topk(p, top_k)
    torch.clamp_min(p, TINY, out=logp)
    logp.log_()
    tmp = buf.view(buf.tmp, n, False)
    neg_ent = torch.mul(p, logp, out=tmp).sum(-1)
    out["entropy"].copy_(-neg_ent)
    out["entropy_norm"].copy_(-neg_ent / log_f)
    out["max_attention"].copy_(top_vals[..., 0])
    lidar = p[..., :num_bev].sum(-1)
    out["lidar_share"].copy_(lidar)
    out["camera_share"].copy_(p[..., num_bev:].sum(-1))
    out["window_mass"].copy_(_window_mass(p, window))
    if is_ref:
        ref_state = (p, logp, neg_ent, top_idx)
    p0, _, neg_ent0, top0 = ref_state
    l1 = torch.sub(p, p0, out=tmp).abs_().sum(-1)
    out["l1_delta"].copy_(l1)
    out["mean_abs_delta"].copy_(l1 / p.shape[-1])
    kl = neg_ent0 - torch.mul(p0, logp, out=tmp).sum(-1)
    out["kl_from_reference"].copy_(kl.clamp_min(0.0))
    overlap = (top_idx.unsqueeze(-1) == top0.unsqueeze(-2)).any(-1).sum(-1)
    out["topk_overlap"].copy_(overlap.float() / top_k)
    return ref_state


# ----------------------------------------------------------------------------- the three paths

def compare_attention(query_pos: torch.Tensor, memory: torch.Tensor, key_pos: torch.Tensor, *,
                      num_bev: int, bias=None, modulated_memory: torch.Tensor | None = None,
                      weights: CrossAttentionWeights | None = None,
                      query_content: torch.Tensor | None = None, width_mode: str = "zero_pad",
                      width_seed: int = 0, top_k: int = DEFAULT_TOPK,
                      chunk_size: int | None = None, keep_rows: Sequence[int] = (),
                      with_readout: bool = True) -> AttentionResult:
    """Baseline, multiplicative and additive attention of one decoder cross-attention.

    ``query_pos [B, Q, C]`` query position embedding; ``memory [B, F, c]`` memory tokens
    (batch-first; BEV then camera); ``key_pos [B, F, C]`` key position embedding;
    ``modulated_memory [B, F, c]`` the FeatureModulator output in the same layout (path
    ``multiplicative``: keys from it, no bias); ``bias`` a SparseBias / WindowBias / triple
    (path ``additive``: baseline keys plus the bias). ``query_content`` defaults to zero, the
    decoder target upstream starts from, so the query input is ``query_pos``.

    A feature width c != C goes through :func:`align_width` (``width_mode``); with ``'skip'``
    the result has ``status == 'skipped'`` and no statistics. ``weights`` defaults to the
    identity fallback with 8 heads. ``with_readout``: also compare each path's attention output
    (values = memory, the modulated memory for ``multiplicative``) with the baseline's.
    """
    c_emb = int(query_pos.shape[-1])
    weights = weights or CrossAttentionWeights.identity(c_emb)
    for name, t in (("memory", memory), ("key_pos", key_pos), ("modulated_memory", modulated_memory)):
        if t is not None and (not isinstance(t, torch.Tensor) or t.dim() != 3):
            got = list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise AQRInputError(f"{name}: expected shape [B, F, C] (batch-first), got {got}")
    if modulated_memory is not None and modulated_memory.shape != memory.shape:
        raise AQRInputError(f"modulated_memory: expected shape {list(memory.shape)} like memory, "
                            f"got {list(modulated_memory.shape)}")
    if key_pos.shape[:2] != memory.shape[:2] or key_pos.shape[-1] != c_emb:
        raise AQRInputError(f"key_pos: expected shape [{memory.shape[0]}, {memory.shape[1]}, "
                            f"{c_emb}], got {list(key_pos.shape)}")
    mem, info = align_width(memory, c_emb, width_mode, width_seed)
    if mem is None:
        return AttentionResult.skipped(info["note"], projection=info, weights=weights.describe())
    keys = mem + key_pos.float()
    paths = [AttentionPath("baseline")]
    if modulated_memory is not None:
        mod, _ = align_width(modulated_memory, c_emb, width_mode, width_seed)
        paths.append(AttentionPath("multiplicative", keys=mod + key_pos.float(), values=mod.float()))
    if bias is not None:
        paths.append(AttentionPath("additive", bias=_as_window_bias(bias)))
    query = query_pos.float() if query_content is None else query_pos.float() + query_content.float()
    return compute_attention(query, keys, weights, num_bev=num_bev, paths=paths, window=bias,
                             reference="baseline", top_k=top_k, chunk_size=chunk_size,
                             keep_rows=keep_rows, projection=info,
                             values=mem.float() if with_readout else None)


# ----------------------------------------------------------------------------- groups, summaries

def preference_groups(lidar_weights: torch.Tensor, camera_weights: torch.Tensor) -> dict:
    """Query masks ``[B, Q]``: ``prefer_lidar`` (lw > cw), ``prefer_camera`` (cw > lw) and
    ``balanced`` (|lw - cw| < 0.2; overlaps the other two, as upstream's debug print)."""
    lw, cw = lidar_weights.detach().float(), camera_weights.detach().float()
    return {"prefer_lidar": lw > cw, "prefer_camera": cw > lw,
            "balanced": (lw - cw).abs() < BALANCED_DIFF}


def distance_to_boxes(xy: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Distance (m) from points ``[Q, 2]`` to rotated box footprints ``[N, >=7]``: ``[Q, N]``, 0 inside."""
    boxes = boxes.double()
    d = xy.double()[:, None, :] - boxes[None, :, :2]
    cos, sin = torch.cos(boxes[:, 6]), torch.sin(boxes[:, 6])
    lx = d[..., 0] * cos + d[..., 1] * sin
    ly = -d[..., 0] * sin + d[..., 1] * cos
    ex = (lx.abs() - boxes[:, 3] / 2).clamp_min(0)
    ey = (ly.abs() - boxes[:, 4] / 2).clamp_min(0)
    return torch.sqrt(ex ** 2 + ey ** 2)


def is_small_label(labels) -> np.ndarray:
    """True for labels (indices into CLASS_NAMES or names) of small classes (spec 10.1 item 14)."""
    out = []
    for lab in np.asarray(labels).reshape(-1).tolist():
        name = lab if isinstance(lab, str) else (CLASS_NAMES[lab] if 0 <= int(lab) < len(CLASS_NAMES) else "")
        out.append(name in SMALL_CLASSES)
    return np.asarray(out, dtype=bool)


def size_groups(query_xy: torch.Tensor, boxes: Sequence, labels: Sequence,
                radius: float = NEAREST_OBJECT_RADIUS) -> dict:
    """Query masks ``[B, Q]`` by the size class of the nearest object footprint within ``radius`` m.

    ``query_xy [B, Q, 2]`` metres; ``boxes[b] [N, 9]``, ``labels[b] [N]`` per sample. Groups:
    ``small`` (pedestrian, traffic_cone, bicycle, motorcycle), ``large`` (the other classes),
    ``none`` (no footprint within ``radius``).
    """
    b, q, _ = query_xy.shape
    small = torch.zeros(b, q, dtype=torch.bool)
    large = torch.zeros(b, q, dtype=torch.bool)
    for i in range(b):  # per sample: its own boxes (few samples)
        bx = torch.as_tensor(np.asarray(boxes[i], dtype=np.float64)).reshape(-1, 9) if len(boxes[i]) else None
        if bx is None or bx.shape[0] == 0:
            continue
        dist = distance_to_boxes(query_xy[i], bx)
        best = dist.argmin(1)
        near = dist.gather(1, best[:, None]).squeeze(1) <= radius
        is_small = torch.from_numpy(is_small_label(labels[i]))[best]
        small[i] = near & is_small
        large[i] = near & ~is_small
    return {"small": small, "large": large, "none": ~(small | large)}


def query_groups(lidar_weights: torch.Tensor | None = None, camera_weights: torch.Tensor | None = None,
                 query_xy: torch.Tensor | None = None, boxes=None, labels=None,
                 radius: float = NEAREST_OBJECT_RADIUS) -> dict:
    """``{'by_preference': ..., 'by_size': ...}`` for :meth:`AttentionResult.summary` (each optional)."""
    out = {}
    if lidar_weights is not None and camera_weights is not None:
        out["by_preference"] = preference_groups(lidar_weights, camera_weights)
    if query_xy is not None and boxes is not None and labels is not None:
        out["by_size"] = size_groups(query_xy, boxes, labels, radius)
    return out


def _finite_or_none(x: float):
    return float(x) if math.isfinite(x) else None


def summarize_metrics(metrics: Mapping[str, torch.Tensor], mask: torch.Tensor | None = None) -> dict:
    """mean and median of each metric over the (masked) queries, saturation shares, count.

    JSON-ready: empty groups and undefined values (no window) give None.
    """
    sel = None if mask is None else mask.reshape(-1).bool()
    count = int(next(iter(metrics.values())).numel() if sel is None else sel.sum())
    out = {"count": count}
    for name, values in metrics.items():
        v = values.reshape(-1).double()
        v = v if sel is None else v[sel]
        v = v[torch.isfinite(v)]
        out[name] = ({"mean": None, "median": None} if v.numel() == 0 else
                     {"mean": _finite_or_none(float(v.mean())),
                      "median": _finite_or_none(float(torch.quantile(v, 0.5)))})
    mx = metrics["max_attention"].reshape(-1)
    mx = mx if sel is None else mx[sel]
    for level in SATURATION_LEVELS:
        out[f"share_max_gt_{level}"] = float((mx > level).float().mean()) if mx.numel() else None
    return out
