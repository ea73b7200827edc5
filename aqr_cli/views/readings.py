"""Views of the researchers' readings (DN split, preference by class and size, coverage on
objects, bias health) for ``render-weights``: figures by file name and terminal lines."""

from __future__ import annotations

from aqr_cli.views.terminal import Report
from aqr_cli.views.outputs import PLOTS, lazy

FILES = {"classes": "preference_by_class.png", "views": "camera_views.png"}
SCOPE = ("matching queries of the whole batch; a query belongs to the nearest GT box footprint "
         "within {radius:g} m; bars: 95% bootstrap interval ({n} resamples)")


def readings_figures(res, caption, queries: str = "matching") -> dict:
    """``{file name: Figure}``: ``preference_by_class.png`` (when GT boxes are known) and
    ``camera_views.png`` (when the camera cells are known) of a
    :class:`~aqr_cli.analysis.render.RenderResult`; ``caption``: the run's
    :class:`~aqr_cli.analysis.caption.RunCaption` (subtitle and weight activation)."""
    from aqr_cli.analysis.objects import query_rows

    src, doc = res.source, res.summary
    figs = {}
    pref = doc["preference"]
    if pref.get("by_class") is not None:
        a = pref["object_assignment"]
        figs[FILES["classes"]] = lazy(
            PLOTS + "readings:class_preference_figure",
            pref["by_class"], pref["by_size"], title="Modality preference by class and size (whole batch)",
            subtitle=caption.subtitle(batch=True),
            scope=SCOPE.format(radius=a["radius_m"], n=a["bootstrap_samples"]))
    if src.pts_pers is not None:
        views = src.pts_pers[..., 0].clone()
        if src.unseen is not None:
            views[src.unseen] = -1
        rows = query_rows(src.num_queries, src.cfg.num_query)[queries]
        figs[FILES["views"]] = lazy(
            PLOTS + "readings:camera_views_figure",
            src.camera_weights[:, rows].reshape(-1).numpy(), views[:, rows].reshape(-1).numpy(),
            camera_names=src.camera_names,
            title=f"Camera weights of the queries each view sees first ({queries} queries, whole batch)",
            subtitle=caption.subtitle(batch=True), coverage=_view_coverage(doc),
            notes=_coverage_notes(doc), **_weight_axis(caption))
    return figs


def _weight_axis(caption) -> dict:
    """Histogram range and label of camera weights for the run's activation."""
    if caption.activation == "sigmoid":
        return {"xlim": (0.0, 1.0), "xlabel": "camera weight (sigmoid)"}
    return {"xlim": (-1.0, 1.0), "xlabel": "camera weight (tanh)"}


def report(rep: Report, doc: dict, label: str | None) -> None:
    """Terminal view, added to ``rep``: DN split, preference by class, coverage and bias health
    of one source."""
    groups = doc["weights"].get("by_query_group") or {}
    if groups.get("dn"):
        rows = [[name, str(g["count"]), f"{g['lidar']['mean']:+.3f}±{g['lidar']['std']:.3f}",
                 f"{g['camera']['mean']:+.3f}±{g['camera']['std']:.3f}",
                 f"{100 * g['preference']['prefer_lidar']:.1f}%"]
                for name, g in groups.items() if g]
        rep.table(["queries", "n", "LiDAR mean±std", "camera mean±std", "LiDAR>cam"], rows,
                   title=f"DN vs matching queries{': ' + label if label else ''}",
                   right=["n", "LiDAR mean±std", "camera mean±std", "LiDAR>cam"])
    pref = doc["preference"]
    if pref.get("by_class"):
        rows = []
        for name, d in [*pref["by_class"].items(), *((f"({g})", d) for g, d in pref["by_size"].items())]:
            ci = d["prefer_lidar_ci95"]
            rows.append([name, str(d["count"]), f"{d['lidar_mean']:+.3f}", f"{d['camera_mean']:+.3f}",
                         f"{100 * d['prefer_lidar']:.1f}%",
                         f"{100 * ci[0]:.1f}-{100 * ci[1]:.1f}%" if ci else "-"])
        rep.table(["class", "n", "LiDAR mean", "camera mean", "LiDAR>cam", "95% CI"], rows,
                   title=f"Preference by class (matching queries, whole batch)"
                         f"{': ' + label if label else ''}",
                   right=["n", "LiDAR mean", "camera mean", "LiDAR>cam", "95% CI"])
    cov = doc.get("coverage")
    if cov:
        parts = [f"BEV {_cov(cov['bev'])}"]
        if cov.get("camera"):
            parts.append(f"cameras {_cov(cov['camera'])}")
        rep.note("weight mass on GT boxes (whole batch): " + "; ".join(parts), source=label)
    for f in doc["bias"].get("health") or []:
        if f["severity"] == "warning":
            rep.warn(f"{f['message']} (normal: {f['detail']['band']})", id=f["id"], source=label)
        else:
            rep.note(f"{f['id']}: {f['message']}", source=label)


def _view_coverage(doc: dict) -> dict | None:
    views = (doc.get("coverage") or {}).get("camera_views")
    return None if not views else {name: c.get("coverage") for name, c in views.items()}


def _coverage_notes(doc: dict) -> list[str]:
    cov = doc.get("coverage")
    if not cov:
        return []
    parts = [f"BEV {_cov(cov['bev'])}"] + ([f"all cameras {_cov(cov['camera'])}"] if cov.get("camera") else [])
    return ["rendered weight mass on GT boxes (whole batch; notes: < 30% poor, > 60% good): "
            + "; ".join(parts)]


def _cov(c: dict) -> str:
    if c.get("coverage") is None:
        return "unknown (no weight mass)"
    return f"{100 * c['coverage']:.1f}% ({c['band']})"
