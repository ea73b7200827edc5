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
given sparsely (per-query window entries) and the dense ``[B, Q, F]`` bias is never built.

The package is cut by concept: :mod:`.projections` (in-projection weights, width alignment),
:mod:`.window_bias` (the sparse bias), :mod:`.engine` (the chunk engine), :mod:`.derived`
(biased paths derived from the baseline's probabilities), :mod:`.paths` (the
baseline / multiplicative / additive comparison), :mod:`.groups` (query groups) and
:mod:`.result` (the result and its summaries). This module is its public interface.
"""

from aqr_cli.analysis.attention.engine import (
    AttentionPath,
    ProjectedKeys,
    compute_attention,
    project_keys,
    readout_change,
)
from aqr_cli.analysis.attention.groups import (
    NEAREST_OBJECT_RADIUS,
    distance_to_boxes,
    is_small_label,
    preference_groups,
    query_groups,
    size_groups,
)
from aqr_cli.analysis.attention.paths import compare_attention
from aqr_cli.analysis.attention.projections import CrossAttentionWeights, align_width
from aqr_cli.analysis.attention.result import (
    DEFAULT_TOPK,
    METRICS,
    AttentionResult,
    summarize_metrics,
)
from aqr_cli.analysis.attention.window_bias import WindowBias

__all__ = [
    "DEFAULT_TOPK", "METRICS", "NEAREST_OBJECT_RADIUS", "AttentionPath", "AttentionResult",
    "CrossAttentionWeights", "ProjectedKeys", "WindowBias", "align_width", "compare_attention",
    "compute_attention", "distance_to_boxes", "is_small_label", "preference_groups", "project_keys",
    "query_groups", "readout_change", "size_groups", "summarize_metrics",
]
