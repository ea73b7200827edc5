"""Biased paths derived from their unbiased reference, without a softmax of their own.

The additive bias is the same for every head and is zero outside each query's window, so a
path with logits ``l + b`` has, per head ``h``, exactly::

    p_h = p0_h * exp(b) / Z_h,     Z_h = 1 + sum over the window of p0_h * (exp(b) - 1)

where ``p0_h = softmax(l)`` is the reference's. Its head average is then one small matmul over
the reference's per-head probabilities (weights ``1 / (heads * Z_h)``, all derived paths of a
chunk at once) plus a correction on the window entries; its attention output is
``(r0_h + sum over the window of p0_h * (exp(b) - 1) * v) / Z_h``. That replaces, per path and
chunk, a copy of the logits, the bias scatter, a softmax and a head sum (the sweep's five
scales and the additive path at 1600x640: 6 x 29 MB passes of each).

The sums over window entries run in float64. When ``Z_h`` is small against the reference's
window mass (a strongly negative bias on a window holding nearly all the attention: ``1 - S``
would lose digits) a chunk's path is computed densely instead; so is a path whose bias is
global, larger than :data:`MAX_DERIVED_BIAS` in magnitude or repeats a column within a row.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from aqr_cli.analysis.attention.window_bias import WindowBias

MAX_DERIVED_BIAS = 40.0
"""Largest |bias| (logits) derived; beyond it the path is computed densely (exp stays far from
float64 overflow and the head weights from float32 underflow)."""
MIN_Z_SHARE = 5e-3
"""A chunk's path is derived only where ``Z_h >= MIN_Z_SHARE * window mass of p0_h``: the
relative error of ``Z_h`` then stays below about 1e-5."""


def derivable(bias: WindowBias | None) -> bool:
    """Whether a path with this bias can be derived from an unbiased reference with the same
    keys: a local window bias with distinct valid columns per row and |values| within
    :data:`MAX_DERIVED_BIAS`."""
    if bias is None or bias.is_global:
        return False
    valid = bias.valid
    if not bool(valid.any()):
        return True
    if float(bias.values[valid].abs().max()) > MAX_DERIVED_BIAS:
        return False
    # distinct columns: sorted valid columns (invalid slots as distinct negatives) never repeat
    k = bias.indices.shape[-1]
    slots = torch.where(valid, bias.indices, -1 - torch.arange(k))
    ordered = slots.sort(-1).values
    return not bool((ordered[..., 1:] == ordered[..., :-1]).any())


@dataclass
class Window:
    """One derived path's window terms for a chunk (see the module docstring)."""

    index: torch.Tensor     # [B, n, K] columns (clamped into [0, F))
    valid: torch.Tensor     # [B, n, K] bool
    got: torch.Tensor       # [B, h, n, K] float64: p0_h on valid slots, else 0
    excess: torch.Tensor    # [B, h, n, K] float64: p0_h * (exp(b) - 1) on valid slots, else 0
    z: torch.Tensor         # [B, h, n] float64
    ok: bool                # Z_h well conditioned everywhere in the chunk


def window_terms(p0h: torch.Tensor, bias: WindowBias) -> Window:
    """The window terms of ``bias`` (rows of one chunk) against the reference's per-head
    probabilities ``p0h [B, h, n, F]``."""
    b, h, n, f = p0h.shape
    index = bias.indices.clamp(0, f - 1)
    got = p0h.gather(3, index.unsqueeze(1).expand(b, h, n, index.shape[-1])).double()
    got = torch.where(bias.valid.unsqueeze(1), got, 0.0)
    excess = got * torch.expm1(bias.values.double()).unsqueeze(1)
    z = 1.0 + excess.sum(-1)
    ok = bool((z >= MIN_Z_SHARE * got.sum(-1)).all()) and bool(torch.isfinite(z).all())
    return Window(index, bias.valid, got, excess, z, ok)


def derived_probabilities(p0h: torch.Tensor, windows: list[Window], out: torch.Tensor) -> torch.Tensor:
    """Head-averaged probabilities of the derived paths, ``out [B, n, m, F]`` (m = len(windows)):
    one matmul of the head weights ``1 / (h Z_h)`` with ``p0h [B, h, n, F]``, then each path's
    window entries set to their float64 value, rounded once (a correction added to the
    matmul's value would lose digits where a negative bias nearly cancels it). The entries are
    set by two exact additions, ``-current`` then the value, so that the invalid slots of a row
    (clamped onto any column) add zeros wherever they point."""
    b, h, n, f = p0h.shape
    weights = torch.stack([(1.0 / (h * w.z)).float() for w in windows], 2)   # [B, h, m, n]
    torch.matmul(weights.permute(0, 3, 2, 1), p0h.transpose(1, 2), out=out)  # [B, n, m, F]
    for j, w in enumerate(windows):
        exact = ((w.got + w.excess) / (h * w.z).unsqueeze(-1)).sum(1)        # [B, n, K]
        row = out[:, :, j]
        row.scatter_add_(2, w.index, torch.where(w.valid, -row.gather(2, w.index), 0.0))
        row.scatter_add_(2, w.index, torch.where(w.valid, exact.float(), 0.0))
    return out


def derived_readout(r0: torch.Tensor, value_heads: torch.Tensor, w: Window,
                    span: tuple[int, int] | None = None) -> torch.Tensor:
    """Attention output ``[B, n, h * d]`` of a derived path: ``r0 [B, h, n, d]`` the reference's
    per-head output, ``value_heads [B, h, F, d]`` the projected values. One head at a time, so
    the gathered window values stay ``[B, n, K, d]`` (1 MB at 1600x640, not 8). ``span = (h0,
    h1)``: only those heads have nonzero values; the others read exactly 0."""
    b, h, n, d = r0.shape
    h0, h1 = (0, h) if span is None else span
    rows = torch.arange(b).view(b, 1, 1)
    coef = (w.excess / w.z.unsqueeze(-1)).float().unsqueeze(-2)                # [B, h, n, 1, K]
    scaled = r0 / w.z.float().unsqueeze(-1)                                     # [B, h, n, d]
    out = torch.empty(b, n, h, d) if (h0, h1) == (0, h) else torch.zeros(b, n, h, d)
    for i in range(h0, h1):
        picked = value_heads[:, i][rows, w.index]                               # [B, n, K, d]
        torch.add(scaled[:, i], torch.matmul(coef[:, i], picked).squeeze(-2), out=out[:, :, i])
    return out.view(b, n, h * d)
