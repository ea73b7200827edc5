"""Checkpoint rules on geometry: the BEV grid, learned reference points and the camera rig."""

from __future__ import annotations

from aqr_cli.analysis.findings.context import (
    FLASH,
    CheckpointContext,
    attention_types,
    setting,
    share,
)
from aqr_cli.analysis.findings.registry import Finding, quirk_rule


@quirk_rule("Q2", ("checkpoint", "config"),
            inputs="config, checkpoint reference points",
            fires="`pc_range` is not ±54 m in x/y or the BEV grid is not square (the mapping is "
                  "hard-coded), or learned reference points fall outside the BEV grid (warning)")
def _q2(ctx: CheckpointContext) -> Finding | None:
    parts, detail = [], {}
    pc = setting(ctx.cfg, None, "pc_range")
    bev = ctx.report.shapes.bev
    if isinstance(pc, (list, tuple)) and len(pc) == 6:
        if [float(pc[0]), float(pc[1]), float(pc[3]), float(pc[4])] != [-54.0, -54.0, 54.0, 54.0]:
            parts.append(f"pc_range x/y is {pc[0]}..{pc[3]} / {pc[1]}..{pc[4]} m, not the hard-coded "
                         "+-54 m")
            detail["pc_range"] = list(pc)
    if bev and None not in bev and bev[0] != bev[1]:
        parts.append(f"the BEV grid is {bev[0]}x{bev[1]}, but columns are mapped with bev_h")
        detail["bev"] = list(bev)
    refs = ctx.report.reference_points
    if refs is not None and refs.bev_outside_grid:
        parts.append(f"{share(refs.bev_outside_grid, refs.count)} learned reference points map "
                     "outside the BEV grid")
        detail["bev_outside_grid"] = refs.bev_outside_grid
    if not parts or not ctx.aqr_enabled:
        return None
    return Finding("Q2", "warning", "; ".join(parts) + ": project_3d_to_features places these "
                   "queries in the wrong BEV cells or off the grid, where the renderer skips them "
                   "and the LAM/bias keep partial windows.", detail)


@quirk_rule("Q3", "checkpoint",
            inputs="reference points + rig",
            fires="learned reference points that no camera sees under the upstream "
                  "first-valid-view rule (they get the (0, 0, 0) sentinel) (warning)")
def _q3(ctx: CheckpointContext) -> Finding | None:
    refs = ctx.report.reference_points
    if refs is None or refs.unseen_count is None or not refs.unseen_count or not ctx.aqr_enabled:
        return None
    return Finding("Q3", "warning", f"{share(refs.unseen_count, refs.count)} learned reference "
                   f"points are seen by no camera under the {refs.rig} rig: they get the (0, 0, 0) "
                   "sentinel, so their camera weight, LAM window and bias window land on "
                   "CAM_FRONT cell (0, 0).", {"count": refs.unseen_count, "total": refs.count,
                                              "rig": refs.rig})


@quirk_rule("Q4", "checkpoint",
            inputs="reference points + rig",
            fires="the camera chosen without a depth test differs from the one with a depth test "
                  "(info)")
def _q4(ctx: CheckpointContext) -> Finding | None:
    refs = ctx.report.reference_points
    if refs is None or not refs.depth_test_disagree or not ctx.aqr_enabled:
        return None
    return Finding("Q4", "info", f"{share(refs.depth_test_disagree, refs.count)} reference "
                   "points get a different camera from AQR's projection (no depth test, sample-0 "
                   "img_shape) than from a true depth test: their camera cell is wrong.",
                   {"count": refs.depth_test_disagree})


@quirk_rule("Q5", "checkpoint",
            inputs="reference points + rig",
            fires="reference points seen by two or more cameras: AQR keeps the first view, the "
                  "query embedding sums all (info)")
def _q5(ctx: CheckpointContext) -> Finding | None:
    refs = ctx.report.reference_points
    if refs is None or not refs.multi_view_count or not ctx.aqr_enabled:
        return None
    return Finding("Q5", "info", f"{share(refs.multi_view_count, refs.count)} reference points "
                   "are seen by two or more cameras: AQR uses only the first (lowest-index) view "
                   "while the query position embedding sums all views that see them.",
                   {"count": refs.multi_view_count})


@quirk_rule("Q10", ("checkpoint", "config"),
            inputs="config",
            fires="the camera LAM window spans the whole feature-map height (`pers_h <= 2⌊c/2⌋`): "
                  "rows wrap into the neighbouring view (warning; info while the encoder ignores "
                  "the LAM)")
def _q10(ctx: CheckpointContext) -> Finding | None:
    windows, pers = ctx.report.shapes.aqr_window_sizes, ctx.report.shapes.pers
    if not (isinstance(windows, (list, tuple)) and windows and pers and pers[1]) or not ctx.aqr_enabled:
        return None
    c = windows[0]
    if not isinstance(c, int) or pers[1] > 2 * (c // 2):
        return None
    honours = FLASH not in attention_types(getattr(ctx.cfg, "encoder_attention", None))
    return Finding("Q10", "warning" if honours else "info",
                   f"the camera LAM window {c} spans {2 * (c // 2) + 1} rows but the camera map has "
                   f"only {pers[1]}: the flat-index window wraps into the neighbouring view"
                   + ("." if honours else " (moot while the encoder ignores the LAM, Q16)."),
                   {"camera_window": c, "pers_h": pers[1]})


@quirk_rule("Q20", "checkpoint",
            inputs="checkpoint reference points",
            fires="reference points outside [0, 1]: AQR uses them raw, the query embedding clamps "
                  "(warning)")
def _q20(ctx: CheckpointContext) -> Finding | None:
    refs = ctx.report.reference_points
    if refs is None or not refs.outside_closed_count or not ctx.aqr_enabled:
        return None
    return Finding("Q20", "warning", f"{share(refs.outside_closed_count, refs.count)} learned "
                   "reference points lie outside [0, 1]: AQR projects the raw values while the "
                   "query embedding clamps them, so the AQR windows and the query positions "
                   "disagree.", {"count": refs.outside_closed_count,
                                 "min": refs.min, "max": refs.max})


@quirk_rule("Q37", ("checkpoint", "config"),
            inputs="config",
            fires="non-square BEV grid: `coords_bev` swaps its names (warning)")
def _q37(ctx: CheckpointContext) -> Finding | None:
    bev = ctx.report.shapes.bev
    if not bev or None in bev or bev[0] == bev[1]:
        return None
    return Finding("Q37", "warning", f"the BEV grid is {bev[0]}x{bev[1]}: coords_bev crosses its "
                   "x/y names and divisors, which is harmless only for square grids, so the BEV "
                   "position embedding is wrong here.", {"bev": list(bev)})


