"""DN split, nearest-object assignment, per-class preference and bias health, each against a
plain per-query loop written here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from aqr_cli.analysis.health import BANDS, readme_table, scale_health, share_health
from aqr_cli.analysis.objects import (
    assign_queries,
    bootstrap_share,
    preference_by_object,
    query_rows,
    weights_by_query_group,
)
from aqr_cli.core.configs import CLASS_NAMES
from aqr_cli.core.errors import AQRInputError
from conftest import ROOT


def _footprint_distance(x, y, box) -> float:
    """Distance from (x, y) to a rotated rectangle, by hand."""
    cx, cy, _, dx, dy, _, yaw = box[:7]
    px, py = x - cx, y - cy
    lx = px * math.cos(yaw) + py * math.sin(yaw)
    ly = -px * math.sin(yaw) + py * math.cos(yaw)
    ex, ey = max(abs(lx) - dx / 2, 0.0), max(abs(ly) - dy / 2, 0.0)
    return math.hypot(ex, ey)


def test_dn_rows_come_first():
    rows = query_rows(1730, 900)
    assert (rows["dn"].start, rows["dn"].stop) == (0, 830)
    assert (rows["matching"].start, rows["matching"].stop) == (830, 1730)
    g = torch.Generator().manual_seed(0)
    lw = torch.rand(2, 1000, generator=g)
    cw = torch.rand(2, 1000, generator=g)
    lw[:, :100] = -0.9  # DN rows, strongly different
    doc = weights_by_query_group(lw, cw, 900)
    assert doc["dn"]["count"] == 200 and doc["matching"]["count"] == 1800 and doc["all"]["count"] == 2000
    assert doc["dn"]["lidar"]["mean"] == pytest.approx(-0.9)
    assert doc["matching"]["lidar"]["mean"] == pytest.approx(float(lw[:, 100:].mean()), abs=1e-6)
    manual = sum(float(lw[b, q] > cw[b, q]) for b in range(2) for q in range(100, 1000)) / 1800
    assert doc["matching"]["preference"]["prefer_lidar"] == pytest.approx(manual)
    assert weights_by_query_group(lw[:, 100:], cw[:, 100:], 900)["dn"] is None


def test_assignment_matches_a_loop():
    rng = np.random.default_rng(3)
    boxes = np.zeros((6, 9))
    boxes[:, :2] = rng.uniform(-30, 30, (6, 2))
    boxes[:, 3:5] = rng.uniform(0.5, 8, (6, 2))
    boxes[:, 6] = rng.uniform(-3, 3, 6)
    xy = torch.from_numpy(rng.uniform(-40, 40, (500, 2)))
    got = assign_queries(xy, boxes, radius=3.0)
    for q in range(500):
        d = [_footprint_distance(float(xy[q, 0]), float(xy[q, 1]), boxes[i]) for i in range(6)]
        best = int(np.argmin(d))
        assert int(got[q]) == (best if d[best] <= 3.0 else -1)
    assert (got >= 0).sum() > 10  # the test exercises both outcomes
    assert assign_queries(xy, np.zeros((0, 9))).eq(-1).all()
    with pytest.raises(AQRInputError, match=r"\[N, >=7\]"):
        assign_queries(xy, np.zeros((3, 2)))


def test_preference_by_class_matches_a_loop():
    rng = np.random.default_rng(5)
    b, q = 2, 950  # 50 DN rows
    boxes = [np.array([[10, 0, 0, 4.5, 2, 1.6, 0.3, 0, 0], [-12, 6, 0, 0.6, 0.6, 1.7, 0, 0, 0]]),
             np.array([[0, 15, 0, 0.4, 0.4, 1, 0, 0, 0]])]
    labels = [np.array([0, 8]), np.array([9])]
    xy = torch.from_numpy(rng.uniform(-20, 20, (b, q, 2)))
    xy[0, 50:150] = torch.tensor([10.0, 0.0]) + torch.from_numpy(rng.normal(0, 1, (100, 2)))
    xy[0, 150:200] = torch.tensor([-12.0, 6.0]) + torch.from_numpy(rng.normal(0, 0.5, (50, 2)))
    xy[1, 50:120] = torch.tensor([0.0, 15.0]) + torch.from_numpy(rng.normal(0, 0.5, (70, 2)))
    lw = torch.from_numpy(rng.uniform(-1, 1, (b, q))).float()
    cw = torch.from_numpy(rng.uniform(-1, 1, (b, q))).float()
    doc = preference_by_object(lw, cw, xy, boxes, labels, num_query=900, radius=3.0)
    manual: dict = {}
    for s in range(b):
        for i in range(50, q):  # matching rows only
            d = [_footprint_distance(float(xy[s, i, 0]), float(xy[s, i, 1]), bx) for bx in boxes[s]]
            k = int(np.argmin(d))
            name = CLASS_NAMES[labels[s][k]] if d[k] <= 3.0 else None
            manual.setdefault(name, []).append((float(lw[s, i]), float(cw[s, i])))
    assert set(doc["by_class"]) == {"car", "pedestrian", "traffic_cone"}
    for name, pairs in manual.items():
        if name is None:
            continue
        got = doc["by_class"][name]
        assert got["count"] == len(pairs)
        assert got["lidar_mean"] == pytest.approx(np.mean([p[0] for p in pairs]), abs=1e-6)
        assert got["prefer_lidar"] == pytest.approx(np.mean([p[0] > p[1] for p in pairs]))
        lo, hi = got["prefer_lidar_ci95"]
        assert lo <= got["prefer_lidar"] <= hi and hi - lo < 0.5
    small = len(manual["pedestrian"]) + len(manual["traffic_cone"])
    assert doc["by_size"]["small"]["count"] == small
    assert doc["by_size"]["large"]["count"] == len(manual["car"])
    assert doc["by_size"]["none"]["count"] == len(manual[None])


def test_bootstrap_interval_is_deterministic_and_sane():
    hits = torch.zeros(400, dtype=torch.bool)
    hits[:100] = True
    a, b = bootstrap_share(hits, seed=1), bootstrap_share(hits, seed=1)
    assert a == b and a[0] < 0.25 < a[1] and a[1] - a[0] < 0.12
    assert bootstrap_share(torch.zeros(0, dtype=torch.bool)) is None


@pytest.mark.parametrize("eff, ids", [
    (4.7, {"BIAS_SCALE_NEAR_MAX", "BIAS_SCALE_RANGE"}),
    (3.17, set()),
    (0.54, {"BIAS_SCALE_NEAR_MIN", "BIAS_SCALE_RANGE"}),
    (4.2, {"BIAS_SCALE_RANGE"}),
])
def test_scale_health(eff, ids):
    found = scale_health(eff, raw=eff, learnable=True, min_scale=0.5, max_scale=5.0, init=2.5, trained=True)
    assert {f["id"] for f in found} == ids
    sev = {f["id"]: f["severity"] for f in found}
    if eff == 4.2:
        assert sev["BIAS_SCALE_RANGE"] == "info"
    if eff == 4.7:
        assert sev["BIAS_SCALE_RANGE"] == "warning" and all(f["detail"]["band"] for f in found)


def test_scale_stuck_at_init_only_when_trained():
    kw = dict(learnable=True, min_scale=0.5, max_scale=5.0, init=2.5)
    assert [f["id"] for f in scale_health(2.5, raw=2.5, trained=True, **kw)] == ["BIAS_SCALE_STUCK"]
    assert scale_health(2.5, raw=2.5, trained=False, **kw) == []


def test_share_health_bands():
    ok = {"overall": {"positive": 0.5, "strong_positive": 0.1, "strong_negative": 0.05, "near_zero": 0.1}}
    assert share_health(ok) == []
    bad = {"overall": {"positive": 0.658, "strong_positive": 0.5, "strong_negative": 0.05, "near_zero": 0.6}}
    found = {f["id"]: f for f in share_health(bad)}
    assert found["BIAS_POSITIVE"]["severity"] == "info" and "65.8%" in found["BIAS_POSITIVE"]["message"]
    assert found["BIAS_STRONG"]["severity"] == "warning" and "unstable" in found["BIAS_STRONG"]["message"]
    assert found["BIAS_NEAR_ZERO"]["severity"] == "warning" and "AQR failed" in found["BIAS_NEAR_ZERO"]["message"]
    assert found["BIAS_STRONG"]["detail"]["band"] == BANDS[2].text()


def test_readme_holds_the_generated_band_table():
    assert readme_table() in (ROOT / "README.md").read_text(encoding="utf-8")


# ---- through the command

from typer.testing import CliRunner  # noqa: E402

import aqr_cli.cli.commands  # noqa: E402,F401  (registers the commands)
from aqr_cli.cli.app import app  # noqa: E402
from conftest import DUMP  # noqa: E402


def _render(*args):
    return CliRunner().invoke(app, ["render-weights", *map(str, args)], env={"COLUMNS": "120"})


@pytest.fixture(scope="module")
def scene_run(render_scene_run):
    """The session's render-weights run on the synthetic scene (conftest.RENDER_SCENE_ARGS)."""
    res, out = render_scene_run
    assert res.exit_code == 0, res.stderr
    return res, out


def test_scene_model_trend_has_separated_intervals(scene_run):
    import json

    res, out = scene_run
    doc = json.loads((out / "summary.json").read_text())
    by_class = doc["preference"]["by_class"]
    car, cone = by_class["car"]["prefer_lidar_ci95"], by_class["traffic_cone"]["prefer_lidar_ci95"]
    assert cone[1] < car[0]  # cars lean LiDAR, cones camera, intervals apart
    small, large = doc["preference"]["by_size"]["small"], doc["preference"]["by_size"]["large"]
    assert small["prefer_lidar_ci95"][1] < large["prefer_lidar_ci95"][0]
    assert doc["coverage"]["bev"]["coverage"] is not None and doc["coverage"]["camera_views"]
    for name in ("preference_by_class.png", "camera_views.png"):
        assert name in doc["files"] and (out / name).read_bytes()[:4] == b"\x89PNG"
    assert "Preference by class" in res.stdout and "traffic_cone" in res.stdout


def test_class_preference_figure_structure():
    from aqr_cli.plots.readings import class_preference_figure

    by_class = {"car": dict(count=10, lidar_mean=0.5, lidar_std=0.1, camera_mean=0.1, camera_std=0.1,
                            prefer_lidar=0.9, prefer_lidar_ci95=[0.7, 1.0]),
                "pedestrian": dict(count=5, lidar_mean=-0.2, lidar_std=0.1, camera_mean=0.6,
                                   camera_std=0.1, prefer_lidar=0.0, prefer_lidar_ci95=[0.0, 0.0])}
    fig = class_preference_figure(by_class, {}, title="T: synthetic scene", scope="scope text")
    ax, ax2 = fig.axes[:2]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["car (n=10)", "pedestrian (n=5)"]
    assert "95% bootstrap CI" in ax.get_xlabel() and ax.get_xlim() == (0.0, 1.0)
    assert ax2.get_xlim() == (-1.05, 1.05)
    assert "synthetic scene" in fig._suptitle.get_text()
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any(t.startswith("small class") for t in texts) and "LiDAR weight" in texts


def test_camera_views_figure_layout_and_counts():
    from aqr_cli.core.configs import CAMERA_NAMES
    from aqr_cli.plots.readings import camera_views_figure

    w = np.linspace(-1, 1, 60)
    views = np.repeat(np.arange(6), 10)
    views[:3] = -1  # unseen queries are left out
    fig = camera_views_figure(w, views, camera_names=CAMERA_NAMES, title="views")
    titles = {ax.get_title(): ax for ax in fig.axes}
    assert set(titles) == {"FRONT", "FRONT_RIGHT", "FRONT_LEFT", "BACK", "BACK_LEFT", "BACK_RIGHT"}
    front_text = " ".join(t.get_text() for t in titles["FRONT"].texts)
    assert "n=7" in front_text  # view 0 lost its first three queries
    assert titles["FRONT_LEFT"].get_position().x0 < titles["FRONT"].get_position().x0 < \
        titles["FRONT_RIGHT"].get_position().x0


def test_dump_with_dn_rows_reports_groups(tmp_path):
    import json

    d = torch.load(DUMP, map_location="cpu", weights_only=False)
    dn = 130
    g = torch.Generator().manual_seed(0)
    d["lidar_weights"] = torch.cat([torch.full((1, dn), 0.8), d["lidar_weights"]], 1)
    d["camera_weights"] = torch.cat([torch.full((1, dn), -0.7), d["camera_weights"]], 1)
    d["pts_bev"] = torch.cat([torch.randint(0, 128, (1, dn, 2), generator=g).float(), d["pts_bev"]], 1)
    path = tmp_path / "weights_iter_300.pth"
    torch.save(d, path)
    res = _render(path, "-o", tmp_path / "o")
    assert res.exit_code == 0, res.stderr
    doc = json.loads((tmp_path / "o" / "summary.json").read_text())
    groups = doc["weights"]["by_query_group"]
    assert groups["dn"]["count"] == dn and groups["matching"]["count"] == 900
    assert groups["dn"]["camera"]["mean"] == pytest.approx(-0.7)
    matching = d["camera_weights"][0, dn:]
    assert groups["matching"]["camera"]["mean"] == pytest.approx(float(matching.mean()), abs=1e-6)
    assert "DN vs matching queries" in res.stdout
    assert "matching queries (900 of 1030; 130 DN rows left out)" in doc["caption"]["subtitle"]
    from aqr_cli.core.renderer import WeightRenderer

    ren = WeightRenderer(render_method="gaussian", bev_feature_shape=(128, 128), gaussian_sigma=1.0)
    dn_map = ren.render_bev_weights(d["lidar_weights"][:, :dn].clone(), d["pts_bev"][:, :dn])
    assert float(dn_map.max()) > 0.1
    assert doc["maps"]["by_query_group"]["dn"]["bev"]["max"] == pytest.approx(float(dn_map.max()), abs=1e-6)
    assert doc["maps"]["by_query_group"]["dn"]["camera"] is None  # no camera cells without --checkpoint
    assert doc["bias"]["by_query_group"]["dn"]["overall"]["count"] > 0
    assert doc["bias"]["by_query_group"]["all"] == doc["bias"]["in_window"]
    res = _render(path, "--queries", "dn", "-o", tmp_path / "o2")
    assert res.exit_code == 0, res.stderr
    doc = json.loads((tmp_path / "o2" / "summary.json").read_text())
    assert "DN queries only (130 of 1030)" in doc["caption"]["subtitle"]
    res = _render(DUMP, "--queries", "dn", "-o", tmp_path / "o3")
    assert res.exit_code == 1 and "holds no DN rows" in res.stderr and not (tmp_path / "o3").exists()


def _inspect(*args):
    return CliRunner().invoke(app, ["inspect-checkpoint", *map(str, args)], env={"COLUMNS": "120"})


@pytest.mark.parametrize("scale, expect", [(4.7, "BIAS_SCALE_NEAR_MAX"), (2.5, "BIAS_SCALE_STUCK")])
def test_inspect_reports_bias_health(tmp_path, scale, expect):
    import json

    from conftest import CHECKPOINT

    ck = torch.load(CHECKPOINT, map_location="cpu", weights_only=True)
    ck["state_dict"]["pts_bbox_head.attention_bias_generator.bias_scale"] = torch.tensor([scale])
    path = tmp_path / "epoch_6.pth"
    torch.save(ck, path)
    res = _inspect(path, "--json")
    assert res.exit_code == 0, res.stderr
    found = {f["id"]: f for f in json.loads(res.stdout)["findings"]}
    assert found[expect]["severity"] == "warning" and found[expect]["detail"]["band"]
    sev = [f["severity"] for f in json.loads(res.stdout)["findings"]]
    assert sev == sorted(sev, key=["error", "warning", "info"].index)
    human = _inspect(path)
    assert f"{expect} warning" in human.stdout


def test_inspect_dump_with_dn_rows(tmp_path):
    import json

    d = torch.load(DUMP, map_location="cpu", weights_only=False)
    d["lidar_weights"] = torch.cat([torch.full((1, 70), 0.2), d["lidar_weights"]], 1)
    d["camera_weights"] = torch.cat([torch.full((1, 70), 0.9), d["camera_weights"]], 1)
    d["pts_bev"] = torch.cat([torch.zeros(1, 70, 2), d["pts_bev"]], 1)
    path = tmp_path / "weights_iter_5.pth"
    torch.save(d, path)
    res = _inspect(path, "--json")
    assert res.exit_code == 0, res.stderr
    g = json.loads(res.stdout)["weights"]["by_query_group"]
    assert g["dn"]["count"] == 70 and g["dn"]["camera"]["mean"] == pytest.approx(0.9)
    assert g["matching"]["count"] == 900 and g["all"]["count"] == 970
    assert "dn queries" in _inspect(path).stdout


def test_box_edges_in_view_projects_and_clips():
    from aqr_cli.plots.style import box_edges_in_view

    # pinhole looking along +x: u = 100 * (-y) / x + 400, v = 100 * (-z) / x + 160, depth = x
    k = np.array([[400.0, -100.0, 0.0, 0.0], [160.0, 0.0, -100.0, 0.0], [1.0, 0.0, 0.0, 0.0],
                  [0.0, 0.0, 0.0, 1.0]])
    front = np.array([[10.0, 0.0, -1.0, 2.0, 2.0, 2.0, 0.0]])
    edges = box_edges_in_view(front, k, (320, 800), (20, 50))
    assert edges.shape == (12, 2, 2)
    # corner (x=11, y=1, z=-1): u = 400 - 100/11, v = 160 + 100/11, in cells (scale 1/16) - 0.5
    u, v = 400 - 100 / 11, 160 + 100 / 11
    expect = np.array([u / 16 - 0.5, v / 16 - 0.5])
    assert np.isclose(edges.reshape(-1, 2), expect, atol=1e-9).all(1).any()
    behind = front.copy()
    behind[0, 0] = -10.0
    assert box_edges_in_view(behind, k, (320, 800), (20, 50)).shape == (0, 2, 2)
    crossing = front.copy()
    crossing[0, 0], crossing[0, 3] = 0.5, 4.0  # spans depth -1.5 .. 2.5
    cut = box_edges_in_view(crossing, k, (320, 800), (20, 50))
    assert 0 < len(cut) <= 12 and np.isfinite(cut).all()


def test_camera_figures_draw_projected_boxes(scene_run):
    from matplotlib.collections import LineCollection

    from aqr_cli.analysis.sources import sample_rig, synthetic
    from aqr_cli.inputs.settings import Overrides
    from aqr_cli.plots.weights import bias_heatmap_figure, camera_weight_figure

    src = synthetic(Overrides(weights="scene"), None, None)
    rig = sample_rig(src, 0)
    assert rig is not None and len(src.boxes[0])
    pers = np.zeros(src.cfg.pers_shape)
    fig = camera_weight_figure(pers, src.camera_weights[0].numpy(), src.pts_pers[0].numpy(),
                               boxes=src.boxes[0], rig=rig)
    lines = [c for ax in fig.axes if ax.texts for c in ax.collections if isinstance(c, LineCollection)]
    assert len(lines) >= 2        # (colour bars hold line collections too: only the camera tiles)
    # the views are tiles of one axes: each view's edges are clipped to its own tile (an edge
    # leaving one view must not be drawn over the next)
    h, w = src.cfg.pers_shape[1:]
    for c in lines:
        (x0, y0), (x1, y1) = c.axes.transData.inverted().transform(c.get_clip_box().get_points())
        assert (abs(x1 - x0), abs(y1 - y0)) == pytest.approx((w, h))    # a tile, not the axes
        edges = np.concatenate(c.get_segments())
        assert ((edges[:, 0] > min(x0, x1)) & (edges[:, 0] < max(x0, x1))).any()   # in its tile
    fig = bias_heatmap_figure(np.zeros(src.cfg.bev_shape), pers, src.cfg.pc_range, 2.5,
                              boxes=src.boxes[0], rig=rig)
    assert sum(isinstance(c, LineCollection) for ax in fig.axes for c in ax.collections) >= 2


def test_camera_coverage_per_view_matches_a_loop():
    from aqr_cli.analysis.placement import box_masks
    from aqr_cli.analysis.render import render_maps_and_bias
    from aqr_cli.analysis.sources import synthetic
    from aqr_cli.inputs.settings import Overrides

    src = synthetic(Overrides(weights="scene"), None, None)
    res = render_maps_and_bias(src, "gaussian")
    cov = res.summary["coverage"]
    _, cam_masks, _ = box_masks(src)
    pers = res.pers_map[0].double()
    union = cam_masks[0].any(0)                       # [V, h, w]
    for v, name in enumerate(src.camera_names):
        inside = total = 0.0
        for r in range(pers.shape[1]):
            for c in range(pers.shape[2]):
                total += float(pers[v, r, c])
                if bool(union[v, r, c]):
                    inside += float(pers[v, r, c])
        got = cov["camera_views"][name]["coverage"]
        assert (got is None and total == 0) or got == pytest.approx(inside / total, rel=1e-9)
    whole = float((pers * union).sum() / pers.sum())
    assert cov["camera"]["coverage"] == pytest.approx(whole, rel=1e-9)
