"""The chunk engine: :func:`compute_attention` runs every :class:`AttentionPath` over query
chunks and writes per-query statistics (spec 5.7, 10.1 items 7-9, 11).

The per-chunk math is SDPA-like. One batched matmul writes the logits of a chunk of queries for
all heads into a reused buffer, the bias is added after the ``1/sqrt(d_head)`` scaling (as
upstream's ``PETRMultiheadAttention``), the softmax runs in place, the head average is one
reduction, and every statistic is read off the head-averaged probabilities (a block-maximum
top-k also gives the maximum, one log pass serves entropy and KL, products go into a reused
buffer). Paths that share keys (baseline, additive, the scales of a sweep) share the logits
matmul of each chunk, and a window-biased path with the unbiased reference's keys is derived
from the reference's per-head probabilities without a softmax of its own (:mod:`.derived`).
Measured (benchmarks/bench_attention.py, 2-core Xeon, CPU time): one path with all its
statistics 1.1-1.4x the time of ``scaled_dot_product_attention`` doing the same chunks with a
dense mask; the three paths of a comparison 1.1x (800x320) and 0.76x (1600x640) of three SDPA
calls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from aqr_cli.analysis.attention.derived import (
    derivable,
    derived_probabilities,
    derived_readout,
    window_terms,
)
from aqr_cli.analysis.attention.projections import CrossAttentionWeights
from aqr_cli.analysis.attention.result import DEFAULT_TOPK, METRICS, AttentionResult
from aqr_cli.analysis.attention.window_bias import (
    WindowBias,
    add_bias,
    as_window_bias,
    window_mass,
)
from aqr_cli.core.errors import AQRInputError

# Queries per chunk: 24 was fastest at both reference resolutions on a 2-core Xeon; fewer when
# one chunk's logits [B, heads, n, F] would pass MAX_CHUNK_BYTES. The cap keeps 24 at 800x320
# (17 MB) and gives 16 at 1600x640 (29 MB instead of 43 MB; with the copy for paths sharing keys
# and the per-chunk rows, 38 MB less at peak for about 5% more attention time).
DEFAULT_CHUNK_QUERIES = 24
MAX_CHUNK_BYTES = 28 * 2 ** 20
# log(p) is taken of max(p, TINY): p can underflow to 0 under strong biases, and 0 * log(0)
# must count as 0 in the entropy. KL(p0 || p) is therefore finite (log p >= log(TINY) = -87.3).
TINY = float(torch.finfo(torch.float32).tiny)
_TOPK_BLOCK = 64
_KEY_BLOCK = 4096


@dataclass
class AttentionPath:
    """One way of attending: its key input ``[B, F, C]`` (None = the engine's keys) and bias."""

    name: str
    keys: torch.Tensor | ProjectedKeys | None = None
    bias: WindowBias | None = None
    values: torch.Tensor | None = None   # [B, F, C] value input (None = the engine's values)
    readout: bool = True                 # compute its attention output when there are values


@dataclass(frozen=True)
class ProjectedKeys:
    """Keys projected by one :class:`CrossAttentionWeights`, as ``heads [B, h, d, F]``
    contiguous (the right operand of the logits matmul), made by :func:`project_keys`.

    Accepted wherever :func:`compute_attention` takes a key input, so that runs over the same
    keys (a comparison and its bias-scale sweep) project them once and hold them once.
    """

    heads: torch.Tensor
    weights: CrossAttentionWeights

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(B, F, C)``: the shape of the key input it was projected from."""
        b, h, d, f = self.heads.shape
        return (b, f, h * d)


def project_keys(keys: torch.Tensor, weights: CrossAttentionWeights,
                 add: torch.Tensor | None = None) -> ProjectedKeys:
    """``W_k (keys + add) + b_k`` of ``keys [B, F, C]`` (``add``: e.g. the key position
    embedding, same shape), in the engine's ``[B, h, d, F]`` layout.

    With identity weights the sum is written straight into that layout (no ``[B, F, C]``
    intermediate: 58 MB at 1600x640); the values are the same floats either way.
    """
    for name, t in (("keys", keys), ("add", add)):
        if t is not None and (not isinstance(t, torch.Tensor) or t.dim() != 3):
            got = list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise AQRInputError(f"{name}: expected shape [B, N, C], got {got}")
    if add is not None and add.shape != keys.shape:
        raise AQRInputError(f"add: expected shape {list(keys.shape)} like keys, got {list(add.shape)}")
    b, f, c = keys.shape
    if c != weights.embed_dims:
        raise AQRInputError(f"keys: width {c} does not match the attention weights' embedding "
                            f"width {weights.embed_dims}")
    if not weights.is_identity:
        total = keys if add is None else keys.float() + add.float()
        _check_tensor("keys", total)
        return ProjectedKeys(_heads_T(total, weights), weights)
    out = torch.empty(b, c, f)
    for i in range(b):  # 2-D transposes, as in _heads_T
        if add is None:
            out[i].copy_(keys[i].t())
            continue
        # blocks of rows: contiguous adds into a small buffer, then a transposed copy (an add
        # with transposed operands and output is 5x slower than both together)
        blk = torch.empty(min(f, _KEY_BLOCK), c)
        for f0 in range(0, f, _KEY_BLOCK):
            n = min(f, f0 + _KEY_BLOCK) - f0
            torch.add(keys[i, f0:f0 + n].float(), add[i, f0:f0 + n].float(), out=blk[:n])
            out[i, :, f0:f0 + n].copy_(blk[:n].t())
    _check_tensor("keys", out)
    return ProjectedKeys(out.view(b, weights.num_heads, weights.head_dim, f), weights)


def auto_chunk_size(batch: int, heads: int, num_keys: int) -> int:
    """Default queries per chunk: DEFAULT_CHUNK_QUERIES, fewer if the logits would pass the cap."""
    return max(1, min(DEFAULT_CHUNK_QUERIES, MAX_CHUNK_BYTES // max(1, batch * heads * num_keys * 4)))


def _check_tensor(name: str, t) -> None:
    if not isinstance(t, torch.Tensor) or t.dim() != 3:
        got = list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise AQRInputError(f"{name}: expected shape [B, N, C], got {got}")
    # One summation pass finds NaN/Inf (they propagate); the exact count only on failure.
    if t.is_floating_point() and not math.isfinite(float(t.sum())):
        bad = int((~torch.isfinite(t)).sum())
        if bad:
            raise AQRInputError(f"{name}: contains {bad} NaN or Inf values")


def _check_path(p: AttentionPath, keys: torch.Tensor, b: int, q: int, f: int) -> None:
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


def _check_projected(name: str, keys, weights: CrossAttentionWeights) -> None:
    """Projected keys must come from these weights (raw key inputs are checked as tensors)."""
    if isinstance(keys, ProjectedKeys) and keys.weights is not weights:
        raise AQRInputError(f"{name}: projected with other attention weights than this run's")


def _check_inputs(query, keys, weights, num_bev, paths) -> None:
    _check_tensor("query", query)
    if isinstance(keys, ProjectedKeys):
        _check_projected("keys", keys, weights)
    else:
        _check_tensor("keys", keys)
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
        _check_projected(f"paths[{p.name!r}].keys", p.keys, weights)
        _check_path(p, keys, b, q, f)


def _window(window, paths: list[AttentionPath], query: torch.Tensor) -> WindowBias | None:
    """The bias whose cells define ``window_mass``: ``window``, else the first path bias."""
    window = as_window_bias(window) if window is not None else \
        next((p.bias for p in paths if p.bias is not None), None)
    if window is not None and tuple(window.values.shape[:2]) != tuple(query.shape[:2]):
        raise AQRInputError(f"window: expected [B, Q, K] with B, Q = {list(query.shape[:2])}, "
                            f"got {list(window.values.shape)}")
    return window


def _reference(reference: str | None, paths: list[AttentionPath]) -> str:
    names = [p.name for p in paths]
    reference = reference or ("baseline" if "baseline" in names else names[0])
    if reference not in names:
        raise AQRInputError(f"reference: {reference!r} is not one of the paths {names}")
    return reference


def _chunk_queries(chunk_size: int | None, b: int, h: int, f: int, q: int) -> int:
    n_chunk = int(chunk_size) if chunk_size else auto_chunk_size(b, h, f)
    if n_chunk < 1:
        raise AQRInputError(f"chunk_size: expected a positive integer, got {chunk_size!r}")
    return min(n_chunk, q) if q else 1


def _check_counts(top_k, keep_rows: Sequence[int], q: int, f: int) -> list[int]:
    """``keep_rows`` as ints, after checking it and ``top_k`` against Q and F."""
    if not isinstance(top_k, int) or not 1 <= top_k <= f:
        raise AQRInputError(f"top_k: expected an integer in [1, {f}], got {top_k!r}")
    keep_rows = [int(i) for i in keep_rows]
    if any(not 0 <= i < q for i in keep_rows):
        raise AQRInputError(f"keep_rows: query indices must lie in [0, {q}), got {keep_rows}")
    return keep_rows


def compute_attention(query: torch.Tensor, keys: torch.Tensor | ProjectedKeys,
                      weights: CrossAttentionWeights, *,
                      num_bev: int, paths: Sequence[AttentionPath] | None = None,
                      window=None, reference: str | None = None, top_k: int = DEFAULT_TOPK,
                      chunk_size: int | None = None, keep_rows: Sequence[int] = (),
                      projection: dict | None = None, values: torch.Tensor | None = None) -> AttentionResult:
    """Run every path over query chunks; return per-query statistics and selected rows.

    ``query [B, Q, C]``: the cross-attention query input (decoder target + query position
    embedding). ``keys [B, F, C]``: key input (memory + key position embedding) shared by paths
    whose ``keys`` is None, or those keys already projected (:func:`project_keys`; a path's
    ``keys`` may be either too). ``num_bev``: H*W, the number of leading BEV tokens. ``paths``:
    default one path ``baseline``. ``window``: bias whose window cells define ``window_mass``
    (default: the first path bias found). ``reference``: the path the deltas, KL and top-k
    overlap compare with (default ``baseline`` if present, else the first path).
    ``chunk_size``: queries per chunk (default 24, fewer when one chunk's logits would pass
    28 MiB: 16 at 1600x640). ``keep_rows``: query indices whose full head-averaged rows are returned.
    ``values [B, F, C]``: value input shared by paths whose ``values`` is None; when given, the
    per-query attention output (what the decoder reads: per head ``p_h W_v v``, heads
    concatenated, before ``out_proj``) is compared with the reference path's in
    :attr:`AttentionResult.readout`.
    """
    paths = list(paths or [AttentionPath("baseline")])
    paths = [AttentionPath(p.name, p.keys, as_window_bias(p.bias), p.values, p.readout) for p in paths]
    _check_inputs(query, keys, weights, num_bev, paths)
    window = _window(window, paths, query)
    reference = _reference(reference, paths)
    b, q, _ = query.shape
    f = keys.shape[1]
    keep_rows = _check_counts(top_k, keep_rows, q, f)
    n_chunk = _chunk_queries(chunk_size, b, weights.num_heads, f, q)
    with torch.no_grad():
        run = _Run(query, keys, weights, paths, values, reference, n_chunk, keep_rows)
        for c0 in range(0, q, n_chunk):
            run.chunk(c0, min(q, c0 + n_chunk), window, num_bev, top_k)
    return AttentionResult(
        per_query={p.name: run.stats[p.name] for p in paths}, rows=run.rows, row_queries=keep_rows,
        reference=reference, num_keys=f, num_bev=num_bev, num_queries=q, batch_size=b,
        top_k=top_k, chunk_size=n_chunk, weights=weights.describe(), projection=projection,
        readout=readout_change(run.readouts, reference) if reference in run.readouts else {})


def _key_groups(paths: list[AttentionPath], keys: torch.Tensor, reference: str):
    """(paths by key set, key sets): paths without own keys share the engine's keys (and the
    logits matmul); the reference path comes first in its group."""
    groups: dict[int, list[AttentionPath]] = {}
    key_sets: list[torch.Tensor] = []
    for p in sorted(paths, key=lambda p: p.name != reference):
        src = keys if p.keys is None else p.keys
        idx = next((i for i, s in enumerate(key_sets) if s is src), None)
        if idx is None:
            key_sets.append(src)
            idx = len(key_sets) - 1
        groups.setdefault(idx, []).append(p)
    return groups, key_sets


class _Run:
    """One :func:`compute_attention` call: projected queries and keys, buffers and outputs."""

    def __init__(self, query, keys, weights: CrossAttentionWeights, paths: list[AttentionPath],
                 values, reference: str, n_chunk: int, keep_rows: list[int]):
        b, q, _ = query.shape
        f = keys.shape[1]
        h, d = weights.num_heads, weights.head_dim
        self.reference = reference
        self.groups, key_sets = _key_groups(paths, keys, reference)
        self.k_t = [s.heads if isinstance(s, ProjectedKeys) else _heads_T(s, weights) for s in key_sets]
        self.v_heads = _value_heads(paths, values, weights) if values is not None else {}
        spans: dict[int, tuple[int, int]] = {}  # paths sharing values: counted once
        for v in self.v_heads.values():
            if id(v) not in spans:
                spans[id(v)] = _live_heads(v)
        self.v_span = {name: spans[id(v)] for name, v in self.v_heads.items()}
        self.derived = {gi: self._derivable(members) for gi, members in self.groups.items()}
        self.readouts = {p.name: torch.empty(b, q, h * d) for p in paths if p.name in self.v_heads}
        self.qh = (weights.project_query(query) * (1.0 / math.sqrt(d))).view(b, q, h, d).transpose(1, 2)
        n_dense = max(len(g) - len(self.derived[gi]) for gi, g in self.groups.items())
        n_derived = max(len(x) for x in self.derived.values())
        self.buf = _Chunk(b, h, n_chunk, f, n_dense > 1, n_derived)
        self.stats = {p.name: {m: torch.empty(b, q) for m in METRICS} for p in paths}
        self.rows = {p.name: torch.empty(b, len(keep_rows), f) for p in paths}
        self.keep = torch.tensor(keep_rows, dtype=torch.long)
        self.log_f = math.log(f) if f > 1 else float("nan")

    def _derivable(self, members: list[AttentionPath]) -> list[AttentionPath]:
        """The members of a key group derived from its reference (:mod:`.derived`): the group
        must hold the unbiased reference; a member's readout must read the reference's values."""
        ref = members[0]
        if ref.name != self.reference or ref.bias is not None:
            return []
        ref_values = self.v_heads.get(ref.name)
        return [p for p in members[1:] if derivable(p.bias)
                and (p.name not in self.v_heads or self.v_heads[p.name] is ref_values)]

    def chunk(self, c0: int, c1: int, window: WindowBias | None, num_bev: int, top_k: int) -> None:
        """Queries ``c0..c1-1`` through every path; statistics into :attr:`stats`."""
        n = c1 - c0
        qc = self.qh[:, :, c0:c1]
        ctx = _Ctx(window.rows(c0, c1) if window is not None else None, num_bev, top_k, c0, c1)
        for gi, members in self.groups.items():
            derived = self.derived[gi]
            pending = [p for p in members if p not in derived]
            raw = self.buf.view(self.buf.raw, n, True)
            torch.matmul(qc, self.k_t[gi], out=raw)
            intact = True
            while pending:
                path = pending.pop(0)
                if not intact:      # a derived path computed densely after all: its logits again
                    torch.matmul(qc, self.k_t[gi], out=raw)
                    logits = raw
                elif pending:
                    logits = self.buf.view(self.buf.work, n, True)
                    logits.copy_(raw)
                else:
                    logits, intact = raw, False
                r0 = self._dense(path, logits, ctx)
                if derived and path.name == self.reference:
                    pending += self._derive(derived, logits, r0, ctx)
                    derived = []

    def _dense(self, path: AttentionPath, logits: torch.Tensor, ctx: "_Ctx") -> torch.Tensor | None:
        """One path through its own softmax; ``logits`` then hold its per-head probabilities.
        Returns its per-head attention output (None without values)."""
        n = ctx.c1 - ctx.c0
        is_ref = path.name == self.reference
        p = self.buf.view(self.buf.p0 if is_ref else self.buf.p, n, False)
        _softmax_mean(logits, path.bias.rows(ctx.c0, ctx.c1) if path.bias is not None else None,
                      ctx.num_bev, p)
        self._stats(path.name, p, ctx, is_ref)
        self._keep(path.name, p, ctx)
        return self._readout(path.name, logits, ctx)

    def _derive(self, paths: list[AttentionPath], p0h: torch.Tensor, r0: torch.Tensor | None,
                ctx: "_Ctx") -> list[AttentionPath]:
        """The derived paths of a chunk from the reference's per-head probabilities ``p0h`` and
        per-head output ``r0`` (None without values: then no derived path reads values, see
        :meth:`_derivable`); returns those to compute densely (ill-conditioned in this chunk)."""
        n = ctx.c1 - ctx.c0
        windows = [window_terms(p0h, p.bias.rows(ctx.c0, ctx.c1)) for p in paths]
        probs = derived_probabilities(p0h, windows, self.buf.derived_view(n, len(paths)))
        ref_values = self.v_heads.get(self.reference)
        span = self.v_span.get(self.reference)
        dense = []
        for j, (path, w) in enumerate(zip(paths, windows)):
            if not w.ok:
                dense.append(path)
                continue
            p = probs[:, :, j]
            self._stats(path.name, p, ctx, False)
            if path.name in self.v_heads:
                self.readouts[path.name][:, ctx.c0:ctx.c1] = derived_readout(r0, ref_values, w, span)
            self._keep(path.name, p, ctx)
        return dense

    def _stats(self, name: str, p: torch.Tensor, ctx: "_Ctx", is_ref: bool) -> None:
        n = ctx.c1 - ctx.c0
        out = {m: v[:, ctx.c0:ctx.c1] for m, v in self.stats[name].items()}
        logp = self.buf.view(self.buf.logp0 if is_ref else self.buf.logp, n, False)
        ctx.ref = _prob_stats(p, logp, self.buf.view(self.buf.tmp, n, False), ctx.window,
                              ctx.num_bev, ctx.top_k, self.log_f, out, ctx.ref, is_ref)

    def _readout(self, name: str, probs: torch.Tensor, ctx: "_Ctx") -> torch.Tensor | None:
        """The attention output of one path's chunk from its per-head probabilities ``probs``;
        returns the per-head output ``[B, h, n, d]`` (None without values)."""
        if name not in self.v_heads:
            return None
        b, h, n, _ = probs.shape
        values, (h0, h1) = self.v_heads[name], self.v_span[name]
        if (h0, h1) == (0, h):
            r = torch.matmul(probs, values)                                  # [B, h, n, d]
        else:  # heads whose values are all zero read exactly zero
            r = probs.new_zeros(b, h, n, values.shape[-1])
            r[:, h0:h1] = torch.matmul(probs[:, h0:h1], values[:, h0:h1])
        self.readouts[name][:, ctx.c0:ctx.c1] = r.transpose(1, 2).reshape(b, n, h * r.shape[-1])
        return r

    def _keep(self, name: str, p: torch.Tensor, ctx: "_Ctx") -> None:
        """The kept rows of one path's chunk from its head-averaged probabilities ``p``."""
        sel = (self.keep >= ctx.c0) & (self.keep < ctx.c1)
        if bool(sel.any()):
            self.rows[name][:, sel] = p[:, self.keep[sel] - ctx.c0]


@dataclass
class _Ctx:
    """What every path of one chunk shares: the window rows, sizes and the reference state."""

    window: WindowBias | None
    num_bev: int
    top_k: int
    c0: int
    c1: int
    ref: tuple | None = None


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


def block_topk(p: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
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


class _Chunk:
    """Reusable flat buffers for one chunk size (allocating per chunk costs page faults)."""

    def __init__(self, b: int, h: int, n: int, f: int, need_work: bool, derived: int = 0):
        self.raw = torch.empty(b * h * n * f)
        self.work = torch.empty(b * h * n * f) if need_work else None
        self.derived = torch.empty(b * n * derived * f) if derived else None
        self.p = torch.empty(b * n * f)
        self.logp = torch.empty(b * n * f)
        self.p0 = torch.empty(b * n * f)
        self.logp0 = torch.empty(b * n * f)
        self.tmp = torch.empty(b * n * f)
        self.shape = (b, h, n, f)

    def derived_view(self, n: int, m: int) -> torch.Tensor:
        """``[B, n, m, F]`` head-averaged probabilities of m derived paths."""
        b, _, _, f = self.shape
        return self.derived[: b * n * m * f].view(b, n, m, f)

    def view(self, buf: torch.Tensor, n: int, heads: bool) -> torch.Tensor:
        b, h, _, f = self.shape
        return buf[: b * (h if heads else 1) * n * f].view(b, h, n, f) if heads else \
            buf[: b * n * f].view(b, n, f)


def _value_heads(paths, values: torch.Tensor, weights: CrossAttentionWeights) -> dict:
    """Projected values ``[B, h, F, d]`` per path with a readout (paths sharing a value tensor
    share it)."""
    b, f, _ = values.shape
    cache: list[tuple[torch.Tensor, torch.Tensor]] = []
    out = {}
    for p in paths:
        if not p.readout:
            continue
        src = values if p.values is None else p.values
        hit = next((v for s, v in cache if s is src), None)
        if hit is None:
            # A strided view, not a copy: the readout matmul takes it as it is (same result,
            # same speed) and with identity weights it is the value input itself.
            hit = weights.project_value(src.float()).view(b, f, weights.num_heads,
                                                          weights.head_dim).transpose(1, 2)
            cache.append((src, hit))
        out[p.name] = hit
    return out


def _live_heads(values: torch.Tensor) -> tuple[int, int]:
    """``(h0, h1)``: the heads ``h0 .. h1-1`` of projected values ``[B, h, F, d]`` span every
    head with a nonzero value (``(0, 0)``: none). Features a dump keeps 16 of 256 channels of
    are zero-padded: with identity weights only the first head reads anything, and the
    readout matmuls of the other seven (each the size of the logits matmul) can only give 0."""
    b, h, f, d = values.shape
    rows = values.transpose(1, 2)  # [B, F, h, d]: the value input itself with identity weights
    # column maxima and minima of contiguous rows: 10x faster than counting over the view (a
    # NaN column counts as live)
    flat = rows.reshape(b * f, h * d)
    live_channel = (flat.amax(0) != 0) | (flat.amin(0) != 0)
    live = live_channel.view(h, d).any(1).nonzero().flatten().tolist()
    return (live[0], live[-1] + 1) if live else (0, 0)


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


def _softmax_mean(logits, bias, num_bev, p) -> None:
    """Add ``bias``, softmax ``logits [B, h, n, F]`` in place (per-head probabilities) and write
    their head average into ``p [B, n, F]``."""
    h = logits.shape[1]
    if bias is not None:
        add_bias(logits, bias, num_bev)
    torch.ops.aten._softmax.out(logits, -1, False, out=logits)
    torch.sum(logits, 1, out=p)
    p.mul_(1.0 / h)


def _prob_stats(p, logp, tmp, window, num_bev, top_k, log_f, out, ref_state, is_ref):
    """Write the statistics of the head-averaged probabilities ``p [B, n, F]`` into ``out``
    (``logp``, ``tmp``: buffers of p's shape).

    Returns the reference state ``(p0, logp0, neg_entropy0, topk0)`` (from this path when it is
    the reference, else the one passed in).
    """
    top_vals, top_idx = block_topk(p, top_k)
    torch.clamp_min(p, TINY, out=logp)
    logp.log_()
    neg_ent = torch.mul(p, logp, out=tmp).sum(-1)
    out["entropy"].copy_(-neg_ent)
    out["entropy_norm"].copy_(-neg_ent / log_f)
    out["max_attention"].copy_(top_vals[..., 0])
    lidar = p[..., :num_bev].sum(-1)
    out["lidar_share"].copy_(lidar)
    out["camera_share"].copy_(p[..., num_bev:].sum(-1))
    out["window_mass"].copy_(window_mass(p, window))
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
