"""Per-cell reduction of a SparseBias over its queries (``SparseBias.heatmaps``).

Entry by entry (a scatter per accumulator) in general; per query (boxes, see ``boxes``) when the
SparseBias carries a valid :class:`WindowLayout`.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import torch

from ..errors import AQRInputError
from .boxes import Boxes, block_geometry

if TYPE_CHECKING:
    from .sparse import SparseBias

REDUCES = ("maxabs", "sum", "mean", "count")


def heatmaps(sparse: "SparseBias", reduce: str, dtype: torch.dtype | None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """(bev [B, H, W], pers [B, V, h, w]): see :meth:`SparseBias.heatmaps`."""
    if reduce not in REDUCES:
        raise AQRInputError(f"reduce: expected one of {REDUCES}, got {reduce!r}")
    b, _, f = sparse.shape
    hw = sparse.num_bev_features
    if sparse.is_global:
        vals = _rounded(sparse.values.detach(), dtype)
        bev = _global_reduce(vals[..., 0], reduce).unsqueeze(-1).expand(b, hw)
        cam = _global_reduce(vals[..., 1], reduce).unsqueeze(-1).expand(b, f - hw)
        return bev.reshape(b, *sparse.bev_shape), cam.reshape(b, *sparse.pers_shape)
    layout = sparse.layout
    if layout is not None and layout.describes(sparse):
        blocks = [_box_accumulators(sparse, layout.boxes(sparse, block), block, reduce, dtype)
                  for block in (0, 1)]
    else:
        acc = _entry_accumulators(sparse, reduce, dtype)
        blocks = [{k: t[:, sl] for k, t in acc.items()} for sl in (slice(hw), slice(hw, f))]
    bev, cam = (_finalize(acc, reduce) for acc in blocks)
    return bev.reshape(b, *sparse.bev_shape), cam.reshape(b, *sparse.pers_shape)


# accumulators each reduce needs (see _finalize)
_ACCUMULATORS = {"maxabs": ("keys",), "sum": ("total",), "count": ("count",),
                 "mean": ("total", "count")}


def _rounded(vals: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """``vals`` as float32, rounded to ``dtype`` first if given (the dense bias' values)."""
    return vals.float() if dtype is None else vals.to(dtype).float()


def _query_keys(vals: torch.Tensor, rank: torch.Tensor) -> torch.Tensor:
    """int64 maxabs keys ``|v| bits << 32 | rank << 1 | sign`` for float32 ``vals [..., K]``.

    ``rank [..., 1]`` int32 is ``Q - 1 - q``. The bits of a non-negative float32 order like its
    value, and the rank breaks ties towards the first query, which is what upstream's "strictly
    larger replaces" loop keeps; a query covers a column at most once, so keys never tie. A 0
    entry can only win where every value is 0. Built as two int32 words of one int64 (cheaper
    than int64 arithmetic).
    """
    vals = vals.contiguous()
    words = torch.empty(*vals.shape, 2, dtype=torch.int32, device=vals.device)
    hi = 1 if sys.byteorder == "little" else 0
    torch.bitwise_and(vals.view(torch.int32), 0x7FFFFFFF, out=words[..., hi])
    torch.bitwise_or(torch.signbit(vals), rank << 1, out=words[..., 1 - hi])
    return words.view(torch.int64).squeeze(-1)


def _ranks(q: int, device) -> torch.Tensor:
    """``Q - 1 - q`` for q = 0..Q-1, int32 [Q]."""
    return q - 1 - torch.arange(q, dtype=torch.int32, device=device)


def _decode_keys(best: torch.Tensor) -> torch.Tensor:
    """Signed float32 values of maxabs keys (0 where no key): the high word holds ``|v|``'s
    bits, bit 0 of the low word the sign; ``+ 0.0`` turns a winning -0.0 into 0.0."""
    words = best.view(torch.int32).view(*best.shape, 2)
    hi = 1 if sys.byteorder == "little" else 0
    bits = torch.bitwise_or(words[..., hi], words[..., 1 - hi] << 31)  # sign bit -> bit 31
    return bits.view(torch.float32) + 0.0


def _finalize(acc: dict, reduce: str) -> torch.Tensor:
    """Per-column result [B, N] from accumulators: ``keys`` (maxabs; or its final ``values``),
    ``total``, ``count``."""
    if reduce == "maxabs":
        return acc["values"] if "values" in acc else _decode_keys(acc["keys"])
    if reduce == "count":
        return acc["count"].long()
    if reduce == "sum":
        return acc["total"].float()
    count = acc["count"].float()  # exact: far fewer than 2**24 windows
    covered = count.clamp(max=1)  # 1 where a window covers the cell, else 0 (cheaper than where)
    return acc["total"].float() / count.clamp(min=1) * covered


def _merge(a: dict, b: dict) -> dict:
    """Accumulators of two disjoint sets of entries combined."""
    return {k: torch.maximum(a[k], b[k]) if k == "keys" else a[k] + b[k] for k in a}


def _scatter(idx: torch.Tensor, vals: torch.Tensor, mask: torch.Tensor, keys, width: int,
             reduce: str) -> dict:
    """Accumulators [R, width] of entries [R, N] at columns ``idx``: one scatter each.

    Masked-out slots take part neutrally: their value is 0 and their clamped column in range.
    ``total`` is float32 summed in entry order; ``keys`` (maxabs only) see :func:`_query_keys`.
    """
    zeros = lambda dt: torch.zeros(idx.shape[0], width, dtype=dt, device=idx.device)
    acc = {}
    if "keys" in _ACCUMULATORS[reduce]:
        acc["keys"] = zeros(torch.int64).scatter_reduce_(1, idx, keys, "amax")
    if "total" in _ACCUMULATORS[reduce]:
        acc["total"] = zeros(torch.float32).scatter_add_(1, idx, vals)
    if "count" in _ACCUMULATORS[reduce]:
        acc["count"] = zeros(torch.int64).scatter_add_(1, idx, mask.long())
    return acc


def _entry_accumulators(sparse: "SparseBias", reduce: str, dtype) -> dict:
    """Accumulators [B, F] of all window entries [B, Q, K], entry by entry."""
    b, q, f = sparse.shape
    vals = _rounded(sparse.values.detach(), dtype)
    keys = None
    if reduce == "maxabs":
        keys = _query_keys(vals, _ranks(q, vals.device).view(1, q, 1)).flatten(1)
    return _scatter(sparse.indices.flatten(1), vals.flatten(1), sparse.mask.flatten(1),
                    keys, f, reduce)


def _box_accumulators(sparse: "SparseBias", boxes: Boxes, block: int, reduce: str,
                      dtype) -> dict:
    """Accumulators [B, maps*H*W] of one block from its per-query ``boxes`` (+ irregular
    entries).

    ``total`` and ``count`` come out float32 (exact sums rounded once; counts exact).
    """
    vals = _rounded(sparse.values.detach().gather(-1, boxes.leader), dtype)  # [B, Q, 1]
    if reduce == "maxabs":
        keys = _query_keys(vals, _ranks(vals.shape[1], vals.device).view(1, -1, 1))
        acc = _box_maxabs(boxes, vals[..., 0], keys.squeeze(-1))
    else:  # box sums of the values and / or of ones (window counts), in float64
        per_query = {"total": vals[..., 0].double(),
                     "count": torch.ones_like(vals[..., 0], dtype=torch.float64)}
        names = _ACCUMULATORS[reduce]
        acc = dict(zip(names, boxes.sums(torch.stack([per_query[k] for k in names]))))
    if not bool(boxes.regular.all()):
        acc = _merge(acc, _irregular_accumulators(sparse, ~boxes.regular, block, reduce, dtype))
    return acc


def _box_maxabs(boxes: "Boxes", vals: torch.Tensor, keys: torch.Tensor) -> dict:
    """maxabs accumulators [B, maps*H*W] of one block's boxes (values ``vals``, ``keys`` [B, Q]).

    The sliding maximum runs on int32 positions in the sorted order of the keys (half the
    memory traffic of int64 keys); the winners are looked up by position at the end: their
    values (``values``, final) when every query is regular, else their keys (``keys``, to be
    merged with the irregular entries). Position 0: no box, value 0.
    """
    flat = keys.flatten()
    order = flat.argsort()
    position = torch.empty(flat.numel(), dtype=torch.int32, device=keys.device)
    position[order] = torch.arange(1, flat.numel() + 1, dtype=torch.int32, device=keys.device)
    best = boxes.max(position.view_as(keys))
    width, best = best.shape[1], best.reshape(-1)
    if bool(boxes.regular.all()):  # + 0.0: a winning -0.0 reads 0.0, as in _decode_keys
        by_position = torch.cat([vals.new_zeros(1), vals.flatten()[order] + 0.0])
        return {"values": by_position.index_select(0, best).view(keys.shape[0], width)}
    by_position = torch.cat([flat.new_zeros(1), flat[order]])
    return {"keys": by_position.index_select(0, best).view(keys.shape[0], width)}


def _irregular_accumulators(sparse: "SparseBias", rows: torch.Tensor, block: int, reduce: str,
                            dtype) -> dict:
    """Accumulators [B, maps*H*W] of the block's entries of the queries ``rows [B, Q]``."""
    b, q, _ = sparse.shape
    slots, start, grid = block_geometry(sparse, block)
    width = grid[0] * grid[1] * grid[2]
    bi, qi = rows.nonzero(as_tuple=True)
    cols = sparse.indices[bi, qi][:, slots] - start + (bi * width).unsqueeze(-1)  # into [B*width]
    vals = _rounded(sparse.values.detach()[bi, qi][:, slots], dtype)
    keys = None
    if reduce == "maxabs":
        keys = _query_keys(vals, (q - 1 - qi).int().unsqueeze(-1)).reshape(1, -1)
    acc = _scatter(cols.reshape(1, -1), vals.reshape(1, -1),
                   sparse.mask[bi, qi][:, slots].reshape(1, -1), keys, b * width, reduce)
    return {k: t.view(b, width) for k, t in acc.items()}


def _global_reduce(vals: torch.Tensor, reduce: str) -> torch.Tensor:
    """Aggregate per-query segment values [B, Q] over queries -> [B]."""
    b, q = vals.shape
    if reduce == "count":
        return torch.full((b,), q, dtype=torch.int64, device=vals.device)
    if q == 0:
        return vals.new_zeros(b)
    if reduce == "maxabs":
        a = vals.abs()
        first = (a == a.amax(1, keepdim=True)).int().argmax(1, keepdim=True)
        return vals.gather(1, first).squeeze(1) + 0.0
    total = vals.sum(1)
    return total / q if reduce == "mean" else total
