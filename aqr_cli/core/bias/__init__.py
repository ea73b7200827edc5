"""Additive attention bias from per-query modality weights (spec section 5).

:class:`AttentionBiasGenerator` reproduces upstream ``attention_bias_generator.py`` at HEAD: each
query gets a ``ws x ws`` window around its BEV cell (value ``w_lidar * g``) and around its camera
cell (``w_camera * g``), zero elsewhere, then ``* scale``, a final clamp and an optional fp16
cast. ``forward`` returns the dense ``[B, Q, F]`` bias (F = H*W + V*h*w, BEV columns first);
``forward_sparse`` returns the same numbers as a :class:`SparseBias` (window entries only) that
never materialises ``[B, Q, F]``.

Index semantics copied from upstream (fixture README items 8-11):

- BEV: ``qy = floor(p / W)``, ``qx = p mod W`` from the flat index ``p``, so an out-of-grid
  cell such as (y=128, x=128) on a 128x128 grid becomes (129, 0); windows are cut at the true
  2-D bounds (partial windows, no row wrap).
- camera: ``v, h, w = long(pts_pers)`` (truncation); windows cut at the map bounds of view ``v``.
  A view outside ``[0, V)`` sends the whole window to the first (v < 0) or last (v >= V)
  camera column, where upstream's ``scatter_add_`` sums it; the sparse form keeps that sum in
  the first valid slot of the row.

The package is cut by concept: ``generator`` (the module), ``windows`` (window offsets and
checks), ``sparse`` (the :class:`SparseBias` form), ``boxes`` and ``heatmaps`` (per-cell
reduction over queries), ``debug_stats`` (upstream's debug statistics) and ``state_dict``
(checkpoints of either generation).
"""

from .boxes import WindowLayout
from .generator import AttentionBiasGenerator
from .sparse import REDUCES, BlockEntries, SparseBias
from .windows import PARITIES, window_axis_offsets

__all__ = ["AttentionBiasGenerator", "BlockEntries", "PARITIES", "REDUCES", "SparseBias",
           "WindowLayout", "window_axis_offsets"]
