"""The three paths of one decoder cross-attention: baseline, multiplicative (keys from the
modulated memory) and additive (baseline keys plus the AQR bias), by :func:`compare_attention`."""

from __future__ import annotations

from typing import Sequence

import torch

from aqr_cli.analysis.attention.engine import AttentionPath, ProjectedKeys, compute_attention, project_keys
from aqr_cli.analysis.attention.projections import CrossAttentionWeights, align_width
from aqr_cli.analysis.attention.result import DEFAULT_TOPK, AttentionResult
from aqr_cli.analysis.attention.window_bias import as_window_bias
from aqr_cli.core.errors import AQRInputError

def compare_attention(query_pos: torch.Tensor, memory: torch.Tensor, key_pos: torch.Tensor, *,
                      num_bev: int, bias=None, modulated_memory: torch.Tensor | None = None,
                      weights: CrossAttentionWeights | None = None,
                      query_content: torch.Tensor | None = None, width_mode: str = "zero_pad",
                      width_seed: int = 0, top_k: int = DEFAULT_TOPK,
                      chunk_size: int | None = None, keep_rows: Sequence[int] = (),
                      with_readout: bool = True,
                      base_keys: ProjectedKeys | None = None,
                      extra_paths: Sequence[AttentionPath] = ()) -> AttentionResult:
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
    ``base_keys``: the baseline keys (width-aligned memory + ``key_pos``) already projected by
    ``weights`` (:func:`~aqr_cli.analysis.attention.engine.project_keys`), e.g. to share them
    with a bias-scale sweep; default: projected here. ``extra_paths``: more paths run in the
    same pass after the three (e.g. the scales of a sweep: they share the baseline's logits
    matmul); the result then holds them too (:meth:`AttentionResult.select` splits it).

    Each key input is projected as soon as it is formed and only the projections are kept
    (at 1600x640 every ``[B, F, C]`` tensor is 58 MB).
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
    if base_keys is None:
        base_keys = project_keys(mem, weights, add=key_pos)
    elif tuple(base_keys.shape) != (memory.shape[0], memory.shape[1], c_emb):
        raise AQRInputError(f"base_keys: projected from shape {list(base_keys.shape)}, expected "
                            f"{[memory.shape[0], memory.shape[1], c_emb]}")
    paths = [AttentionPath("baseline")]
    if modulated_memory is not None:
        mod, _ = align_width(modulated_memory, c_emb, width_mode, width_seed)
        paths.append(AttentionPath("multiplicative", keys=project_keys(mod, weights, add=key_pos),
                                   values=mod.float()))
    if bias is not None:
        paths.append(AttentionPath("additive", bias=as_window_bias(bias)))
    paths += list(extra_paths)
    query = query_pos.float() if query_content is None else query_pos.float() + query_content.float()
    return compute_attention(query, base_keys, weights, num_bev=num_bev, paths=paths, window=bias,
                             reference="baseline", top_k=top_k, chunk_size=chunk_size,
                             keep_rows=keep_rows, projection=info,
                             values=mem.float() if with_readout else None)
