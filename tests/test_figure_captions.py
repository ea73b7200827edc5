"""Figures say what they show: captions, activation-aware scales, keys, flags, sample scope.

Structural checks of every render-weights figure builder on small inputs, of the caption
built once per run, and of one command run that exercises sample selection, a clamped
--bias-scale and the Q25 map conditions.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from matplotlib.colors import Normalize, TwoSlopeNorm
from typer.testing import CliRunner

import aqr_cli.cli.commands  # noqa: F401  (registers the commands)
from aqr_cli.analysis.caption import describe_run
from aqr_cli.analysis.stats import preference_shares
from aqr_cli.cli.app import app
from aqr_cli.core.configs import CAMERA_NAMES, reference_config
from aqr_cli.plots.style import camera_label
from aqr_cli.plots.weights import (
    bev_weight_figure, bias_heatmap_figure, camera_weight_figure, methods_figure, query_panel_figure,
)

PC = [-54.0, -54.0, -5.0, 54.0, 54.0, 3.0]
runner = CliRunner()


def _src(kind="dump", batch=4, name="800x320", lw=None, cw=None, **kw):
    lw = torch.tensor([[0.2, 0.9, 0.0]] * batch) if lw is None else lw
    cw = torch.tensor([[-0.3, 0.5, 0.1]] * batch) if cw is None else cw
    base = dict(kind=kind, label="weights_iter_7.pth", iteration=7, cfg=reference_config(name),
                lidar_weights=lw, camera_weights=cw, batch_size=batch, head_state={"x": 1},
                checkpoint_path="/runs/epoch_6.pth", notes=[])
    base.update(kw)
    return SimpleNamespace(**base)


def _suptitle(fig) -> str:
    return fig._suptitle.get_text() if fig._suptitle is not None else ""


def _colorbar_labels(fig) -> list[str]:
    return [ax.get_ylabel() for ax in fig.axes if getattr(ax, "_colorbar", None) is not None]


# ----------------------------------------------------------------------------- caption

def test_caption_names_source_kind_configuration_sample_and_changes():
    opts = dict(activation="sigmoid", lam="honour", method="bilinear", sigma=2.0, bias_scale=10.0,
                bias_window=5, seed=3)
    cap = describe_run(_src(), 2, opts, bias_scale_effective=5.0)
    assert cap.source.startswith("debug dump weights_iter_7.pth, iteration 7")
    assert "checkpoint epoch_6.pth" in cap.source
    assert cap.config.startswith("800x320") and cap.sample == "sample 2 of 4"
    # recorded weights: the generator flags did not change them
    assert cap.changes == ["--method bilinear", "--sigma 2", "--bias-scale 10 (clamped to 5)",
                           "--bias-window 5"]
    assert cap.activation == "tanh" and "inferred" in cap.activation_from
    sub = cap.subtitle()
    assert all(part in sub for part in (cap.source, cap.config, cap.sample, *cap.changes))

    ck = describe_run(_src(kind="checkpoint", name="1600x640", label="epoch_6.pth"), 0,
                      dict(activation="sigmoid", lam="honour", seed=0))
    assert "checkpoint epoch_6.pth on a synthetic scene" in ck.source
    assert ck.config.startswith("1600x640")
    assert ck.changes == ["--activation sigmoid", "--lam honour"] and ck.activation == "sigmoid"

    syn = describe_run(_src(kind="synthetic", head_state={}, checkpoint_path=None), 0, dict(seed=4))
    assert syn.source == "synthetic scene (seed 4) with randomly initialised generator weights (seed 4)"
    assert syn.subtitle().endswith("settings as in the config")
    scene = describe_run(_src(kind="synthetic", notes=["weights: synthetic scene model"]), 0,
                         dict(weights="scene", seed=0, activation="sigmoid"))
    assert "scene-model weights" in scene.source and scene.activation == "tanh"
    syn_ck = describe_run(_src(kind="synthetic"), 0, dict(checkpoint="/x/epoch_6.pth"))
    assert "generator weights from checkpoint epoch_6.pth" in syn_ck.source


def test_sigmoid_dump_is_recognised_from_its_weights():
    src = _src(lw=torch.tensor([[0.1, 0.9]]), cw=torch.tensor([[0.05, 0.97]]), batch=1)
    assert describe_run(src, 0, {}).activation == "sigmoid"


# ----------------------------------------------------------------------------- builders

@pytest.mark.parametrize("activation, cmap, lo", [("tanh", "RdBu_r", -1.0), ("sigmoid", "viridis", 0.0)])
def test_bev_figure_follows_the_activation(activation, cmap, lo):
    lw = np.linspace(lo, 1, 5)
    fig = bev_weight_figure(np.ones((16, 16)), lw, np.full((5, 2), 3.0), PC, activation=activation,
                            title="LiDAR weights", subtitle="debug dump x.pth; 800x320; sample 0 of 1")
    scatter = [c for ax in fig.axes for c in ax.collections if c.get_array() is not None]
    per_query = [c for c in scatter if c.get_cmap().name == cmap]
    assert per_query and per_query[0].norm.vmin == lo and per_query[0].norm.vmax == 1.0
    assert isinstance(per_query[0].norm, TwoSlopeNorm if activation == "tanh" else Normalize)
    assert any(activation in lab for lab in _colorbar_labels(fig))
    assert not any(("tanh" if activation == "sigmoid" else "sigmoid") in lab
                   for lab in _colorbar_labels(fig))
    assert "debug dump x.pth" in _suptitle(fig)


def test_camera_figure_keys_markers_and_says_unknown():
    pers = np.zeros((6, 4, 5))
    pts = np.array([[0, 1, 1], [2, 3, 4], [5, 0, 0]], dtype=float)
    fig = camera_weight_figure(pers, np.array([0.2, 0.5, 0.9]), pts, activation="sigmoid",
                               method="bilinear", subtitle="synthetic scene (seed 0)")
    labels = _colorbar_labels(fig)
    assert any(lab.startswith("markers: per-query camera") and "sigmoid" in lab for lab in labels)
    assert "camera maps all zero" in _suptitle(fig) and "Q25" in _suptitle(fig)   # flagged
    bar = next(ax for ax in fig.axes if ax.get_ylabel().startswith("rendered camera"))
    assert bar.get_ylim()[1] == pytest.approx(1.5)          # not a 1e-6 range on an empty map
    (mosaic,) = [ax for ax in fig.axes if ax.texts]          # the six views are tiles of one axes
    origins = {t.get_text().split()[0]: (t.xy[0] - 2.0, t.xy[1] + 0.5) for t in mosaic.texts}
    assert len(origins) == 6 and any("1 queries" in t.get_text() for t in mosaic.texts)
    # each marker sits on its cell (view, h, w) of its view's tile
    marks = np.asarray(mosaic.collections[-1].get_offsets())
    want = [np.add(origins[camera_label(CAMERA_NAMES[int(v)])], (w, h)) for v, h, w in pts]
    np.testing.assert_allclose(marks, want)
    unknown = camera_weight_figure(np.ones((6, 4, 5)), np.array([0.2, 0.5, 0.9]), None)
    titles = [t.get_text() for ax in unknown.axes for t in ax.texts]
    assert len(titles) == 6 and all("queries unknown" in t for t in titles)
    assert not any(" 0 queries" in t for t in titles)
    assert not any(lab.startswith("markers") for lab in _colorbar_labels(unknown))


def test_bias_heatmaps_fixed_range_and_effective_scale_on_the_bar():
    bev = np.zeros((16, 16))
    bev[2, 2] = 0.4
    figs = [bias_heatmap_figure(bev, np.zeros((6, 4, 5)), PC, s, limit=5.0) for s in (0.5, 3.17)]
    for fig, s in zip(figs, (0.5, 3.17)):
        ims = [im for ax in fig.axes for im in ax.get_images()]
        assert all(im.norm.vmax == 5.0 and im.norm.vmin == -5.0 for im in ims)   # compare by eye
        bar = next(ax for ax in fig.axes if getattr(ax, "_colorbar", None) is not None)
        assert f"{s:.3g}" in bar.get_ylabel() and "fixed" in bar.get_ylabel()
        dashes = sorted(line.get_ydata()[0] for line in bar.lines)
        assert dashes == pytest.approx([-s, s])


def test_query_panel_axes_and_legend_follow_the_activation():
    rng = np.random.default_rng(0)
    lw, cw = rng.uniform(0.4, 1, 300), rng.uniform(0, 0.6, 300)
    shares = preference_shares(torch.tensor(lw), torch.tensor(cw))
    fig = query_panel_figure(lw, cw, shares, activation="sigmoid", subtitle="sample 2 of 4")
    ax_sc, ax_h, ax_bar = fig.axes[:3]
    assert ax_sc.get_xlim()[0] > -0.1 and ax_h.get_xlim() == (0.0, 1.0)
    assert "sigmoid" in ax_sc.get_xlabel() and "sigmoid" in ax_h.get_xlabel()
    heights = [b.get_height() for b in ax_bar.patches]
    assert heights == pytest.approx([shares["prefer_lidar"], shares["prefer_camera"], shares["balanced"]])
    # the legend must not sit on the points (LiDAR-heavy data fills the lower right)
    fig.canvas.draw()
    box = ax_sc.get_legend().get_window_extent()
    pts = ax_sc.transData.transform(np.stack([cw, lw], axis=1))
    inside = ((pts[:, 0] >= box.x0) & (pts[:, 0] <= box.x1) & (pts[:, 1] >= box.y0) & (pts[:, 1] <= box.y1))
    assert not inside.any()
    labels = [t.get_window_extent() for t in (ax_sc.xaxis.label,)]
    assert not any(box.overlaps(lab) for lab in labels)          # nor on the axis label
    assert "sample 2 of 4" in _suptitle(fig)


def test_methods_figure_flags_saturated_and_empty_maps():
    sat = np.full((16, 16), 1.5)
    res = {"gaussian": (np.eye(16), np.ones((6, 4, 5))), "distance_weighted": (sat, np.zeros((6, 4, 5)))}
    fig = methods_figure(res, PC, clamp=1.5, subtitle="synthetic scene (seed 0)")
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("saturated: 100% of cells at the clamp 1.5" in t for t in texts)
    assert any("all zero (Q25)" in ax.get_title() for ax in fig.axes)
    assert "synthetic scene (seed 0)" in _suptitle(fig)


# ----------------------------------------------------------------------------- one command run

@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cap") / "out"
    res = runner.invoke(app, ["render-weights", "--synthetic", "--weights", "scene", "--batch-size",
                              "2", "--sample", "1", "--method", "all", "--bias-scale", "10",
                              "--save-arrays", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    return out, json.loads(res.stdout)


def test_sample_k_is_sample_k_and_batch_numbers_say_so(sample_run):
    out, doc = sample_run
    arrays = np.load(out / "arrays.npz")
    lw, cw = torch.from_numpy(arrays["lidar_weights"]), torch.from_numpy(arrays["camera_weights"])
    assert doc["sample"]["index"] == 1 and doc["caption"]["sample"] == "sample 1 of 2"
    mine = preference_shares(lw[1:2], cw[1:2])
    assert doc["sample"]["preference"]["prefer_lidar"] == pytest.approx(mine["prefer_lidar"])
    assert doc["preference"]["prefer_lidar"] == pytest.approx(preference_shares(lw, cw)["prefer_lidar"])
    for key in ("weights", "preference", "maps", "bias"):
        assert doc[key]["scope"].startswith("batch-wide: all 2 sample(s)")
    assert doc["sample"]["scope"].startswith("sample 1 only")


def test_clamped_scale_and_map_conditions_are_quirks(sample_run):
    _, doc = sample_run
    assert doc["bias"]["scale_effective"] == pytest.approx(5.0)
    assert "--bias-scale 10 (clamped to 5)" in doc["caption"]["changes"]
    q = {(x["id"], x["message"].split(":")[0]) for x in doc["quirks"]}
    assert any(i == "Q13" for i, _ in q)
    msgs = [x["message"] for x in doc["quirks"] if x["id"] == "Q25"]
    assert any("bilinear" in m and "distance_weighted" in m and "all zero" in m for m in msgs)
    assert any(m.startswith("distance_weighted BEV weight map is saturated") for m in msgs)
    assert doc["methods"]["distance_weighted"]["bev"]["max"] == pytest.approx(1.5)


def test_evolution_figure_keeps_legends_off_the_data():
    from aqr_cli.plots.evolution import evolution_figure

    rows = [dict(name=f"weights_iter_{i}", iteration=i, lidar_mean=0.7, lidar_std=0.3, camera_mean=0.6,
                 camera_std=0.4, prefer_lidar=0.5, bev_map_max=0.4, camera_map_max=1.5,
                 bias_in_window_mean=2.0, bias_in_window_std=1.1, bias_scale=3.17) for i in (100, 200)]
    fig = evolution_figure(rows, activation="sigmoid")
    fig.canvas.draw()
    for ax in fig.axes:
        leg = ax.get_legend()
        assert leg is not None and not leg.get_window_extent().overlaps(ax.get_window_extent())
    assert "sigmoid" in fig.axes[0].get_ylabel()
    assert "debug dumps" in _suptitle(fig) and "iteration order" in _suptitle(fig)


def test_box_labels_of_clustered_objects_do_not_overlap():
    boxes = np.array([[0.0, -30.0, -1, 0.4, 0.4, 1, 0, 0, 0], [1.0, -30.5, -1, 0.4, 0.4, 1, 0, 0, 0],
                      [-2.0, -29.5, -1, 4.0, 2.0, 1.5, 0, 0, 0]])
    fig = bev_weight_figure(np.ones((16, 16)), np.zeros(3), np.full((3, 2), 3.0), PC, boxes=boxes,
                            box_labels=["traffic_cone", "traffic_cone", "car"])
    fig.canvas.draw()
    ax = fig.axes[0]
    boxes_px = [t.get_window_extent() for t in ax.texts if t.get_text() in ("traffic_cone", "car")]
    assert len(boxes_px) == 3
    assert not any(a.overlaps(b) for i, a in enumerate(boxes_px) for b in boxes_px[i + 1:])
