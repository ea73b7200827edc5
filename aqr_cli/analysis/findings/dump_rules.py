"""Rules on debug dumps (an :class:`aqr_cli.analysis.inspection.reports.DumpReport`), and the NaN/Inf rule
that checkpoints and dumps share."""

from __future__ import annotations

from aqr_cli.analysis.findings.context import CheckpointContext, fmt, share
from aqr_cli.analysis.findings.registry import Finding, quirk_rule


@quirk_rule("Q1", "dump", inputs="dump",
            fires="`min(lidar_weights) >= 0` while `min(camera_weights) < 0`: the BEV renderer "
                  "clamped the LiDAR weights in place (warning)")
def _q1(report) -> Finding | None:
    lid, cam = report.weights.get("lidar"), report.weights.get("camera")
    if not (lid and cam and lid["min"] >= 0 and cam["min"] < 0):
        return None
    return Finding(
        "Q1", "warning", f"lidar_weights min {fmt(lid['min'])} while camera_weights min "
        f"{fmt(cam['min'])} ({100 * cam['share_negative']:.1f}% negative): the BEV renderer "
        "clamped the LiDAR weights to [0, 1] in place before the dump, so negative "
        "(suppressing) LiDAR weights are lost.",
        {"lidar_min": lid["min"], "camera_min": cam["min"],
         "camera_share_negative": cam["share_negative"]})


@quirk_rule("Q2", "dump", inputs="dump `pts_bev`",
            fires="`pts_bev` cells fall outside the BEV grid (warning)")
def _q2_dump(report) -> Finding | None:
    if not report.bev_outside_grid:
        return None
    n, total = report.bev_outside_grid, report.queries["num_queries"] * (report.batch_size or 1)
    return Finding(
        "Q2", "warning", f"{share(n, total)} pts_bev cells lie outside the "
        f"{report.shapes['bev'][0]}x{report.shapes['bev'][1]} BEV grid: the renderer skipped "
        "them, the LAM/bias keep partial windows.", {"count": n})


@quirk_rule("Q3", "dump", inputs="dump `lidar2img` + the reference points of `--checkpoint`",
            fires="matching queries whose reference points no camera of the dump's rig sees "
                  "(their camera weights land on CAM_FRONT cell (0, 0)) (warning)")
def _q3_dump(report) -> Finding | None:
    s = report.sentinel
    if not (s.get("decidable") and s.get("count")):
        return None
    return Finding(
        "Q3", "warning", f"{share(s['count'], s['total'])} matching queries (reference points "
        f"from {s['checkpoint']}) are seen by no camera of this dump's rig: their camera "
        "weights went to CAM_FRONT cell (0, 0) of the camera map.",
        {"count": s["count"], "total": s["total"], "per_sample": s.get("per_sample")})


@quirk_rule("Q4", "dump", inputs="dump `img_metas`",
            fires="`img_shape` differs between samples/views of a dump (warning)")
def _q4_dump(report) -> Finding | None:
    shapes = report.img_metas.get("img_shapes") or []
    if len(shapes) <= 1:
        return None
    return Finding(
        "Q4", "warning", f"img_shape differs between samples/views ({shapes}): upstream tests "
        "the FOV of every sample and view against sample 0, camera 0.", {"img_shapes": shapes})


@quirk_rule("Q19", "dump", inputs="dump",
            fires="Nq > `num_query`: the first Nq − `num_query` rows are DN queries (warning)")
def _q19(report) -> Finding | None:
    q = report.queries
    if q["num_dn"] <= 0:
        return None
    return Finding(
        "Q19", "warning", f"{q['num_queries']} queries per sample, the first {q['num_dn']} "
        f"({100 * q['dn_share']:.1f}%) are denoising queries: statistics over all rows mix DN "
        "and matching queries.", dict(q))


@quirk_rule("Q28", "dump", inputs="dump",
            fires="always for old-scheme dumps: no `pts_pers` or `pad_size` saved; all DDP ranks "
                  "write the same file name (info)")
def _q28(report) -> Finding | None:
    return Finding(
        "Q28", "info", "old-scheme dumps hold no pts_pers, pad_size or reference points, and every "
        "DDP rank writes the same file name: camera cells and the DN split must be recovered "
        "from elsewhere, and the file is the last rank's batch.")


@quirk_rule("Q29", "dump", inputs="dump",
            fires="maps not 180×180 / 6×40×100 (info), or GT boxes inside `DataContainer` "
                  "(warning): upstream `plot_aqr_weights.py` draws wrongly or crashes")
def _q29(report) -> Finding | None:
    parts, sev = [], "info"
    bev, pers = report.shapes.get("bev"), report.shapes.get("pers")
    if (bev and list(bev) != [180, 180]) or (pers and list(pers) != [6, 40, 100]):
        bev_text = "x".join(map(str, bev)) if bev else "(no BEV map)"
        pers_text = "x".join(map(str, pers)) if pers else "(no camera maps)"
        parts.append(f"the maps are {bev_text} / {pers_text}, but upstream "
                     "plot_aqr_weights.py hard-codes 180x180 / 6x40x100, so its GT boxes are drawn "
                     "at the wrong scale")
    if report.gt_boxes.get("in_data_container"):
        parts.append("the GT boxes are wrapped in DataContainer, on which plot_aqr_weights.py "
                     "crashes (len() raises TypeError)")
        sev = "warning"
    return Finding("Q29", sev, "; ".join(parts) + ".") if parts else None


@quirk_rule("Q38", "dump", inputs="dump",
            fires="always for dumps: `iteration` is the head's per-process forward counter (info)")
def _q38(report) -> Finding | None:
    return Finding(
        "Q38", "info", f"iteration {report.iteration} is the head's per-process forward counter "
        "(evaluation forwards included), not the optimizer iteration.")


def _nonfinite(report) -> Finding | None:
    nf = report.nonfinite
    if not nf.bad:
        return None
    first = ", ".join(f"{b['key']} ({b['nan']} NaN, {b['inf']} Inf)" for b in nf.bad[:3])
    more = f" and {len(nf.bad) - 3} more" if len(nf.bad) > 3 else ""
    return Finding("NONFINITE", "error", f"{len(nf.bad)} tensor(s) hold NaN or Inf: {first}{more}; "
                   "every output computed from them is invalid.", {"tensors": list(nf.bad)})


@quirk_rule("NONFINITE", "checkpoint", inputs="every floating tensor",
            fires="any NaN or Inf value (error)")
def _nonfinite_checkpoint(ctx: CheckpointContext) -> Finding | None:
    return _nonfinite(ctx.report)


quirk_rule("NONFINITE", "dump", inputs="every floating tensor",
           fires="any NaN or Inf value (error)")(_nonfinite)
