"""``aqr render-weights``: AQR weight maps, camera maps and bias heatmaps as PNG + summary.json.

Only typer is imported at module level; torch and matplotlib load inside the command.
"""

from __future__ import annotations

from pathlib import Path

import typer

from aqr_cli.cli import _readings_view as readings_view
from aqr_cli.cli import _sources as S
from aqr_cli.cli._common import UserError, run_guarded
from aqr_cli.cli.app import app

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


@app.command("render-weights", short_help=(
    "AQR weights rendered to BEV and camera "
    "maps and attention-bias heatmaps (PNG + JSON)."))
def render_weights_command(
    sources: S.Sources = None,
    out: S.Out = ...,
    synthetic: S.Synthetic = False,
    checkpoint: S.Checkpoint = None,
    features: S.Features = None,
    weights: S.Weights = "generator",
    reference: S.Reference = "800x320",
    rig: S.Rig = None,
    method: S.Method = None,
    sigma: S.Sigma = None,
    bias_window: S.BiasWindow = None,
    bias_scale: S.BiasScale = None,
    bias_range: S.BiasRange = "fixed",
    queries: S.Queries = "matching",
    activation: S.Activation = None,
    lam: S.Lam = None,
    batch_size: S.BatchSize = 1,
    sample: S.Sample = 0,
    seed: S.Seed = 0,
    save_arrays: bool = typer.Option(False, "--save-arrays", help=f"Also write {FILES['arrays']}."),
    as_json: S.AsJson = False,
    quiet: S.Quiet = False,
    trust: S.Trust = False,
) -> None:
    """Run the AQR weight generator (or read a debug dump) and render the BEV weight map, the six
    camera weight maps, the attention-bias heatmaps and a per-query panel to PNG, with
    summary.json (weight, map and bias statistics, quirk warnings).

    Example: aqr render-weights --synthetic --weights scene --method all --out aqr_out
    """
    opts = dict(out=out, synthetic=synthetic, checkpoint=checkpoint, features=features,
                weights=weights, reference=reference, rig=rig, method=method, sigma=sigma,
                bias_window=bias_window, bias_scale=bias_scale, bias_range=bias_range, queries=queries,
                activation=activation, lam=lam,
                batch_size=batch_size, sample=sample, seed=seed, save_arrays=save_arrays,
                as_json=as_json, quiet=quiet, trust=trust)
    S.validate(sources or [], opts)
    run_guarded(lambda: _run(sources or [], **opts))


def _run(paths: list, **o) -> None:
    import torch

    with torch.no_grad():  # not set_grad_enabled(False): that would leak into the caller
        _run_body(paths, **o)


def _run_body(paths: list, **o) -> None:
    from contextlib import nullcontext

    from aqr_cli.cli.output import Sink, output_dir
    from aqr_cli.io.atomic import FigureSaver

    sink = Sink(json_mode=o["as_json"], quiet=o["quiet"])
    ov = S.overrides(o)
    files = S.expand_sources(paths)
    n_total = len(files) + int(o["synthetic"]) + int(o["features"] is not None)
    with sink.progress(n_total * 2, "rendering") as advance:
        with output_dir(o["out"], command="render-weights") as stage:
            loaded = S.load_sources(files, o, ov, advance)
            S.report_unused_flags(sink, [src for src, _ in loaded], o)
            names = S.subfolder_names([src for src, _ in loaded]) if len(loaded) > 1 else [""]
            docs = []
            # figures of one source are drawn by worker processes while the next is computed
            with FigureSaver() if len(loaded) > 1 else nullcontext() as saver:
                for (src, quirks), sub in zip(loaded, names):
                    docs.append(_render_one(src, quirks, stage / sub if sub else stage, o, saver))
                    advance()
                _write_evolution(docs, names, stage)
    _report(sink, docs, names, o)


def _render_one(src, quirks: list, folder: Path, o: dict, saver) -> dict:
    """Render one source into ``folder``; returns its summary document. The figures go to
    ``saver`` (a :class:`~aqr_cli.io.atomic.FigureSaver`, which may still be drawing them when
    this returns), or with ``saver=None`` are saved before it returns."""
    from aqr_cli.analysis.caption import describe_run
    from aqr_cli.analysis.render import render_source
    from aqr_cli.cli._common import collect_quirks
    from aqr_cli.io.atomic import atomic_save_figures, atomic_save_npz, atomic_write_json

    if o["sample"] >= src.batch_size:
        raise UserError(f"{src.label}: --sample {o['sample']} but the batch holds {src.batch_size} "
                        "sample(s)")
    if o.get("queries", "matching") == "dn" and src.num_queries <= src.cfg.num_query:
        raise UserError(f"{src.label}: --queries dn but the source holds no DN rows "
                        f"({src.num_queries} queries, num_query {src.cfg.num_query})")
    folder.mkdir(parents=True, exist_ok=True)
    with collect_quirks() as more:
        res = render_source(src, o["method"] or src.cfg.renderer_config.get("render_method", "gaussian"),
                            bias_scale=o["bias_scale"], sample=o["sample"])
    all_quirks = S.merge_quirks(quirks, more)
    doc = res.summary
    caption = describe_run(src, o["sample"], o, res.bias_scale)
    doc["caption"] = caption.to_dict()
    doc["quirks"] = [_quirk_doc(q) for q in sorted(all_quirks, key=lambda q: _qnum(q.quirk_id))]
    pending: list = []  # (figure, path)
    doc["files"] = _write_figures(res, folder, o["sample"], caption, o.get("bias_range", "fixed"),
                                  o.get("queries", "matching"), pending=pending)
    doc["files"] += readings_view.write_figures(res, folder, _tag(src), caption,
                                                o.get("queries", "matching"), pending=pending)
    if saver is None:  # one source, nothing to overlap with: this process draws a share too
        atomic_save_figures(pending)
    else:
        saver.submit(pending)
    if o["save_arrays"]:
        atomic_save_npz(folder / FILES["arrays"], **_arrays(res))
        doc["files"].append(FILES["arrays"])
    doc["files"].append(FILES["summary"])
    doc = _finite(doc)
    atomic_write_json(folder / FILES["summary"], doc)
    return doc


def _finite(doc: dict) -> dict:
    """NaN/Inf never reach a JSON document: null, and a note that says how many."""
    from aqr_cli.io.jsonsafe import finite_json

    doc, n = finite_json(doc)
    if n:
        doc.setdefault("source", {}).setdefault("notes", []).append(
            f"{n} non-finite statistics (NaN/Inf) were written as null")
    return doc


def _tag(src) -> str:
    return src.label + (f", iteration {src.iteration}" if src.iteration is not None else "")


def _qnum(qid: str) -> int:
    return int(qid[1:]) if qid[1:].isdigit() else 999


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


def _write_figures(res, folder: Path, b: int, caption, bias_range: str = "fixed",
                   queries: str = "matching", pending: list | None = None) -> list[str]:
    """Build and save every figure of one source for sample ``b``; returns the file names written.
    With ``pending``, append ``(figure, path)`` pairs there instead of saving.

    Every figure carries ``caption`` (source kind, configuration, sample, changed settings) as
    its subtitle and draws sample ``b`` only.
    """
    from aqr_cli.analysis.render import final_clamp_value
    from aqr_cli.io.atomic import atomic_save_figure
    import torch

    from aqr_cli.analysis.objects import query_rows
    from aqr_cli.analysis.sources import sample_rig
    from aqr_cli.analysis.stats import preference_shares
    from aqr_cli.plots import weights as P

    src = res.source
    pc = src.cfg.pc_range
    sub = caption.subtitle()
    act = caption.activation
    boxes = src.boxes[b] if src.boxes else None
    labels = src.box_labels[b] if src.box_labels else None
    rig = sample_rig(src, b) if boxes is not None else None
    rows = query_rows(src.num_queries, src.cfg.num_query)[queries]
    lw, cw = src.lidar_weights[b, rows].numpy(), src.camera_weights[b, rows].numpy()
    pts_bev = src.pts_bev[b, rows].numpy()
    pts_pers = None if src.pts_pers is None else src.pts_pers[b, rows].numpy()
    unseen = None if src.unseen is None else src.unseen[b, rows].numpy()
    clamp = src.cfg.renderer_config.get("max_weight_clamp", 1.5) \
        if src.cfg.renderer_config.get("normalize_weights", True) else None
    method = res.method if res.method != "all" else src.cfg.renderer_config.get("render_method", "gaussian")
    bias = res.summary["bias"]
    lim = P.bias_limit(res.bias_scale, bias["max_scale"], bias_range, res.bias_bev[b].numpy(),
                       res.bias_pers[b].numpy())
    figs = {
        "bev": P.bev_weight_figure(res.bev_map[b].numpy(), lw, pts_bev, pc, boxes=boxes,
                                   box_labels=labels, clamp=clamp, activation=act, method=method,
                                   title=f"LiDAR weights, {method} render", subtitle=sub),
        "queries": P.query_panel_figure(lw, cw, preference_shares(torch.from_numpy(lw),
                                                                  torch.from_numpy(cw)), activation=act,
                                        title="Per-query AQR weights", subtitle=sub),
        "bias": P.bias_heatmap_figure(
            res.bias_bev[b].numpy(), res.bias_pers[b].numpy(), pc, res.bias_scale, limit=lim,
            range_mode=bias_range, camera_names=src.camera_names, boxes=boxes, box_labels=labels,
            rig=rig, title=f"AQR attention bias (window {bias['window_size']}, effective scale "
                  f"{res.bias_scale:.3g}, final clamp +-{final_clamp_value(bias):g})",
            subtitle=sub,
            notes=() if src.pts_pers is not None else
            ["camera cells unknown (pass --checkpoint): camera bias not computed"]),
    }
    if src.pts_pers is not None:
        figs["camera"] = P.camera_weight_figure(
            res.pers_map[b].numpy(), cw, pts_pers, camera_names=src.camera_names,
            unseen=unseen, clamp=clamp,
            activation=act, method=method, boxes=boxes, rig=rig,
            title=f"Camera weight maps, {method} render", subtitle=sub)
    elif src.stored_maps is not None:
        figs["camera"] = P.camera_weight_figure(
            src.stored_maps[1][b].numpy(), cw, None, camera_names=src.camera_names, clamp=clamp,
            activation=act, boxes=boxes, rig=rig, title="Camera weight maps as stored in the dump", subtitle=sub)
    if res.methods:
        figs["methods"] = P.methods_figure({m: (bb[b].numpy(), pp[b].numpy()) for m, (bb, pp) in
                                            res.methods.items()}, pc, camera_names=src.camera_names,
                                           clamp=clamp, title="Renderer methods", subtitle=sub)
    items = [(fig, folder / FILES[key]) for key, fig in figs.items()]
    if pending is None:
        for fig, path in items:
            atomic_save_figure(fig, path)
    else:
        pending.extend(items)
    return [FILES[key] for key in figs]


def _no_pers(cw):
    import numpy as np

    return np.full((cw.shape[0], 3), -1.0)


def evolution_docs(docs: list, names: list) -> list[tuple[dict, str]]:
    """The dumps among the sources, in iteration order (file names need not follow it, Q38):
    an evolution is over one run's dumps only, never checkpoints or synthetic scenes."""
    dumps = [(d, n) for d, n in zip(docs, names) if d["source"]["kind"] == "dump"]
    if len(dumps) < 2:
        return []
    return sorted(dumps, key=lambda dn: (dn[0]["source"]["iteration"] is None,
                                         dn[0]["source"]["iteration"] or 0))


def _write_evolution(docs: list, names: list, stage: Path) -> None:
    """``evolution.json`` / ``evolution.png`` over the dumps (two or more), in iteration order."""
    from aqr_cli.io.atomic import atomic_save_figure, atomic_write_json
    from aqr_cli.plots.evolution import evolution_figure

    pairs = evolution_docs(docs, names)
    if not pairs:
        return
    rows = [_evolution_row(d, n) for d, n in pairs]
    atomic_write_json(stage / EVOLUTION_JSON, rows)
    act = {d.get("caption", {}).get("activation", "tanh") for d, _ in pairs}
    atomic_save_figure(evolution_figure(rows, activation=act.pop() if len(act) == 1 else "mixed"),
                       stage / EVOLUTION_PNG)


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


def _report(sink, docs: list, names: list, o: dict) -> None:
    """JSON on stdout with --json; else a table on stdout; notes and quirks on stderr."""
    if o["as_json"]:
        sink.json(docs[0] if len(docs) == 1 else docs)
    rows = []
    for d, n in zip(docs, names):
        w = d["weights"]
        iw = d["bias"]["in_window"]["overall"]
        rows.append([n or d["source"]["label"], str(d["source"]["queries"]["num_queries"]),
                     f"{w['lidar']['mean']:+.3f}±{w['lidar']['std']:.3f}",
                     f"{w['camera']['mean']:+.3f}±{w['camera']['std']:.3f}",
                     f"{100 * d['preference']['prefer_lidar']:.1f}%", f"{d['maps']['bev']['max']:.3f}",
                     f"{iw['mean']:+.3f}±{iw['std']:.3f}", f"{d['bias']['scale_effective']:.3f}"])
    cols = ["source", "Q", "LiDAR w", "camera w", "LiDAR>cam", "BEV max", "bias in window",
            "scale"]
    sink.table(cols, rows, title=f"aqr render-weights -> {o['out']}", right=cols[1:],
               caption="batch-wide numbers (all samples of each source): w = mean±std of the "
                       "per-query weights, LiDAR>cam = share of queries preferring LiDAR, bias in "
                       "window = mean±std of the bias inside the query windows, scale = effective "
                       "bias scale; summary.json holds the --sample's own numbers under 'sample'")
    for d, n in zip(docs, names):
        label = n or None
        for note in d["source"]["notes"]:
            sink.note(note, source=label)
        sink.quirks(d["quirks"], source=label)
        readings_view.report(sink, d, label)
        fid = d.get("fidelity")
        if fid:
            sink.note(f"re-render vs dump: BEV max |diff| {fid['bev_max_abs_diff']:.2e}"
                      + (f", camera {fid['camera_max_abs_diff']:.2e}" if fid["camera_max_abs_diff"] is not None
                         else ", camera not re-rendered (no --checkpoint)"), source=label)
    sink.wrote(_count_files(docs, bool(evolution_docs(docs, names))), o["out"])


def _count_files(docs: list, with_evolution: bool) -> int:
    return sum(len(d["files"]) for d in docs) + (2 if with_evolution else 0)
