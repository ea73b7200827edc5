"""What ``aqr render-weights`` computes for one source: weight maps, bias heatmaps, statistics."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from aqr_cli.analysis.maps import render_maps, sparse_bias
from aqr_cli.analysis.readings import add_readings
from aqr_cli.analysis.sources import SourceOptions, WeightSource
from aqr_cli.analysis.conditions import map_condition
from aqr_cli.analysis.stats import map_stats, preference_shares, split_dn, weight_stats
from aqr_cli.core.errors import warn_quirk

METHODS = ("gaussian", "bilinear", "direct", "distance_weighted")


@dataclass(frozen=True)
class RenderOptions(SourceOptions):
    """What ``render-weights`` draws of a loaded source (:class:`SourceOptions`, plus these)."""

    queries: str = "matching"          # query rows of the per-query panels: matching, dn, all
    save_arrays: bool = False          # also write arrays.npz


@dataclass
class RenderResult:
    """Maps [B, ...] for every sample, the sparse bias and the summary of one source."""

    source: WeightSource
    method: str
    bev_map: torch.Tensor                # [B, H, W] rendered LiDAR weight map
    pers_map: torch.Tensor               # [B, V, h, w] rendered camera weight map
    effective_lidar: torch.Tensor        # [B, Q] LiDAR weights after upstream's [0, 1] clamp
    methods: dict = field(default_factory=dict)   # method -> (bev [B,H,W], pers [B,V,h,w])
    bias_bev: torch.Tensor | None = None          # [B, H, W] signed max-|b|
    bias_pers: torch.Tensor | None = None         # [B, V, h, w] signed max-|b|
    bias_scale: float = 0.0
    summary: dict = field(default_factory=dict)
    options: RenderOptions = field(default_factory=RenderOptions)
    quirks: list = field(default_factory=list)    # QuirkWarnings of loading and rendering


def render_source(src: WeightSource, options: RenderOptions = RenderOptions(),
                  quirks: list = ()) -> RenderResult:
    """Render one loaded source as ``render-weights`` does; ``quirks``: those of its loading.

    The quirks warned while rendering are collected into ``result.quirks`` after ``quirks``
    (one per id). :func:`aqr_cli.views.render.render_outputs` turns the result into the files.
    """
    from aqr_cli.analysis.quirks import collect_quirks, merge_quirks

    method = options.method or src.cfg.renderer_config.get("render_method", "gaussian")
    with collect_quirks() as more:
        result = render_maps_and_bias(src, method, options.bias_scale, options.sample)
    result.options = options
    result.quirks = merge_quirks(list(quirks), more)
    return result


def render_maps_and_bias(src: WeightSource, method: str = "gaussian",
                         bias_scale: float | None = None, sample: int = 0) -> RenderResult:
    """Render weight maps (one method or ``'all'``), the bias heatmaps and the summary.

    ``bias_scale`` replaces the raw (checkpoint or config) scale; it is clamped as upstream
    (a clamped value is warned as Q13). All-zero camera maps and saturated maps are warned as
    Q25. ``sample``: the sample the figures draw; its own statistics go to ``summary['sample']``.
    """
    from aqr_cli.core.renderer import WeightRenderer

    methods = {}
    if method == "all":
        methods = {m: render_maps(src, m) for m in METHODS}
        main = src.cfg.renderer_config.get("render_method", "gaussian")
        bev, pers = methods[main if main in methods else "gaussian"]
    else:
        bev, pers = render_maps(src, method)
    kw = {k: v for k, v in src.cfg.renderer_config.items() if k != "type"}
    effective = WeightRenderer(**{**kw, "render_method": "direct"}).effective_bev_weights(src.lidar_weights)
    sb, gen = sparse_bias(src, bias_scale)
    hb, hp = sb.heatmaps("maxabs")
    result = RenderResult(source=src, method=method, bev_map=bev, pers_map=pers,
                          effective_lidar=effective, methods=methods, bias_bev=hb, bias_pers=hp,
                          bias_scale=gen.effective_scale())
    result.summary = summarise(result, sb, gen, sample)
    result.summary["bias"]["scale_raw"] = float(gen.bias_scale.detach().reshape(-1)[0])
    result.summary["bias"]["scale_from"] = ("--bias-scale" if bias_scale is not None else
                                           "checkpoint" if src.bias_scale is not None else "config")
    warn_scale_clamp(gen, bias_scale)
    warn_map_conditions(result)
    add_readings(result.summary, result)
    return result


def final_clamp(gen) -> float:
    """Upstream's last clamp of the bias values: +-min(5, max_scale)."""
    return min(5.0, float(gen.max_scale))


def final_clamp_value(bias_doc: dict) -> float:
    """The final clamp bound of a ``summary['bias']`` document."""
    return bias_doc.get("final_clamp") or min(5.0, float(bias_doc.get("max_scale") or 5.0))


def warn_scale_clamp(gen, requested: float | None) -> None:
    """Q13 when ``--bias-scale`` is not what the bias uses (learnable clamp) or saturates the
    final clamp (a fixed scale above min(5, max_scale) flattens every strong window)."""
    if requested is None:
        return
    eff = float(gen.effective_scale())
    if abs(eff - float(requested)) > 1e-6:
        warn_quirk("Q13", f"--bias-scale {requested:g} is outside the learnable range "
                   f"[{gen.min_scale:g}, {gen.max_scale:g}]: upstream clamps it, so the bias uses "
                   f"scale {eff:g}", requested=float(requested), effective=eff)
    elif eff > final_clamp(gen):
        warn_quirk("Q13", f"--bias-scale {requested:g} is above the final clamp "
                   f"+-{final_clamp(gen):g}: bias values of queries with |w| > "
                   f"{final_clamp(gen) / eff:.2f} are cut to +-{final_clamp(gen):g}",
                   requested=float(requested), final_clamp=final_clamp(gen))


def _clamp_of(src: WeightSource) -> float | None:
    rc = src.cfg.renderer_config
    return float(rc.get("max_weight_clamp", 1.5)) if rc.get("normalize_weights", True) else None


def warn_map_conditions(res: RenderResult) -> None:
    """Q25 for camera maps that are all zero although queries have camera cells (bilinear and
    distance_weighted are not implemented for cameras) and for maps saturated at the clamp."""
    warn_maps(res.source, res.methods or {res.method: (res.bev_map, res.pers_map)})


def warn_maps(src: WeightSource, maps: dict) -> None:
    """The Q25 warnings of :func:`warn_map_conditions` for ``{method: (bev, pers)}`` maps."""
    clamp = _clamp_of(src)
    zero = [m for m, (_, p) in maps.items()
            if src.pts_pers is not None and map_condition(p, clamp)["all_zero"]
            and bool((src.camera_weights >= 0.01).any())]
    if zero:
        warn_quirk("Q25", f"camera weight maps of {', '.join(zero)} are all zero: upstream's "
                   "perspective renderer implements only gaussian and direct, so the old scheme's "
                   "camera modulation gets an empty map whatever the camera weights",
                   methods=", ".join(zero))
    for m, (b, p) in maps.items():
        for name, arr in (("BEV", b), ("camera", p)):
            cond = map_condition(arr, clamp)
            if cond["saturated"]:
                warn_quirk("Q25", f"{m} {name} weight map is saturated: "
                           f"{100 * cond['saturated_share']:.0f}% of cells sit at the clamp "
                           f"{clamp:g}, so it no longer tells queries apart",
                           method=m, map=name, share=cond["saturated_share"])


def _per_view(pers: torch.Tensor, cw: torch.Tensor, src: WeightSource) -> list[dict]:
    out = []
    for v, name in enumerate(src.camera_names):
        row = {"view": v, "camera": name, "map_max": float(pers[:, v].max()),
               "map_mean": float(pers[:, v].mean())}
        if src.pts_pers is not None:
            sel = src.pts_pers[..., 0] == v
            if src.unseen is not None:
                sel &= ~src.unseen
            w = cw[sel]
            row.update(num_queries=int(sel.sum()),
                       weight_mean=float(w.mean()) if w.numel() else None,
                       weight_std=float(w.std()) if w.numel() > 1 else None)
        out.append(row)
    return out


def sample_summary(res: RenderResult, sample: int) -> dict:
    """Statistics of ONE sample: what the figures of ``sample`` draw."""
    src = res.source
    lw, cw = src.lidar_weights[sample:sample + 1], src.camera_weights[sample:sample + 1]
    clamp = _clamp_of(src)
    return {"index": sample, "scope": f"sample {sample} only (what the figures draw)",
            "weights": {"lidar": weight_stats(lw), "camera": weight_stats(cw)},
            "preference": preference_shares(lw, cw),
            "maps": {"bev": dict(map_stats(res.bev_map[sample], res.effective_lidar[sample]),
                                 condition=map_condition(res.bev_map[sample], clamp)),
                     "camera": dict(map_stats(res.pers_map[sample], cw),
                                    condition=map_condition(res.pers_map[sample], clamp))}}


def summarise(res: RenderResult, sb, gen, sample: int = 0) -> dict:
    """The ``summary.json`` document of one source (without the quirk list, added by the caller).

    ``weights``, ``preference``, ``maps`` and ``bias`` are batch-wide (their ``scope`` says so);
    ``sample`` holds the drawn sample's own weights, preference and maps.
    """
    src = res.source
    lw, cw = src.lidar_weights, src.camera_weights
    stats = gen.debug_statistics(sb, lw, cw)
    scope = f"batch-wide: all {src.batch_size} sample(s), {lw.numel()} queries"
    doc = {
        "source": {"label": src.label, "kind": src.kind, "settings_from": src.settings_from,
                   "iteration": src.iteration, "batch_size": src.batch_size,
                   "queries": split_dn(src.num_queries, src.cfg.num_query), "notes": list(src.notes)},
        "settings": {
            "bev_shape": list(src.cfg.bev_shape), "pers_shape": list(src.cfg.pers_shape),
            "pc_range": list(src.cfg.pc_range), "render_method": res.method,
            "renderer": _jsonable(src.cfg.renderer_config),
            "attention_bias": _jsonable(src.cfg.attention_bias_config),
            "camera_names": list(src.camera_names),
        },
        "weights": {"scope": scope, "lidar": weight_stats(lw), "camera": weight_stats(cw),
                    "lidar_after_renderer_clamp": weight_stats(res.effective_lidar)},
        "preference": {"scope": scope, **preference_shares(lw, cw)},
        "maps": {"bev": map_stats(res.bev_map, res.effective_lidar),
                 "camera": map_stats(res.pers_map, cw),
                 "camera_source": "rendered" if src.pts_pers is not None else
                                  "stored in the dump" if src.stored_maps is not None else "unknown",
                 "camera_views": _per_view(res.pers_map, cw, src)},
        "bias": {"scale_raw": src.bias_scale, "scale_effective": res.bias_scale,
                 "learnable": gen.learnable_scale, "min_scale": gen.min_scale,
                 "max_scale": gen.max_scale, "window_size": gen.window_size,
                 "all_features": stats["all_entries"], "in_window": stats["in_window"],
                 "camera_cells_known": src.pts_pers is not None, "final_clamp": final_clamp(gen),
                 "scope": scope},
        "sample": sample_summary(res, sample),
    }
    doc["maps"]["scope"] = scope
    if res.methods:
        doc["methods"] = {m: {"bev": map_stats(b, res.effective_lidar), "camera": map_stats(p, cw)}
                          for m, (b, p) in res.methods.items()}
    if src.stored_maps is not None:
        doc["fidelity"] = fidelity(res, src)
    return doc


def fidelity(res: RenderResult, src: WeightSource) -> dict:
    """Max |re-rendered - stored| of a dump's weight maps (camera only when cells are known)."""
    sb, sp = src.stored_maps
    out = {"bev_max_abs_diff": float((res.bev_map - sb).abs().max()) if res.bev_map.shape == sb.shape else None,
           "camera_max_abs_diff": None}
    if src.pts_pers is not None and res.pers_map.shape == sp.shape:
        out["camera_max_abs_diff"] = float((res.pers_map - sp).abs().max())
    return out


def _jsonable(d: dict) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}
