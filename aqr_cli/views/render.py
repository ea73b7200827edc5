"""What ``aqr render-weights`` writes and shows for a :class:`~aqr_cli.analysis.render.RenderResult`:
the figures with their file names and titles, ``arrays.npz``, ``summary.json``, the evolution
over a run's dumps, and the terminal report.

A notebook gets exactly the command's files with two calls::

    result = aqr_cli.analysis.render.render_source(source, RenderOptions(...))
    outputs = aqr_cli.views.render.render_outputs(result)
    aqr_cli.views.outputs.write_outputs(outputs, folder)
"""

from __future__ import annotations

from dataclasses import asdict

from aqr_cli.views import readings
from aqr_cli.views.outputs import PLOTS, Arrays, Outputs, lazy
from aqr_cli.views.terminal import Report

# what a figure worker loads before the first figure of this view (aqr_cli.io.workers)
FIGURE_MODULES = ("aqr_cli.views.outputs:warm_figures", "aqr_cli.plots.weights",
                  "aqr_cli.plots.readings", "aqr_cli.plots.evolution")

# Output files of one source (documented in the README).
FILES = {
    "bev": "bev_weights.png",
    "camera": "camera_weights.png",
    "bias": "bias_heatmaps.png",
    "queries": "query_weights.png",
    "methods": "render_methods.png",
    "summary": "summary.json",
    "arrays": "arrays.npz",
}
EVOLUTION_PNG = "evolution.png"
EVOLUTION_JSON = "evolution.json"


def render_outputs(result) -> Outputs:
    """The files of one source, in writing order: the figures of ``result.options.sample``,
    the readings figures, ``arrays.npz`` (with ``save_arrays``) and ``summary.json`` (also
    ``outputs.document``)."""
    from aqr_cli.analysis.caption import describe_run

    opts = result.options
    caption = describe_run(result.source, opts.sample, asdict(opts), result.bias_scale)
    files: dict = {FILES[key]: fig for key, fig in
                   weight_figures(result, opts.sample, caption, opts.bias_range, opts.queries).items()}
    files.update(readings.readings_figures(result, caption, opts.queries))
    if opts.save_arrays:
        files[FILES["arrays"]] = Arrays(_arrays(result))
    doc = summary_document(result, caption, [*files, FILES["summary"]])
    files[FILES["summary"]] = doc
    return Outputs(files=files, document=doc)


def summary_document(result, caption, files: list[str]) -> dict:
    """``summary.json`` of one source: the analysis summary with the caption, the quirks in
    number order and the file list; NaN/Inf written as null (a note says how many)."""
    from aqr_cli.analysis.quirks import quirk_number
    from aqr_cli.io.jsonsafe import finite_json

    doc = dict(result.summary)
    doc["caption"] = caption.to_dict()
    doc["quirks"] = [_quirk_doc(q) for q in sorted(result.quirks, key=lambda q: quirk_number(q.quirk_id))]
    doc["files"] = list(files)
    doc, n = finite_json(doc)
    if n:
        doc.setdefault("source", {}).setdefault("notes", []).append(
            f"{n} non-finite statistics (NaN/Inf) were written as null")
    return doc


def _quirk_doc(q) -> dict:
    detail = {k: (v if isinstance(v, (int, float, str, bool, type(None))) else str(v))
              for k, v in q.detail.items()}
    return {"id": q.quirk_id, "message": q.message, "detail": detail}


def _arrays(res) -> dict:
    src = res.source
    out = dict(lidar_weights=src.lidar_weights, camera_weights=src.camera_weights,
               pts_bev=src.pts_bev, bev_weight_map=res.bev_map, pers_weight_map=res.pers_map,
               bias_bev_heatmap=res.bias_bev, bias_pers_heatmap=res.bias_pers,
               lidar_weights_after_renderer_clamp=res.effective_lidar)
    if src.pts_pers is not None:
        out["pts_pers"] = src.pts_pers
    return {k: v.detach().cpu().numpy() for k, v in out.items()}


def weight_figures(res, b: int, caption, bias_range: str = "fixed",
                   queries: str = "matching") -> dict:
    """``{FILES key: Figure}`` of one source for sample ``b``: BEV map, per-query panel, bias
    heatmaps, camera maps (rendered, or the dump's stored ones) and the methods page.

    Every figure carries ``caption`` (source kind, configuration, sample, changed settings) as
    its subtitle and draws sample ``b`` only.
    """
    import torch

    from aqr_cli.analysis.objects import query_rows
    from aqr_cli.analysis.render import final_clamp_value
    from aqr_cli.analysis.sources import sample_rig
    from aqr_cli.analysis.stats import preference_shares
    from aqr_cli.plots.limits import bias_limit

    src = res.source
    pc = src.cfg.pc_range
    sub = caption.subtitle()
    act = caption.activation
    boxes = src.boxes[b] if src.boxes else None
    labels = src.box_labels[b] if src.box_labels else None
    rig = sample_rig(src, b) if boxes is not None else None
    rows = query_rows(src.num_queries, src.cfg.num_query)[queries]
    lw, cw = src.lidar_weights[b, rows].numpy(), src.camera_weights[b, rows].numpy()
    clamp = src.cfg.renderer_config.get("max_weight_clamp", 1.5) \
        if src.cfg.renderer_config.get("normalize_weights", True) else None
    method = res.method if res.method != "all" else src.cfg.renderer_config.get("render_method", "gaussian")
    bias = res.summary["bias"]
    lim = bias_limit(bias["max_scale"], bias_range, res.bias_bev[b].numpy(),
                             res.bias_pers[b].numpy())
    figs = {
        "bev": lazy(PLOTS + "weights:bev_weight_figure", res.bev_map[b].numpy(), lw, src.pts_bev[b, rows].numpy(), pc,
                                         boxes=boxes, box_labels=labels, clamp=clamp, activation=act,
                                         method=method, title=f"LiDAR weights, {method} render",
                                         subtitle=sub),
        "queries": lazy(
            PLOTS + "weights:query_panel_figure",
            lw, cw, preference_shares(torch.from_numpy(lw), torch.from_numpy(cw)), activation=act,
            title="Per-query AQR weights", subtitle=sub),
        "bias": lazy(
            PLOTS + "weights:bias_heatmap_figure",
            res.bias_bev[b].numpy(), res.bias_pers[b].numpy(), pc, res.bias_scale, limit=lim,
            range_mode=bias_range, camera_names=src.camera_names, boxes=boxes, box_labels=labels,
            rig=rig, title=f"AQR attention bias (window {bias['window_size']}, effective scale "
                  f"{res.bias_scale:.3g}, final clamp +-{final_clamp_value(bias):g})",
            subtitle=sub,
            notes=() if src.pts_pers is not None else
            ["camera cells unknown (pass --checkpoint): camera bias not computed"]),
    }
    if src.pts_pers is not None:
        figs["camera"] = lazy(
            PLOTS + "weights:camera_weight_figure",
            res.pers_map[b].numpy(), cw, src.pts_pers[b, rows].numpy(), camera_names=src.camera_names,
            unseen=None if src.unseen is None else src.unseen[b, rows].numpy(), clamp=clamp,
            activation=act, method=method, boxes=boxes, rig=rig,
            title=f"Camera weight maps, {method} render", subtitle=sub)
    elif src.stored_maps is not None:
        figs["camera"] = lazy(
            PLOTS + "weights:camera_weight_figure",
            src.stored_maps[1][b].numpy(), cw, None, camera_names=src.camera_names, clamp=clamp,
            activation=act, boxes=boxes, rig=rig, title="Camera weight maps as stored in the dump",
            subtitle=sub)
    if res.methods:
        figs["methods"] = lazy(
            PLOTS + "weights:methods_figure",
            {m: (bb[b].numpy(), pp[b].numpy()) for m, (bb, pp) in res.methods.items()}, pc,
            camera_names=src.camera_names, clamp=clamp, title="Renderer methods", subtitle=sub)
    return figs


def evolution_docs(docs: list, names: list) -> list[tuple[dict, str]]:
    """The dumps among the sources, in iteration order (file names need not follow it, Q38):
    an evolution is over one run's dumps only, never checkpoints or synthetic scenes."""
    dumps = [(d, n) for d, n in zip(docs, names) if d["source"]["kind"] == "dump"]
    if len(dumps) < 2:
        return []
    return sorted(dumps, key=lambda dn: (dn[0]["source"]["iteration"] is None,
                                         dn[0]["source"]["iteration"] or 0))


def evolution_outputs(docs: list, names: list) -> Outputs:
    """``evolution.json`` / ``evolution.png`` over the dumps (two or more), in iteration order;
    no files otherwise. ``docs``: the summary documents, ``names`` their subfolders."""
    pairs = evolution_docs(docs, names)
    if not pairs:
        return Outputs()
    rows = [_evolution_row(d, n) for d, n in pairs]
    act = {d.get("caption", {}).get("activation", "tanh") for d, _ in pairs}
    fig = lazy(PLOTS + "evolution:evolution_figure", rows, activation=act.pop() if len(act) == 1 else "mixed")
    return Outputs(files={EVOLUTION_JSON: rows, EVOLUTION_PNG: fig})


def _evolution_row(doc: dict, name: str) -> dict:
    """One dump's point of evolution.json: weight statistics of its matching queries (DN rows
    apart, ``dn_*`` when present), map maxima and bias readings."""
    m, bias = doc["maps"], doc["bias"]
    groups = doc["weights"].get("by_query_group") or {}
    g = groups.get("matching") or {"lidar": doc["weights"]["lidar"], "camera": doc["weights"]["camera"],
                                   "preference": doc["preference"]}
    row = {"name": name, "iteration": doc["source"]["iteration"], "queries": "matching",
           "lidar_mean": g["lidar"]["mean"], "lidar_std": g["lidar"]["std"],
           "camera_mean": g["camera"]["mean"], "camera_std": g["camera"]["std"],
           "prefer_lidar": g["preference"]["prefer_lidar"],
           "bev_map_max": m["bev"]["max"], "camera_map_max": m["camera"]["max"],
           "bias_in_window_mean": bias["in_window"]["overall"]["mean"],
           "bias_in_window_std": bias["in_window"]["overall"]["std"],
           "bias_scale": bias["scale_effective"]}
    dn = groups.get("dn")
    if dn:
        row.update(dn_count=dn["count"], dn_lidar_mean=dn["lidar"]["mean"],
                   dn_camera_mean=dn["camera"]["mean"])
    return row


SUMMARY_CAPTION = ("batch-wide numbers (all samples of each source): w = mean±std of the "
                   "per-query weights, LiDAR>cam = share of queries preferring LiDAR, bias in "
                   "window = mean±std of the bias inside the query windows, scale = effective "
                   "bias scale; summary.json holds the --sample's own numbers under 'sample'")
SUMMARY_COLUMNS = ["source", "Q", "LiDAR w", "camera w", "LiDAR>cam", "BEV max", "bias in window",
                   "scale"]


def _summary_row(d: dict, name: str) -> list[str]:
    w = d["weights"]
    iw = d["bias"]["in_window"]["overall"]
    return [name or d["source"]["label"], str(d["source"]["queries"]["num_queries"]),
            f"{w['lidar']['mean']:+.3f}±{w['lidar']['std']:.3f}",
            f"{w['camera']['mean']:+.3f}±{w['camera']['std']:.3f}",
            f"{100 * d['preference']['prefer_lidar']:.1f}%", f"{d['maps']['bev']['max']:.3f}",
            f"{iw['mean']:+.3f}±{iw['std']:.3f}", f"{d['bias']['scale_effective']:.3f}"]


def report(docs: list, names: list, out, n_files: int) -> Report:
    """The terminal report: a table on stdout; notes and quirks on stderr (the command prints
    the ``--json`` document). ``n_files``: the files written under ``out``."""
    rep = Report()
    rep.table(SUMMARY_COLUMNS, [_summary_row(d, n) for d, n in zip(docs, names)],
              title=f"aqr render-weights -> {out}", right=SUMMARY_COLUMNS[1:], caption=SUMMARY_CAPTION)
    for d, n in zip(docs, names):
        label = n or None
        for note in d["source"]["notes"]:
            rep.note(note, source=label)
        rep.quirks(d["quirks"], source=label)
        readings.report(rep, d, label)
        fid = d.get("fidelity")
        if fid:
            rep.note(f"re-render vs dump: BEV max |diff| {fid['bev_max_abs_diff']:.2e}"
                     + (f", camera {fid['camera_max_abs_diff']:.2e}" if fid["camera_max_abs_diff"] is not None
                        else ", camera not re-rendered (no --checkpoint)"), source=label)
    rep.wrote(n_files, out)
    return rep
