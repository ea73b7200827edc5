"""What ``aqr compare-modes`` computes: the same per-query weights applied both ways.

Three paths on one source's features: baseline (no AQR), multiplicative (WeightRenderer +
FeatureModulator, the old scheme) and additive (AttentionBiasGenerator bias on the decoder's
cross-attention logits, the new scheme). Feature statistics per modality, attention statistics
per query for all three paths, and an optional bias-scale sweep of the additive path.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch

from aqr_cli.analysis.errors import MissingPartError
from aqr_cli.analysis.placement import box_masks, query_xy
from aqr_cli.analysis.memory import memory_bytes, release_free_memory
from aqr_cli.analysis.sources import (
    SourceOptions, WeightSource, build_embeddings, metas_for_batch, split_memory,
)
from aqr_cli.core.errors import AQRInputError, warn_quirk

DEFAULT_SCALES = (0.5, 1.0, 2.5, 5.0, 10.0)
UNIFORM_ENTROPY = 0.99
"""Baseline attention with mean entropy / log F above this is near-uniform: every query spreads
its attention over all keys, so deltas, KL and top-k overlaps against it measure noise."""
RUN_QUIRKS = ("Q15", "Q16", "Q17")
"""Config quirks that decide whether the additive path is what the checkpoint's run did."""
ROLES = {
    "strongest-lidar": "strongest LiDAR preference",
    "strongest-camera": "strongest camera preference",
    "nearest-largest-object": "nearest the largest object",
    "median-weight": "median LiDAR weight",
}


@dataclass
class CompareResult:
    source: WeightSource                 # without its feature, memory and embedding tensors
    features: dict                       # compare_features output
    attention: object                    # AttentionResult
    sweep: object | None                 # SweepResult or None
    gains: tuple                         # (bev_gain [B,H,W], pers_gain [B,V,h,w])
    selected: list                       # [{query, role, slug, sentinel}] with kept attention rows
    summary: dict = field(default_factory=dict)
    bias: object = None                  # SparseBias of the additive path (for heatmaps)
    bias_scale: float = 0.0
    max_scale: float = 5.0
    options: "CompareOptions | None" = None
    quirks: list = field(default_factory=list)   # QuirkWarnings of loading and comparing


def _embeddings_for(src: WeightSource) -> tuple[torch.Tensor, torch.Tensor]:
    """(query_pos [B, Q, C], key_pos [F, B, C]) of the source, recomputed for dumps."""
    if src.query_embed is not None and src.pos_embed is not None:
        return src.query_embed, src.pos_embed
    head = src.head_state
    if not head or "reference_points.weight" not in head or not src.img_metas:
        raise MissingPartError(src.label, "embeddings",
                               "attention needs query/key position embeddings; none given")
    emb = build_embeddings(src.cfg, head, None)
    b, q = src.batch_size, src.num_queries
    ref = head["reference_points.weight"].float()
    if ref.shape[0] != q:
        raise AQRInputError(f"{src.label}: {q} queries but the checkpoint has {ref.shape[0]} reference "
                            "points (DN queries cannot be embedded without their noised centres)")
    metas = metas_for_batch(src.img_metas, b)
    with torch.no_grad():
        qb, qr = emb.query_embed(ref[None].expand(b, -1, -1), metas)
        pos = emb.pos_embed(src.cfg.bev_shape, src.cfg.pers_shape, metas)
    return qb + qr, pos


def select_queries(src: WeightSource, n: int = 3, sample: int = 0) -> list[dict]:
    """Queries of ``sample`` to draw, each ``{query, role, slug, sentinel}``: the strongest LiDAR
    preference, the strongest camera preference, and the query nearest the largest object (or
    the median-weight query).

    Queries no camera sees (the Q3 sentinel at CAM_FRONT (0, 0)) are not picked while any other
    query qualifies; ``sentinel`` flags a pick that is one anyway.
    """
    lw, cw = src.lidar_weights[sample], src.camera_weights[sample]
    unseen = src.unseen[sample] if src.unseen is not None else torch.zeros_like(lw, dtype=torch.bool)
    ok = ~unseen if bool((~unseen).any()) else torch.ones_like(unseen)
    diff = lw - cw
    inf = torch.tensor(float("inf"))
    picks = [("strongest-lidar", int(torch.where(ok, diff, -inf).argmax())),
             ("strongest-camera", int(torch.where(ok, diff, inf).argmin()))]
    if src.boxes and len(src.boxes[sample]):
        cell_xy = query_xy(src)[sample]
        boxes = torch.as_tensor(np.asarray(src.boxes[sample]), dtype=torch.float32)
        big = int((boxes[:, 3] * boxes[:, 4]).argmax())
        dist = (cell_xy - boxes[big, :2]).norm(dim=1)
        picks.append(("nearest-largest-object", int(torch.where(ok, dist, inf).argmin())))
    else:
        picks.append(("median-weight", int(torch.where(ok, (lw - lw.median()).abs(), inf).argmin())))
    out: list[dict] = []
    for slug, q in picks:
        if all(p["query"] != q for p in out):
            out.append({"query": q, "role": ROLES[slug], "slug": slug, "sentinel": bool(unseen[q])})
    return out[:n]


def run_semantics(src: WeightSource, trust: bool = False) -> dict:
    """Whether the additive path is what the checkpoint's run did, from its config (Q15-Q17).

    Each finding of Q15, Q16 and Q17 that ``inspect-checkpoint`` decides is re-emitted as a
    QuirkWarning. ``additive_reached_attention`` is False when Q15 fires (the configured
    cross-attention never applies the bias), None without a checkpoint config.
    """
    if not src.checkpoint_path:
        return {"additive_reached_attention": None, "findings": [],
                "statement": "no checkpoint: whether a run applied the bias cannot be decided; the "
                             "additive path shows the designed semantics (PETRMultiheadAttention)"}
    from aqr_cli.analysis.inspection.checkpoint import inspect_checkpoint

    report = inspect_checkpoint(src.checkpoint_file or src.checkpoint_path)  # opened once
    found = [f for f in report.findings if f.id in RUN_QUIRKS]
    for f in found:
        warn_quirk(f.id, f.message, **{k: (v if isinstance(v, (int, float, str, bool, type(None)))
                                           else str(v)) for k, v in f.detail.items()})
    q15 = next((f for f in found if f.id == "Q15" and f.severity == "error"), None)
    reached = None if report.config is None else q15 is None
    if q15 is not None:
        statement = ("the checkpoint's config never applies the bias (Q15): the additive path shown "
                     "is what the designed PETRMultiheadAttention would do, NOT what this run did")
    elif reached:
        statement = "the checkpoint's config applies the bias in the decoder cross-attention"
    else:
        statement = "the checkpoint holds no config: whether its run applied the bias is unknown"
    return {"additive_reached_attention": reached, "statement": statement,
            "findings": [f.to_dict() for f in found]}


def attention_information(att_doc: dict, weights, projection: dict | None,
                          threshold: float = UNIFORM_ENTROPY) -> dict:
    """Whether the attention statistics say anything: baseline mean entropy / log F <= threshold.

    Near-uniform baseline attention (above the threshold) makes every delta, KL and top-k overlap
    a comparison against noise; ``reasons`` names the likely causes (fallback projections,
    narrow features) and a QuirkWarning ``ATTN_UNIFORM`` carries it to stderr and summary.json.
    """
    base = (((att_doc or {}).get("baseline") or {}).get("overall") or {}).get("entropy_norm") or {}
    value = base.get("mean")
    if value is None:
        return {"informative": None, "baseline_entropy_norm": None, "threshold": threshold,
                "reasons": [], "statement": "attention not computed"}
    reasons = []
    if getattr(weights, "is_identity", False):
        reasons.append("the source has no decoder cross-attention weights, so identity projections "
                       "stand in (logits are raw dot products of embeddings and memory)")
    proj = projection or {}
    if proj.get("status") == "projected":
        reasons.append(f"the features carry {proj.get('from')} of {proj.get('to')} channels "
                       f"({proj.get('note')})")
    uniform = value > threshold
    if uniform:
        why = "; ".join(reasons) if reasons else "the query and key embeddings barely align"
        statement = (f"baseline attention is near-uniform (entropy / log F = {value:.4f} > "
                     f"{threshold}): every query spreads its attention over all keys, so the "
                     f"attention deltas, KL and top-k overlaps carry no information for this "
                     f"source. Why: {why}")
        warn_quirk("ATTN_UNIFORM", statement, entropy_norm=value, threshold=threshold)
    else:
        statement = (f"baseline attention is peaked enough to compare (entropy / log F = "
                     f"{value:.4f} <= {threshold})")
    return {"informative": not uniform, "baseline_entropy_norm": value, "threshold": threshold,
            "reasons": reasons, "statement": statement}


@dataclass(frozen=True)
class CompareOptions(SourceOptions):
    """What ``compare-modes`` computes and draws of a loaded source (:class:`SourceOptions`,
    plus these)."""

    scales: tuple = DEFAULT_SCALES     # bias scales of the sweep; empty: no sweep
    width_mode: str = "zero_pad"       # features narrower than the embeddings: zero_pad, orthogonal, skip
    trust: bool = False


def compare_source(src: WeightSource, options: CompareOptions = CompareOptions(),
                   quirks: list = ()) -> CompareResult:
    """Compare the two paths on one loaded source as ``compare-modes`` does; ``quirks``: those of
    its loading. The quirks warned while comparing (a clamped ``bias_scale`` is Q13) are
    collected into ``result.quirks`` after ``quirks``; :func:`aqr_cli.views.compare.compare_outputs`
    turns the result into the files."""
    from aqr_cli.analysis.maps import build_bias_generator
    from aqr_cli.analysis.quirks import collect_quirks, merge_quirks
    from aqr_cli.analysis.render import warn_scale_clamp

    with collect_quirks() as more:
        result = compare_paths(src, method=options.method, bias_scale=options.bias_scale,
                               scales=list(options.scales), width_mode=options.width_mode,
                               sample=options.sample, trust=options.trust)
        if options.bias_scale is not None:
            warn_scale_clamp(build_bias_generator(src, options.bias_scale), options.bias_scale)
    result.options = options
    result.quirks = merge_quirks(list(quirks), more)
    # before the view forks figure workers, which inherit every resident page
    release_free_memory(memory_bytes(src.cfg, src.lidar_weights.shape[0]))
    return result


def compare_paths(src: WeightSource, *, method: str | None = None, bias_scale: float | None = None,
                   scales=DEFAULT_SCALES, width_mode: str = "zero_pad", top_k: int = 10,
                   sample: int = 0, trust: bool = False) -> CompareResult:
    """Run the three paths on one source and collect feature and attention statistics.

    Also decides whether the additive path is what the checkpoint's run did (Q15-Q17,
    ``summary['run']``) and whether the attention statistics are informative
    (``summary['attention']['information']``).
    """
    size = memory_bytes(src.cfg, src.lidar_weights.shape[0])
    release_free_memory(size)
    semantics = run_semantics(src, trust)
    from aqr_cli.analysis.attention import CrossAttentionWeights, compare_attention, query_groups
    from aqr_cli.analysis.features import apply_multiplicative, compare_features
    from aqr_cli.analysis.maps import build_renderer, sparse_bias
    from aqr_cli.analysis.render import warn_maps
    from aqr_cli.analysis.sweep import sweep_paths, sweep_result, unit_bias
    from aqr_cli.analysis.attention import align_width, project_keys
    from aqr_cli.core.embeddings import build_memory
    from aqr_cli.core.modulator import FeatureModulator

    if src.features is None:
        raise MissingPartError(src.label, "features", "holds no features to modulate")
    if src.pts_pers is None:
        raise MissingPartError(src.label, "camera_cells", "camera cells unknown (a dump stores no "
                               "pts_pers)")
    bev, cam = src.features
    renderer = build_renderer(src, method or src.cfg.renderer_config.get("render_method", "gaussian"))
    modulator = FeatureModulator(**{k: v for k, v in src.cfg.modulator_config.items() if k != "type"})
    pers = src.pts_pers.clamp(min=-1)
    mult = apply_multiplicative(renderer, modulator, src.lidar_weights, src.camera_weights,
                                src.pts_bev, pers, bev, cam)
    warn_maps(src, {renderer.render_method: (mult["bev_map"], mult["pers_map"])})
    bev_masks, cam_masks, labels = box_masks(src)
    memory = (src.memory if src.memory is not None else build_memory(bev, cam)).transpose(0, 1)
    # The additive path's features are read back from the memory the decoder attends to, so
    # its (zero) change is measured on what the decoder reads, not on the input tensor itself.
    bev_add, cam_add = split_memory(memory, bev.shape, cam.shape)
    feats = compare_features(bev, cam, bev_multiplicative=mult["bev"], cam_multiplicative=mult["camera"],
                             bev_additive=bev_add, cam_additive=cam_add,
                             bev_gain=mult["bev_gain"], cam_gain=mult["pers_gain"],
                             bev_weight_map=mult["bev_map"], cam_weight_map=mult["pers_map"],
                             bev_masks=bev_masks, cam_masks=cam_masks, labels=labels)
    del bev_add, cam_add
    sb, gen = sparse_bias(src, bias_scale)
    query_pos, key_pos = _embeddings_for(src)
    modulated = build_memory(mult.pop("bev"), mult.pop("camera")).transpose(0, 1)
    key_pos = key_pos.transpose(0, 1)
    weights = CrossAttentionWeights.resolve(src.head_state or None, int(query_pos.shape[-1]))
    num_bev = src.cfg.bev_shape[0] * src.cfg.bev_shape[1]
    selected = select_queries(src, sample=sample)
    keep = [s["query"] for s in selected]
    groups = query_groups(src.lidar_weights, src.camera_weights, query_xy(src),
                          src.boxes, src.box_labels)
    with torch.no_grad():
        # The baseline keys are projected once, for the comparison and the sweep.
        mem, _ = align_width(memory, int(query_pos.shape[-1]), width_mode)
        base_keys = None if mem is None else project_keys(mem, weights, add=key_pos)
        del mem
        release_free_memory(size)
        # The sweep's scales run in the comparison's pass: they share its baseline (logits
        # matmul, softmax and statistics of every chunk) instead of repeating it.
        unit = unit_bias(sb)
        swept, extra = sweep_paths(unit, scales, gen.max_bias) if scales else ([], [])
        att = compare_attention(query_pos, memory, key_pos, num_bev=num_bev, bias=sb,
                                modulated_memory=modulated, weights=weights, width_mode=width_mode,
                                top_k=top_k, keep_rows=keep, base_keys=base_keys, extra_paths=extra)
        del memory, modulated, base_keys
        sweep = None
        if scales and att.status == "ok":
            sweep = sweep_result(att, unit, swept, extra, gen.max_bias, groups=groups)
        att = att.select([p for p in att.paths if p not in {x.name for x in extra}])
    res = CompareResult(source=_without_tensors(src), features=feats, attention=att, sweep=sweep,
                        gains=(mult["bev_gain"], mult["pers_gain"]), selected=selected, bias=sb,
                        bias_scale=gen.effective_scale(), max_scale=float(gen.max_scale))
    att_doc = _attention_doc(att, groups)
    att_doc["information"] = attention_information(att_doc, weights, att.projection)
    feats["additive"]["note"] = (
        "measured on the memory the decoder attends to under the additive path (read back per "
        "modality): the additive path hands the decoder the original features, so no feature "
        "changes; what it changes is the attention, and its effect on what the decoder reads is "
        "in decoder_readout")
    res.summary = {
        "run": semantics,
        "features": feats,
        "decoder_readout": _readout_doc(att),
        "attention": att_doc,
        "sweep": sweep.to_dict() if sweep is not None else None,
        "settings": {
            "source": {"label": src.label, "kind": src.kind, "settings_from": src.settings_from,
                       "iteration": src.iteration, "notes": list(src.notes)},
            "bev_shape": list(src.cfg.bev_shape), "pers_shape": list(src.cfg.pers_shape),
            "render_method": renderer.render_method,
            "modulator": dict(modulator_config_doc(src)),
            "bias_scale_effective": gen.effective_scale(), "bias_window": gen.window_size,
            "bias_dtype": "float16" if gen.fp16 else "float32",
            "attention_weights": weights.describe(),
            "feature_width": int(bev.shape[1]), "embedding_width": int(query_pos.shape[-1]),
            "selected_queries": selected, "scales": list(scales) if scales else [],
        },
    }
    return res


def _without_tensors(src: WeightSource) -> WeightSource:
    """The source as the views need it: without features, memory and embeddings (116 MB at
    1600x640), which figure workers forked from a process holding the result would inherit."""
    return dataclasses.replace(src, features=None, memory=None, modulated=None, query_embed=None,
                               pos_embed=None)


def _readout_doc(att) -> dict | None:
    """The attention output of each path against the baseline's (what the decoder reads)."""
    if att.status != "ok" or not att.readout:
        return None
    doc = {p: att.readout[p] for p in ("multiplicative", "additive") if p in att.readout}
    doc["definition"] = ("per query, the cross-attention output before out_proj: per head p_h "
                         "(W_v v + b_v), heads concatenated; values = memory (the modulated memory "
                         "for multiplicative); relative_change = |r - r_baseline| / |r_baseline|")
    return doc


def modulator_config_doc(src: WeightSource) -> dict:
    return {k: v for k, v in src.cfg.modulator_config.items() if k != "type"}


def _attention_doc(att, groups) -> dict:
    """``{'baseline', 'multiplicative', 'additive'}`` summaries plus the settings."""
    doc = att.to_dict(groups)
    paths = doc.pop("paths")
    out = {p: paths.get(p) for p in ("baseline", "multiplicative", "additive")}
    out["settings"] = doc["settings"]
    return out
