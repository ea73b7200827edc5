"""Structural checks of the compare-modes figures on small inputs, and one PNG smoke test."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.colors import LogNorm, TwoSlopeNorm

from aqr_cli.analysis.attention import (
    AttentionPath, CrossAttentionWeights, WindowBias, compute_attention, query_groups,
)
from aqr_cli.analysis.features import compare_features, rasterize_boxes_bev
from aqr_cli.analysis.sweep import bias_scale_sweep
from aqr_cli.core.configs import CAMERA_NAMES, CLASS_NAMES
from aqr_cli.plots.compare import (
    attention_heatmap_figure, feature_histogram_figure, gain_map_figure, summary_figure, sweep_figure,
)

PC = [-8.0, -8.0, -5.0, 8.0, 8.0, 3.0]
BEV, PERS = (8, 8), (6, 2, 4)
NB, F = 64, 64 + 48
BOXES = np.array([[2.0, 2.0, -1.0, 4.0, 2.0, 1.5, 0.3, 0, 0], [-4.0, -3.0, -1.0, 0.7, 0.7, 1.7, 0, 0, 0]])
LABELS = np.array([CLASS_NAMES.index("car"), CLASS_NAMES.index("pedestrian")])


@pytest.fixture(scope="module")
def results():
    gen = torch.Generator().manual_seed(0)
    bev, cam = torch.randn(1, 4, *BEV, generator=gen), torch.randn(6, 4, 2, 4, generator=gen)
    g_bev = 0.7 + torch.rand(1, *BEV, generator=gen)
    g_cam = 0.7 + 1.5 * torch.rand(1, *PERS, generator=gen)
    masks = [rasterize_boxes_bev(BOXES, BEV, PC)]
    features = compare_features(bev, cam, bev_multiplicative=bev * g_bev[:, None],
                                cam_multiplicative=cam * g_cam.view(6, 1, 2, 4), bev_gain=g_bev,
                                cam_gain=g_cam, bev_weight_map=g_bev - 0.7, bev_masks=masks,
                                labels=[LABELS], bins=12)
    q, k = torch.randn(1, 5, 16, generator=gen), torch.randn(1, F, 16, generator=gen)
    idx = torch.stack([torch.randperm(F, generator=gen)[:6] for _ in range(5)]).unsqueeze(0)
    bias = WindowBias(idx, torch.rand(1, 5, 6, generator=gen), torch.ones(1, 5, 6, dtype=torch.bool))
    w = CrossAttentionWeights.identity(16, 2)
    res = compute_attention(q, k, w, num_bev=NB, keep_rows=[0, 3], paths=[
        AttentionPath("baseline"), AttentionPath("multiplicative", keys=1.1 * k),
        AttentionPath("additive", bias=bias.with_values(2.5 * bias.values))])
    groups = query_groups(torch.rand(1, 5, generator=gen), torch.rand(1, 5, generator=gen),
                          torch.zeros(1, 5, 2), [BOXES], [LABELS])
    sweep = bias_scale_sweep(q, k, w, bias, [0.5, 2.5, 6.0], num_bev=NB, groups=groups)
    return dict(features=features, g_bev=g_bev, g_cam=g_cam, res=res, groups=groups, sweep=sweep)


def colorbar_labels(fig) -> list[str]:
    """Labels of the figure's colorbars (axes made by ``colorbar``, with or without ``cax``)."""
    return [ax.get_ylabel() for ax in fig.axes
            if ax.get_label() == "<colorbar>" or getattr(ax, "_colorbar", None) is not None]


def test_feature_histogram_figure(results):
    fig = feature_histogram_figure(results["features"])
    assert len(fig.axes) == 4
    titles = [ax.get_title() for ax in fig.axes]
    assert any("BEV" in t and "multiplicative" in t for t in titles)
    assert any("camera" in t and "additive" in t for t in titles)
    assert all(ax.get_yscale() == "log" and ax.get_xlabel() for ax in fig.axes)


def test_gain_map_figure_is_centred_at_one(results):
    gs = {m: results["features"]["multiplicative"][m]["gain"] for m in ("bev", "camera")}
    fig = gain_map_figure(results["g_bev"][0].numpy(), results["g_cam"][0].numpy(), PC, boxes=BOXES,
                          box_labels=["car", "pedestrian"], gain_stats=gs)
    images = [im for ax in fig.axes for im in ax.get_images()]
    assert len(images) == 7
    assert all(isinstance(im.norm, TwoSlopeNorm) and im.norm.vcenter == 1.0 for im in images)
    labels = colorbar_labels(fig)
    assert len(labels) == 1 and "gain" in labels[0]
    cam_titles = {t.get_text().split(" ")[0] for ax in fig.axes for t in ax.texts}
    assert {n[4:] for n in CAMERA_NAMES} <= cam_titles
    assert len(fig.axes) == 1 + 1 + 1 + 1      # BEV, the six cameras as tiles of one axes, colorbar, histogram
    bare = gain_map_figure(np.full(BEV, 0.7), np.full(PERS, 0.7), PC)
    assert bare.axes[0].get_images()[0].norm.vcenter == 1.0 and len(bare.axes) == 3


def test_attention_heatmap_figure(results):
    res = results["res"]
    rows = {p: res.rows[p][0, 1].numpy() for p in res.paths}
    stats = {p: {m: float(v[0, 3]) for m, v in res.per_query[p].items()} for p in res.paths}
    fig = attention_heatmap_figure(rows, BEV, PERS, PC, query_xy=(1.0, -2.0), query_cell=(3, 1, 2),
                                   query_index=3, stats=stats, boxes=BOXES,
                                   title="Cross-attention of query 3, strongest LiDAR preference",
                                   subtitle="synthetic scene (seed 0); 800x320; sample 0 of 1")
    images = [im for ax in fig.axes for im in ax.get_images()]
    assert len(images) == 5 * 7          # three paths, then two differences against the baseline
    paths = [im for im in images if isinstance(im.norm, LogNorm)]
    diffs = [im for im in images if isinstance(im.norm, TwoSlopeNorm)]
    assert len(paths) == 3 * 7 and len(diffs) == 2 * 7
    assert len({(im.norm.vmin, im.norm.vmax) for im in paths}) == 1   # one shared scale
    assert all(im.norm.vcenter == 0 and im.norm.vmin == -im.norm.vmax for im in diffs)
    # the difference panels hold path - baseline, and their range covers the largest change
    add_bev = next(im for im in diffs if im.axes.get_title().startswith("additive - baseline"))
    want = rows["additive"][:NB].reshape(BEV) - rows["baseline"][:NB].reshape(BEV)
    np.testing.assert_allclose(np.asarray(add_bev.get_array()), want, atol=1e-7)
    big = max(np.abs(rows[p] - rows["baseline"]).max() for p in ("additive", "multiplicative"))
    assert diffs[0].norm.vmax == pytest.approx(big)
    labels = colorbar_labels(fig)
    assert "attention" in labels[0] and "difference" in labels[1]
    assert any(t.startswith("additive:") and "KL" in t for t in (ax.get_title() for ax in fig.axes))
    head = fig._suptitle.get_text()
    assert "strongest LiDAR preference" in head and "sample 0 of 1" in head
    # no legend may sit on the BEV maps (it hid the query's window before)
    assert all(ax.get_legend() is None for ax in fig.axes)
    with pytest.raises(ValueError):
        attention_heatmap_figure({"baseline": np.ones(10)}, BEV, PERS, PC)


def test_sweep_figure(results):
    fig = sweep_figure(results["sweep"])
    assert len(fig.axes) == 9                    # 8 panels + twin axis
    assert all(ax.get_xlabel().startswith("bias scale") for ax in fig.axes[:8])
    texts = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert any("sensitive" in t for t in texts) and any("saturated" in t for t in texts)
    same = sweep_figure(results["sweep"].to_dict())
    assert len(same.axes) == 9


def test_summary_figure_draws_nearest_object_panel_and_uniform_warning(results):
    """The by-nearest-object panel takes its values from the summary.json section, and a
    near-uniform baseline is stamped on the attention panels."""
    doc = results["res"].to_dict(results["groups"])
    section = dict(doc["paths"], settings=doc["settings"],
                   information={"informative": False, "baseline_entropy_norm": 0.9998})
    fig = summary_figure({"features": results["features"], "attention": section, "sweep": None},
                         subtitle="debug dump x.pth; 800x320",
                         warnings=["checkpoint config never applies the bias (Q15)"])
    panel = next(ax for ax in fig.axes if ax.get_title().startswith("Attention shift vs baseline"))
    heights = [b.get_height() for b in panel.patches]
    add = doc["paths"]["additive"]
    want = [add["overall"]["kl_from_reference"]["mean"]] + [
        add["by_size"][g]["kl_from_reference"]["mean"] or 0.0 for g in ("small", "large", "none")]
    assert any(np.allclose(heights[i:i + 4], want) for i in range(len(heights) - 3))
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("no information" in t for t in texts)
    head = fig._suptitle.get_text()
    assert "Q15" in head and "debug dump x.pth" in head


def test_summary_figure_with_and_without_attention(results):
    doc = results["res"].to_dict(results["groups"])
    section = dict(doc["paths"], settings=doc["settings"])
    fig = summary_figure({"features": results["features"], "attention": section,
                          "sweep": results["sweep"].to_dict()}, notes=["synthetic"])
    titles = [ax.get_title() for ax in fig.axes]
    assert "Attention per path" in titles and "Bias-scale sweep (additive path)" in titles
    skipped = {"settings": {"status": "skipped", "reason": "feature width 16 != 256"}}
    fig2 = summary_figure({"features": results["features"], "attention": skipped, "sweep": None})
    texts = [t.get_text() for ax in fig2.axes for t in ax.texts]
    assert any("attention skipped" in t and "16" in t for t in texts)
    assert any("no bias-scale sweep" in t for t in texts)


def test_png_smoke(results, tmp_path):
    fig = sweep_figure(results["sweep"])
    path = tmp_path / "sweep.png"
    fig.savefig(path, metadata={"Software": None})
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_every_compare_figure_carries_the_run_caption(results):
    sub = "checkpoint epoch_6.pth on a synthetic scene (seed 0); 1600x640; sample 1 of 2; --sigma 2"
    figs = [feature_histogram_figure(results["features"], subtitle=sub),
            gain_map_figure(results["g_bev"][0].numpy(), results["g_cam"][0].numpy(), PC, subtitle=sub),
            sweep_figure(results["sweep"], subtitle=sub, notes=["baseline attention is near-uniform"]),
            summary_figure({"features": results["features"]}, subtitle=sub)]
    for fig in figs:
        head = " ".join(fig._suptitle.get_text().split())
        assert "checkpoint epoch_6.pth on a synthetic scene" in head and "sample 1 of 2" in head
        assert "--sigma 2" in head
    assert "WARNING: baseline attention is near-uniform" in figs[2]._suptitle.get_text()
