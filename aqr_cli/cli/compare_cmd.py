"""``aqr compare-modes``: the same AQR weights applied multiplicatively and additively.

Only typer is imported at module level; torch and matplotlib load inside the command.
"""

from __future__ import annotations

from pathlib import Path

import typer

from aqr_cli.cli import _sources as S
from aqr_cli.cli._common import UserError, run_guarded
from aqr_cli.cli.app import app

FILES = {
    "histograms": "feature_histograms.png",
    "gain": "gain_map.png",
    "bias": "bias_heatmaps.png",
    "attention": "attention_{role}_q{q}.png",
    "sweep": "sweep.png",
    "summary_png": "summary.png",
    "summary": "summary.json",
}


@app.command("compare-modes", short_help=(
    "The same AQR weights applied multiplicatively "
    "and as an additive attention bias, compared."))
def compare_modes_command(
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
    activation: S.Activation = None,
    lam: S.Lam = None,
    batch_size: S.BatchSize = 1,
    sample: S.Sample = 0,
    seed: S.Seed = 0,
    scales: str = typer.Option("0.5,1,2.5,5,10", "--scales", help="Bias scales of the sweep "
                               "(comma-separated; empty string: no sweep)."),
    width: str = typer.Option("zero_pad", "--width", help="When features are narrower than the "
                              "embeddings (dumps keep 16 of 256 channels): zero_pad, orthogonal "
                              "(seeded projection) or skip (no attention statistics)."),
    as_json: S.AsJson = False,
    quiet: S.Quiet = False,
    trust: S.Trust = False,
) -> None:
    """Apply the same per-query AQR weights both ways (multiplicative feature modulation, additive
    attention bias) and compare feature statistics (change, gain, energy in boxes) and attention
    statistics (entropy, saturation, window mass, LiDAR/camera share, change vs baseline), with a
    bias-scale sweep, PNG reports and summary.json.

    Example: aqr compare-modes --synthetic --weights scene --out aqr_compare
    """
    opts = dict(out=out, synthetic=synthetic, checkpoint=checkpoint, features=features,
                weights=weights, reference=reference, rig=rig, method=method, sigma=sigma,
                bias_window=bias_window, bias_scale=bias_scale, bias_range=bias_range,
                activation=activation, lam=lam,
                batch_size=batch_size, sample=sample, seed=seed, as_json=as_json, quiet=quiet,
                trust=trust)
    if width not in ("zero_pad", "orthogonal", "skip"):
        raise typer.BadParameter("choose zero_pad, orthogonal or skip", param_hint="--width")
    if method == "all":
        raise typer.BadParameter("compare-modes applies one renderer method", param_hint="--method")
    scale_list = _parse_scales(scales)
    S.validate(sources or [], opts)
    run_guarded(lambda: _run(sources or [], scale_list, width, **opts))


def _parse_scales(text: str) -> list[float]:
    import math

    if not text.strip():
        return []
    try:
        vals = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated numbers, got {text!r}",
                                 param_hint="--scales") from None
    if any(not math.isfinite(v) or v < 0 for v in vals):
        raise typer.BadParameter("scales must be finite and >= 0", param_hint="--scales")
    return vals


def _run(paths: list, scales: list, width: str, **o) -> None:
    import torch

    with torch.no_grad():  # not set_grad_enabled(False): that would leak into the caller
        _run_body(paths, scales, width, **o)


def _run_body(paths: list, scales: list, width: str, **o) -> None:
    from aqr_cli.analysis.caption import describe_run
    from aqr_cli.analysis.compare import compare_source
    from aqr_cli.cli._common import collect_quirks
    from aqr_cli.cli.output import Sink, output_dir

    sink = Sink(json_mode=o["as_json"], quiet=o["quiet"])
    ov = S.overrides(o)
    files = S.expand_sources(paths)
    n_total = len(files) + int(o["synthetic"]) + int(o["features"] is not None)
    docs, names = [], []
    with sink.progress(n_total * 2, "comparing") as advance:
        with output_dir(o["out"], command="compare-modes") as stage:
            loaded = S.load_sources(files, o, ov, advance)
            S.report_unused_flags(sink, [s for s, _ in loaded], o)
            names = S.subfolder_names([s for s, _ in loaded]) if len(loaded) > 1 else [""]
            for (src, quirks), sub in zip(loaded, names):
                if o["sample"] >= src.batch_size:
                    raise UserError(f"{src.label}: --sample {o['sample']} but the batch holds "
                                    f"{src.batch_size} sample(s)")
                with collect_quirks() as more:
                    res = compare_source(src, method=o["method"], bias_scale=o["bias_scale"],
                                         scales=scales, width_mode=width, sample=o["sample"],
                                         trust=o["trust"])
                    warn_scale_clamp_for(res, o["bias_scale"])
                all_q = S.merge_quirks(quirks, more)
                folder = stage / sub if sub else stage
                folder.mkdir(parents=True, exist_ok=True)
                doc = res.summary
                doc["quirks"] = [{"id": q.quirk_id, "message": q.message} for q in all_q]
                caption = describe_run(src, o["sample"], o, res.bias_scale)
                doc["caption"] = caption.to_dict()
                doc["files"] = _write_figures(res, folder, o["sample"], caption,
                                              o.get("bias_range", "fixed"))
                _save_json(folder / FILES["summary"], doc)
                docs.append(doc)
                advance()
    _report(sink, docs, names, o)


def _save_json(path: Path, doc: dict) -> None:
    from aqr_cli.io.atomic import atomic_write_json
    from aqr_cli.io.jsonsafe import finite_json

    doc["files"].append(FILES["summary"])
    clean, n = finite_json(doc)
    if n:
        clean.setdefault("notes", []).append(f"{n} non-finite statistics (NaN/Inf) were written as null")
    doc.clear()
    doc.update(clean)
    atomic_write_json(path, doc)


def warn_scale_clamp_for(res, requested) -> None:
    """Q13 for a clamped or saturating ``--bias-scale`` (same rule as render-weights)."""
    from aqr_cli.analysis.render import build_bias_generator, warn_scale_clamp

    if requested is not None:
        warn_scale_clamp(build_bias_generator(res.source, requested), requested)


def _write_figures(res, folder: Path, b: int, caption, bias_range: str = "fixed") -> list[str]:
    """Feature histograms, gain map, bias heatmaps, attention of the selected queries, sweep and
    the one-page summary, all of sample ``b`` and subtitled with ``caption``."""
    from aqr_cli.analysis.compare import query_xy
    from aqr_cli.analysis.sources import sample_rig
    from aqr_cli.io.atomic import atomic_save_figures
    from aqr_cli.plots import compare as P
    from aqr_cli.plots.weights import bias_heatmap_figure, bias_limit

    src = res.source
    sub, batch_sub = caption.subtitle(), caption.subtitle(batch=True)
    boxes = src.boxes[b] if src.boxes else None
    labels = src.box_labels[b] if src.box_labels else None
    run = res.summary.get("run") or {}
    hb, hp = res.bias.heatmaps("maxabs")
    hb, hp = hb[b].numpy(), hp[b].numpy()
    figs = {
        FILES["histograms"]: P.feature_histogram_figure(res.features, title="Feature values before "
                                                        "and after AQR (batch-wide)", subtitle=batch_sub),
        FILES["gain"]: P.gain_map_figure(
            res.gains[0][b].numpy(), res.gains[1][b].numpy(), src.cfg.pc_range,
            camera_names=src.camera_names, boxes=boxes, box_labels=labels,
            gain_stats={m: res.features["multiplicative"][m]["gain"] for m in ("bev", "camera")},
            title="Multiplicative path, per-cell gain g = m + r (histogram batch-wide)", subtitle=sub),
        FILES["bias"]: bias_heatmap_figure(
            hb, hp, src.cfg.pc_range, res.bias_scale,
            limit=bias_limit(res.bias_scale, res.max_scale, bias_range, hb, hp), range_mode=bias_range,
            camera_names=src.camera_names, boxes=boxes, box_labels=labels,
            rig=sample_rig(src, b) if boxes is not None else None,
            title=f"Additive path: AQR attention bias (effective scale {res.bias_scale:.3g})",
            subtitle=sub, notes=[run.get("statement", "")]),
    }
    att = res.attention
    if att.status == "ok":
        xy = query_xy(src)[b]
        for i, pick in enumerate(res.selected):
            q = pick["query"]
            rows = {p: att.rows[p][b, i].numpy() for p in att.rows}
            stats = {p: {m: float(v[b, q]) for m, v in att.per_query[p].items()} for p in att.per_query}
            cell = None if (src.unseen is not None and bool(src.unseen[b, q])) else src.pts_pers[b, q].tolist()
            flag = " - SENTINEL: no camera sees it (Q3), camera cell is CAM_FRONT (0, 0)" if pick["sentinel"] else ""
            figs[FILES["attention"].format(role=pick["slug"], q=q)] = P.attention_heatmap_figure(
                rows, src.cfg.bev_shape, src.cfg.pers_shape, src.cfg.pc_range,
                query_xy=xy[q].tolist(), query_cell=cell, query_index=q,
                stats=stats, boxes=boxes, box_labels=labels, camera_names=src.camera_names,
                title=f"Cross-attention of query {q}, {pick['role']} (LiDAR w "
                      f"{float(src.lidar_weights[b, q]):+.2f}, camera w "
                      f"{float(src.camera_weights[b, q]):+.2f}){flag}",
                subtitle=sub, notes=[f"WARNING: {w}" for w in _warnings(res)])
    if res.sweep is not None:
        figs[FILES["sweep"]] = P.sweep_figure(res.sweep, title="Bias-scale sweep of the additive path "
                                              "(all queries of the batch)", subtitle=batch_sub,
                                              notes=_warnings(res))
    figs[FILES["summary_png"]] = P.summary_figure(
        res.features, res.summary["attention"] if att.status == "ok" else att, res.sweep,
        title="Multiplicative vs additive (batch-wide)", subtitle=batch_sub, notes=_notes(res),
        readout=res.summary.get("decoder_readout"), warnings=_warnings(res))
    atomic_save_figures([(fig, folder / name) for name, fig in figs.items()])
    return list(figs)


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


def _report(sink, docs: list, names: list, o: dict) -> None:
    """JSON with --json, else feature and attention tables on stdout; notes and quirks on stderr."""
    if o["as_json"]:
        sink.json(docs[0] if len(docs) == 1 else docs)
    for d, n in zip(docs, names):
        label = n or d["settings"]["source"]["label"]
        _meaning(sink, d, label)
        _feature_table(sink, d, label)
        _readout_table(sink, d, label)
        at = d["attention"]
        if at.get("baseline"):
            _attention_table(sink, at, label)
        else:
            sink.note(f"attention skipped: {at['settings'].get('reason')}", source=n or None)
        for note in d["settings"]["source"]["notes"]:
            sink.note(note, source=n or None)
        aw = d["settings"]["attention_weights"]
        sink.note(f"attention projections: {aw.get('note') or aw.get('source')}", source=n or None)
        sink.quirks(d["quirks"], source=n or None)
    sink.wrote(sum(len(d["files"]) for d in docs), o["out"])


_FEATURE_COLS = ["path / modality", "mean before", "mean after", "relative change", "cosine",
                 "attenuated", "amplified", "small-object energy kept"]
_ATTENTION_COLS = ["path", "entropy/log F", "max attn", "> 0.9", "window mass", "LiDAR share",
                   "mean |d attn|", "KL(base||path)", "top-k overlap"]


def _meaning(sink, d: dict, label: str) -> None:
    """What the numbers below can and cannot say, in plain words, before the tables."""
    pairs = []
    run = d.get("run") or {}
    if run.get("statement"):
        pairs.append(("additive path", run["statement"]))
    info = (d.get("attention") or {}).get("information") or {}
    if info.get("statement") and not info.get("informative", True):
        pairs.append(("attention", info["statement"]))
    if pairs:
        sink.kv(pairs, title=f"read this first: {label}")


def _readout_table(sink, d: dict, label: str) -> None:
    ro = d.get("decoder_readout") or {}
    rows = []
    for path in ("multiplicative", "additive"):
        r = ro.get(path)
        if r:
            rows.append([path, _fmt(r["relative_change"]["mean"], ".2%"),
                         _fmt(r["relative_change"]["median"], ".2%"), _fmt(r["cosine"]["mean"], ".4f")])
    if rows:
        sink.table(["path", "relative change mean", "median", "cosine mean"], rows,
                   title=f"what the decoder reads (cross-attention output vs baseline): {label}",
                   right=["relative change mean", "median", "cosine mean"])


def _feature_table(sink, d: dict, label: str) -> None:
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
    sink.table(_FEATURE_COLS, rows, title=f"features: {label}", right=_FEATURE_COLS[1:])


def _attention_table(sink, at: dict, label: str) -> None:
    rows = []
    for p in ("baseline", "multiplicative", "additive"):
        m = (at.get(p) or {}).get("overall") or {}

        def g(k, stat="mean", _m=m):
            return (_m.get(k) or {}).get(stat)
        rows.append([p, _fmt(g("entropy_norm"), ".4f"), _fmt(g("max_attention"), ".4f"),
                     _fmt(m.get("share_max_gt_0.9"), ".1%"), _fmt(g("window_mass"), ".4f"),
                     _fmt(g("lidar_share"), ".3f"), _fmt(g("mean_abs_delta"), ".2e"),
                     _fmt(g("kl_from_reference"), ".2e"), _fmt(g("topk_overlap"), ".2f")])
    sink.table(_ATTENTION_COLS, rows, title=f"attention (mean over queries): {label}",
               right=_ATTENTION_COLS[1:])
