"""Views of the researchers' readings (DN split, preference by class and size, coverage on
objects, bias health) for ``render-weights``: figures into the output folder and terminal lines."""

from __future__ import annotations

from pathlib import Path

FILES = {"classes": "preference_by_class.png", "views": "camera_views.png"}
SCOPE = ("matching queries of the whole batch; a query belongs to the nearest GT box footprint "
         "within {radius:g} m; bars: 95% bootstrap interval ({n} resamples)")


def write_figures(res, folder: Path, tag: str, caption=None, queries: str = "matching") -> list[str]:
    """``preference_by_class.png`` (when GT boxes are known) and ``camera_views.png`` (when the
    camera cells are known); returns the file names written. ``caption``: the run's
    :class:`~aqr_cli.analysis.caption.RunCaption` (subtitle and weight activation)."""
    from aqr_cli.analysis.objects import query_rows
    from aqr_cli.io.atomic import atomic_save_figure
    from aqr_cli.plots.readings import camera_views_figure, class_preference_figure

    src, doc = res.source, res.summary
    written = []
    pref = doc["preference"]
    if pref.get("by_class") is not None:
        a = pref["object_assignment"]
        fig = class_preference_figure(pref["by_class"], pref["by_size"],
                                      title="Modality preference by class and size (whole batch)"
                                      if caption else f"Modality preference by class and size: {tag}",
                                      subtitle=caption.subtitle(batch=True) if caption else "",
                                      scope=SCOPE.format(radius=a["radius_m"], n=a["bootstrap_samples"]))
        atomic_save_figure(fig, folder / FILES["classes"])
        written.append(FILES["classes"])
    if src.pts_pers is not None:
        views = src.pts_pers[..., 0].clone()
        if src.unseen is not None:
            views[src.unseen] = -1
        rows = query_rows(src.num_queries, src.cfg.num_query)[queries]
        fig = camera_views_figure(src.camera_weights[:, rows].reshape(-1).numpy(),
                                  views[:, rows].reshape(-1).numpy(), camera_names=src.camera_names,
                                  title="Camera weights of the queries each view sees first "
                                        f"({queries} queries, whole batch)" + ("" if caption else f": {tag}"),
                                  subtitle=caption.subtitle(batch=True) if caption else "",
                                  **_weight_axis(caption))
        atomic_save_figure(fig, folder / FILES["views"])
        written.append(FILES["views"])
    return written


def _weight_axis(caption) -> dict:
    """Histogram range and label of camera weights for the run's activation."""
    if caption is not None and caption.activation == "sigmoid":
        return {"xlim": (0.0, 1.0), "xlabel": "camera weight (sigmoid)"}
    return {"xlim": (-1.0, 1.0), "xlabel": "camera weight (tanh)"}


def report(sink, doc: dict, label: str | None) -> None:
    """Terminal view: DN split, preference by class, coverage and bias health of one source."""
    groups = doc["weights"].get("by_query_group") or {}
    if groups.get("dn"):
        rows = [[name, str(g["count"]), f"{g['lidar']['mean']:+.3f}±{g['lidar']['std']:.3f}",
                 f"{g['camera']['mean']:+.3f}±{g['camera']['std']:.3f}",
                 f"{100 * g['preference']['prefer_lidar']:.1f}%"]
                for name, g in groups.items() if g]
        sink.table(["queries", "n", "LiDAR mean±std", "camera mean±std", "LiDAR>cam"], rows,
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
        sink.table(["class", "n", "LiDAR mean", "camera mean", "LiDAR>cam", "95% CI"], rows,
                   title=f"Preference by class (matching queries, whole batch)"
                         f"{': ' + label if label else ''}",
                   right=["n", "LiDAR mean", "camera mean", "LiDAR>cam", "95% CI"])
    cov = doc.get("coverage")
    if cov:
        parts = [f"BEV {_cov(cov['bev'])}"]
        if cov.get("camera"):
            parts.append(f"cameras {_cov(cov['camera'])}")
        sink.note("weight mass on GT boxes (whole batch): " + "; ".join(parts), source=label)
    for f in doc["bias"].get("health") or []:
        if f["severity"] == "warning":
            sink.warn(f"{f['message']} (normal: {f['detail']['band']})", id=f["id"], source=label)
        else:
            sink.note(f"{f['id']}: {f['message']}", source=label)


def _cov(c: dict) -> str:
    if c.get("coverage") is None:
        return "unknown (no weight mass)"
    return f"{100 * c['coverage']:.1f}% ({c['band']})"
