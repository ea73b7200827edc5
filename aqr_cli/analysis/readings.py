"""The researchers' readings of one rendered source (spec 10.1 items 1, 2, 5, 6), added to
``summary.json``: DN vs matching statistics, preference by class and size, weight coverage on
objects, and bias health."""

from __future__ import annotations

from aqr_cli.analysis.health import scale_health, share_health
from aqr_cli.analysis.maps import render_maps, sparse_bias
from aqr_cli.analysis.objects import preference_by_object, weights_by_query_group
from aqr_cli.analysis.placement import box_masks, query_xy


def add_readings(doc: dict, res) -> None:
    """Add ``weights.by_query_group``, ``preference.by_class/by_size``, ``coverage`` and
    ``bias.health`` to the summary ``doc`` of a :class:`~aqr_cli.analysis.render.RenderResult`."""
    src = res.source
    lw, cw = src.lidar_weights, src.camera_weights
    doc["weights"]["by_query_group"] = weights_by_query_group(lw, cw, src.cfg.num_query)
    if doc["weights"]["by_query_group"]["dn"] is not None:
        maps_and_bias_by_group(doc, res)
    if src.boxes:
        obj = preference_by_object(lw, cw, query_xy(src), src.boxes, src.box_labels,
                                   num_query=src.cfg.num_query)
        doc["preference"].update(by_class=obj["by_class"], by_size=obj["by_size"],
                                 object_assignment={k: obj[k] for k in
                                                    ("radius_m", "scope", "bootstrap_samples")})
        doc["coverage"] = coverage(res)
    bias = doc["bias"]
    cfg = src.cfg.attention_bias_config
    doc["bias"]["health"] = scale_health(
        bias["scale_effective"], raw=bias.get("scale_raw"), learnable=bool(bias["learnable"]),
        min_scale=float(bias["min_scale"]), max_scale=float(bias["max_scale"]),
        init=cfg.get("bias_scale"), trained=bias.get("scale_from") == "checkpoint"
    ) + share_health(bias["in_window"])


def coverage(res) -> dict:
    """Rendered weight mass inside GT boxes / total: BEV, all cameras and each camera."""
    from aqr_cli.analysis.features import weight_coverage

    src = res.source
    bev_masks, cam_masks, labels = box_masks(src)
    out = {"bev": weight_coverage(res.bev_map, bev_masks, labels),
           "camera": None, "camera_views": None}
    if cam_masks is not None and src.pts_pers is not None:
        out["camera"] = weight_coverage(res.pers_map, cam_masks, labels)
        out["camera_views"] = {
            name: weight_coverage(res.pers_map[:, v:v + 1], [m[:, v:v + 1] for m in cam_masks], labels)
            for v, name in enumerate(src.camera_names)}
    return out


def subset(src, rows: slice):
    """The source restricted to query ``rows`` (per-query tensors sliced, the rest shared)."""
    import dataclasses

    def cut(t):
        return None if t is None else t[:, rows]

    return dataclasses.replace(src, lidar_weights=cut(src.lidar_weights),
                               camera_weights=cut(src.camera_weights), pts_bev=cut(src.pts_bev),
                               pts_idx=cut(src.pts_idx), pts_pers=cut(src.pts_pers),
                               unseen=cut(src.unseen))


def maps_and_bias_by_group(doc: dict, res) -> None:
    """``maps.by_query_group`` and ``bias.by_query_group`` (matching, dn, all): the maps and the
    in-window bias each query group alone would give (``all`` is what upstream rendered)."""
    from aqr_cli.analysis.objects import query_rows
    from aqr_cli.analysis.stats import map_stats

    src = res.source
    method = res.method if res.method != "all" else src.cfg.renderer_config.get("render_method", "gaussian")
    maps = {"all": {"bev": doc["maps"]["bev"], "camera": doc["maps"]["camera"]}}
    bias = {"all": doc["bias"]["in_window"]}
    for name in ("matching", "dn"):
        sub = subset(src, query_rows(src.num_queries, src.cfg.num_query)[name])
        bev, pers = render_maps(sub, method)
        maps[name] = {"bev": map_stats(bev, sub.lidar_weights.clamp(0, 1)),
                      "camera": map_stats(pers, sub.camera_weights) if src.pts_pers is not None
                      else None}  # camera cells unknown: only the dump's stored (all-query) maps
        sb, gen = sparse_bias(sub, doc["bias"]["scale_raw"])
        bias[name] = gen.debug_statistics(sb, sub.lidar_weights, sub.camera_weights)["in_window"]
    doc["maps"]["by_query_group"] = maps
    doc["bias"]["by_query_group"] = bias
