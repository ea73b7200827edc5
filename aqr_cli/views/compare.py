"""What ``aqr compare-modes`` writes and shows for a :class:`~aqr_cli.analysis.compare.CompareResult`:
the figures with their file names and titles, ``summary.json`` and the terminal report
(read-this-first block, feature, readout and attention tables).

    result = aqr_cli.analysis.compare.compare_source(source, CompareOptions(...))
    outputs = aqr_cli.views.compare.compare_outputs(result)
"""

from __future__ import annotations

from dataclasses import asdict

from aqr_cli.views.outputs import PLOTS, Outputs, lazy
from aqr_cli.views.terminal import Report

# what a figure worker loads before the first figure of this view (aqr_cli.io.workers)
FIGURE_MODULES = ("aqr_cli.views.outputs:warm_figures", "aqr_cli.plots.compare", "aqr_cli.plots.weights")

FILES = {
    "histograms": "feature_histograms.png",
    "gain": "gain_map.png",
    "bias": "bias_heatmaps.png",
    "attention": "attention_{role}_q{q}.png",
    "sweep": "sweep.png",
    "summary_png": "summary.png",
    "summary": "summary.json",
}


def compare_outputs(result) -> Outputs:
    """The files of one source, in writing order: the figures of ``result.options.sample`` and
    ``summary.json`` (also ``outputs.document``)."""
    from aqr_cli.analysis.caption import describe_run

    opts = result.options
    caption = describe_run(result.source, opts.sample, asdict(opts), result.bias_scale)
    files: dict = figures(result, opts.sample, caption, opts.bias_range)
    doc = summary_document(result, caption, [*files, FILES["summary"]])
    files[FILES["summary"]] = doc
    return Outputs(files=files, document=doc)


def summary_document(result, caption, files: list[str]) -> dict:
    """``summary.json`` of one source: the analysis summary with the quirks, the caption and the
    file list; NaN/Inf written as null (a note says how many)."""
    from aqr_cli.io.jsonsafe import finite_json

    doc = dict(result.summary)
    doc["quirks"] = [{"id": q.quirk_id, "message": q.message} for q in result.quirks]
    doc["caption"] = caption.to_dict()
    doc["files"] = list(files)
    doc, n = finite_json(doc)
    if n:
        doc.setdefault("notes", []).append(f"{n} non-finite statistics (NaN/Inf) were written as null")
    return doc


def figures(res, b: int, caption, bias_range: str = "fixed") -> dict:
    """``{file name: Figure}``: feature histograms, gain map, bias heatmaps, attention of the
    selected queries, sweep and the one-page summary, all of sample ``b`` and subtitled with
    ``caption``."""
    from aqr_cli.analysis.sources import sample_rig
    from aqr_cli.plots.limits import bias_limit

    src = res.source
    sub, batch_sub = caption.subtitle(), caption.subtitle(batch=True)
    boxes = src.boxes[b] if src.boxes else None
    labels = src.box_labels[b] if src.box_labels else None
    run = res.summary.get("run") or {}
    hb, hp = res.bias.heatmaps("maxabs")
    hb, hp = hb[b].numpy(), hp[b].numpy()
    figs = {
        FILES["histograms"]: lazy(
            PLOTS + "compare:feature_histogram_figure",
            res.features, title="Feature values before and after AQR (batch-wide)", subtitle=batch_sub),
        FILES["gain"]: lazy(
            PLOTS + "compare:gain_map_figure",
            res.gains[0][b].numpy(), res.gains[1][b].numpy(), src.cfg.pc_range,
            camera_names=src.camera_names, boxes=boxes, box_labels=labels,
            gain_stats={m: res.features["multiplicative"][m]["gain"] for m in ("bev", "camera")},
            title="Multiplicative path, per-cell gain g = m + r (histogram batch-wide)", subtitle=sub),
        FILES["bias"]: lazy(
            PLOTS + "weights:bias_heatmap_figure",
            hb, hp, src.cfg.pc_range, res.bias_scale,
            limit=bias_limit(res.max_scale, bias_range, hb, hp), range_mode=bias_range,
            camera_names=src.camera_names, boxes=boxes, box_labels=labels,
            rig=sample_rig(src, b) if boxes is not None else None,
            title=f"Additive path: AQR attention bias (effective scale {res.bias_scale:.3g})",
            subtitle=sub, notes=[run.get("statement", "")]),
    }
    if res.attention.status == "ok":
        figs.update(_attention_figures(res, b, sub, boxes, labels))
    if res.sweep is not None:
        figs[FILES["sweep"]] = lazy(
            PLOTS + "compare:sweep_figure",
            res.sweep.to_dict(), title="Bias-scale sweep of the additive path (all queries of the batch)",
            subtitle=batch_sub, notes=_warnings(res))
    figs[FILES["summary_png"]] = lazy(
        PLOTS + "compare:summary_figure",
        res.summary, title="Multiplicative vs additive (batch-wide)", subtitle=batch_sub,
        notes=_notes(res), warnings=_warnings(res))
    return figs


def _attention_figures(res, b: int, sub: str, boxes, labels) -> dict:
    """The cross-attention page of each selected query of sample ``b``."""
    from aqr_cli.analysis.placement import query_xy

    src, att = res.source, res.attention
    xy = query_xy(src)[b]
    figs = {}
    for i, pick in enumerate(res.selected):
        q = pick["query"]
        rows = {p: att.rows[p][b, i].numpy() for p in att.rows}
        stats = {p: {m: float(v[b, q]) for m, v in att.per_query[p].items()} for p in att.per_query}
        cell = None if (src.unseen is not None and bool(src.unseen[b, q])) else src.pts_pers[b, q].tolist()
        flag = " - SENTINEL: no camera sees it (Q3), camera cell is CAM_FRONT (0, 0)" if pick["sentinel"] else ""
        figs[FILES["attention"].format(role=pick["slug"], q=q)] = lazy(
            PLOTS + "compare:attention_heatmap_figure",
            rows, src.cfg.bev_shape, src.cfg.pers_shape, src.cfg.pc_range,
            query_xy=xy[q].tolist(), query_cell=cell, query_index=q,
            stats=stats, boxes=boxes, box_labels=labels, camera_names=src.camera_names,
            title=f"Cross-attention of query {q}, {pick['role']} (LiDAR w "
                  f"{float(src.lidar_weights[b, q]):+.2f}, camera w "
                  f"{float(src.camera_weights[b, q]):+.2f}){flag}",
            subtitle=sub, notes=[f"WARNING: {w}" for w in _warnings(res)])
    return figs


def _warnings(res) -> list[str]:
    """What must be read before any number of the summary page: run semantics, uninformative
    attention."""
    out = []
    run = res.summary.get("run") or {}
    if run.get("additive_reached_attention") is False:
        ids = ", ".join(f["id"] for f in run.get("findings", []))
        out.append(f"{run['statement']} ({ids})")
    info = res.summary["attention"].get("information") or {}
    if info.get("informative") is False:
        out.append(info["statement"])
    return out


def _notes(res) -> list[str]:
    s = res.summary["settings"]
    out = [f"features {s['feature_width']} channels, embeddings {s['embedding_width']}; "
           f"render {s['render_method']}, bias window {s['bias_window']}, "
           f"scale {s['bias_scale_effective']:.3f} ({s['bias_dtype']})"]
    run = res.summary.get("run") or {}
    if run.get("additive_reached_attention") is not False and run.get("statement"):
        out.append(run["statement"])
    out += [f"note: {n}" for n in s["source"]["notes"]]
    return out


def _fmt(x, spec=".3f") -> str:
    return "-" if x is None else format(x, spec)


def report(docs: list, names: list, out) -> Report:
    """The terminal report: feature and attention tables on stdout, notes and quirks on stderr
    (the command prints the ``--json`` document). ``docs``: the summary documents, ``names``
    their subfolders."""
    rep = Report()
    for d, n in zip(docs, names):
        label = n or d["settings"]["source"]["label"]
        meaning = meaning_pairs(d)
        if meaning:
            rep.kv(meaning, title=f"read this first: {label}")
        rep.table(FEATURE_COLUMNS, feature_rows(d), title=f"features: {label}", right=FEATURE_COLUMNS[1:])
        readout = readout_rows(d)
        if readout:
            rep.table(READOUT_COLUMNS, readout,
                      title=f"what the decoder reads (cross-attention output vs baseline): {label}",
                      right=READOUT_COLUMNS[1:])
        at = d["attention"]
        if at.get("baseline"):
            rep.table(ATTENTION_COLUMNS, attention_rows(at),
                      title=f"attention (mean over queries): {label}", right=ATTENTION_COLUMNS[1:])
        else:
            rep.note(f"attention skipped: {at['settings'].get('reason')}", source=n or None)
        for note in d["settings"]["source"]["notes"]:
            rep.note(note, source=n or None)
        aw = d["settings"]["attention_weights"]
        rep.note(f"attention projections: {aw.get('note') or aw.get('source')}", source=n or None)
        rep.quirks(d["quirks"], source=n or None)
    rep.wrote(sum(len(d["files"]) for d in docs), out)
    return rep


FEATURE_COLUMNS = ["path / modality", "mean before", "mean after", "relative change", "cosine",
                   "attenuated", "amplified", "small-object energy kept"]
ATTENTION_COLUMNS = ["path", "entropy/log F", "max attn", "> 0.9", "window mass", "LiDAR share",
                     "mean |d attn|", "KL(base||path)", "top-k overlap"]
READOUT_COLUMNS = ["path", "relative change mean", "median", "cosine mean"]


def meaning_pairs(d: dict) -> list[tuple[str, str]]:
    """What the numbers can and cannot say, in plain words, shown before the tables."""
    pairs = []
    run = d.get("run") or {}
    if run.get("statement"):
        pairs.append(("additive path", run["statement"]))
    info = (d.get("attention") or {}).get("information") or {}
    if info.get("statement") and not info.get("informative", True):
        pairs.append(("attention", info["statement"]))
    return pairs


def readout_rows(d: dict) -> list[list[str]]:
    ro = d.get("decoder_readout") or {}
    return [[path, _fmt(r["relative_change"]["mean"], ".2%"), _fmt(r["relative_change"]["median"], ".2%"),
             _fmt(r["cosine"]["mean"], ".4f")]
            for path, r in ((p, ro.get(p)) for p in ("multiplicative", "additive")) if r]


def feature_rows(d: dict) -> list[list[str]]:
    rows = []
    for path in ("multiplicative", "additive"):
        for mod in ("bev", "camera"):
            f = d["features"][path][mod]
            gain = f.get("gain") or {}
            energy = (f.get("energy") or {}).get("small") or {}
            rows.append([f"{path} {mod}", _fmt(f["before"]["mean"]), _fmt(f["after"]["mean"]),
                         _fmt(f["relative_change"], ".2%"), _fmt(f["cosine_similarity"], ".4f"),
                         _fmt(gain.get("share_attenuated"), ".1%"),
                         _fmt(gain.get("share_amplified"), ".1%"), _fmt(energy.get("retained"), ".2f")])
    return rows


def attention_rows(at: dict) -> list[list[str]]:
    rows = []
    for p in ("baseline", "multiplicative", "additive"):
        m = (at.get(p) or {}).get("overall") or {}

        def g(k, stat="mean", _m=m):
            return (_m.get(k) or {}).get(stat)
        rows.append([p, _fmt(g("entropy_norm"), ".4f"), _fmt(g("max_attention"), ".4f"),
                     _fmt(m.get("share_max_gt_0.9"), ".1%"), _fmt(g("window_mass"), ".4f"),
                     _fmt(g("lidar_share"), ".3f"), _fmt(g("mean_abs_delta"), ".2e"),
                     _fmt(g("kl_from_reference"), ".2e"), _fmt(g("topk_overlap"), ".2f")])
    return rows
