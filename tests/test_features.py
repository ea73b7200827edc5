"""Feature statistics of the multiplicative and additive paths, gains, boxes, energy, coverage."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from aqr_cli.analysis.features import (
    apply_multiplicative, bias_coverage, change_stats, compare_features, energy_in_boxes, gain_stats,
    quantiles, rasterize_boxes_bev, rasterize_boxes_camera, value_histograms, weight_coverage,
)
from aqr_cli.analysis.attention import WindowBias
from aqr_cli.core.configs import CLASS_NAMES
from aqr_cli.core.errors import AQRInputError
from aqr_cli.core.modulator import FeatureModulator
from aqr_cli.core.renderer import WeightRenderer

pytestmark = pytest.mark.filterwarnings("ignore::aqr_cli.core.errors.QuirkWarning")

PC = [-10.0, -10.0, -5.0, 10.0, 10.0, 3.0]   # 20 x 20 m, 1 m cells on a 20 x 20 grid
CAR, PED = CLASS_NAMES.index("car"), CLASS_NAMES.index("pedestrian")


def box(x, y, dx, dy, yaw=0.0, z=-1.0, dz=1.5):
    return [x, y, z, dx, dy, dz, yaw, 0.0, 0.0]


# ----- change statistics -----

def test_additive_path_change_is_exactly_zero():
    gen = torch.Generator().manual_seed(0)
    bev, cam = torch.randn(2, 8, 20, 20, generator=gen), torch.randn(12, 8, 5, 10, generator=gen)
    g_bev, g_cam = 0.7 + torch.rand(2, 20, 20, generator=gen), 0.7 + torch.rand(2, 6, 5, 10, generator=gen)
    masks = [rasterize_boxes_bev(np.array([box(2, 2, 4, 2)]), (20, 20), PC)] * 2
    labels = [np.array([CAR])] * 2
    out = compare_features(bev, cam, bev_multiplicative=bev * g_bev[:, None],
                           cam_multiplicative=cam * g_cam.view(12, 1, 5, 10), bev_gain=g_bev,
                           cam_gain=g_cam, bev_masks=masks, labels=labels)
    for mod in ("bev", "camera"):
        add = out["additive"][mod]
        assert add["mean_change"] == 0.0 and add["std_change"] == 0.0
        assert add["max_change"] == 0.0 and add["relative_change"] == 0.0
        assert add["cosine_similarity"] == 1.0 and add["identical"] is True
        assert add["before"] == add["after"]
        mult = out["multiplicative"][mod]
        assert mult["relative_change"] > 0.05 and mult["identical"] is False
    assert out["additive"]["bev"]["energy"]["objects"]["retained"] == 1.0
    assert out["multiplicative"]["bev"]["gain"] is not None and out["additive"]["bev"]["gain"] is None
    assert out["multiplicative"]["camera"]["energy"] is None  # no camera masks given
    json.dumps(out)


def test_additive_change_is_computed_not_assumed():
    f = torch.ones(1, 2, 3, 3)
    changed = f.clone()
    changed[0, 0, 1, 1] = 3.0
    cam = f.repeat(6, 1, 1, 1)
    out = compare_features(f, cam, bev_multiplicative=f, cam_multiplicative=cam, bev_additive=changed)
    assert out["additive"]["bev"]["max_change"] == 2.0
    assert out["additive"]["bev"]["identical"] is False


def test_change_stats_match_direct_formulas():
    gen = torch.Generator().manual_seed(1)
    before = torch.randn(6, 4, 5, 7, generator=gen)
    noise = 0.01 * torch.randn(6, 4, 5, 7, generator=gen)
    after = before * (0.5 + torch.rand(6, 1, 5, 7, generator=gen)) + noise
    st = change_stats(before, after, num_samples=2)
    f0, f1 = before.double(), after.double()
    d = f1 - f0
    assert st["relative_change"] == pytest.approx(float((d.abs() / (f0.abs() + 1e-8)).mean()), rel=1e-12)
    assert st["mean_change"] == pytest.approx(float(d.mean()), rel=1e-12)
    assert st["std_change"] == pytest.approx(float(d.std()), rel=1e-12)
    assert st["max_change"] == pytest.approx(float(d.abs().max()), rel=1e-12)
    assert st["after"]["max"] == pytest.approx(float(f1.max()))
    a0, a1 = f0.reshape(2, -1), f1.reshape(2, -1)
    cos = (a0 * a1).sum(1) / (a0.norm(dim=1) * a1.norm(dim=1))
    assert st["cosine_similarity"] == pytest.approx(float(cos.mean()), rel=1e-12)
    with pytest.raises(AQRInputError):
        change_stats(before, after[:3])
    with pytest.raises(AQRInputError):
        change_stats(before, after, num_samples=4)


def test_value_histograms_count_everything():
    gen = torch.Generator().manual_seed(2)
    before = torch.randn(2, 3, 8, 8, generator=gen)
    h = value_histograms(before, 2 * before, bins=20)
    assert len(h["edges"]) == 21
    for key in ("before", "after"):
        part = h[key]
        assert sum(part["counts"]) + part["below"] + part["above"] == before.numel()


# ----- gains -----

def test_gain_shares_on_known_map():
    mod = FeatureModulator(modulation_type="element_wise", normalize_weights=False,
                           residual_connection=True, residual_weight=0.7)
    maps = torch.tensor([[[0.0, 0.5], [1.0, 0.25]], [[0.0, 0.0], [0.0, 2.0]]])
    g = mod.gain(maps, "bev")          # 0.7, 1.2, 1.7, 0.95 | 0.7, 0.7, 0.7, 2.7
    st = gain_stats(g, bins=10)
    assert st["share_attenuated"] == 5 / 8 and st["share_amplified"] == 3 / 8
    assert st["share_unity"] == 0.0 and sum(st["counts"]) == 8
    assert st["min"] == pytest.approx(0.7) and st["max"] == pytest.approx(2.7)
    assert any(abs(e - 1.0) < 1e-12 for e in st["edges"])
    exact = gain_stats(torch.tensor([0.5, 1.0, 1.0, 2.0]), bins=4)
    assert exact["share_unity"] == 0.5 and exact["share_attenuated"] == 0.25
    below = np.asarray(exact["counts"])[np.asarray(exact["edges"][:-1]) < 1.0].sum()
    assert below == 1  # no bin mixes attenuated and amplified cells


def test_apply_multiplicative_is_features_times_gain():
    gen = torch.Generator().manual_seed(3)
    renderer = WeightRenderer(gaussian_sigma=1.0, bev_feature_shape=(12, 12), pers_feature_shape=(6, 4, 8))
    mod = FeatureModulator(normalize_weights=False, residual_weight=0.7)
    bev, cam = torch.randn(1, 3, 12, 12, generator=gen), torch.randn(6, 3, 4, 8, generator=gen)
    lw, cw = torch.rand(1, 20, generator=gen), torch.rand(1, 20, generator=gen)
    pts_bev = torch.randint(0, 12, (1, 20, 2), generator=gen).float()
    pts_pers = torch.stack([torch.randint(0, hi, (1, 20), generator=gen) for hi in (6, 4, 8)], -1).float()
    out = apply_multiplicative(renderer, mod, lw, cw, pts_bev, pts_pers, bev, cam)
    torch.testing.assert_close(out["bev"], bev * out["bev_gain"][:, None])
    torch.testing.assert_close(out["camera"], cam * out["pers_gain"].view(6, 1, 4, 8))
    assert float(out["bev_gain"].min()) == pytest.approx(0.7)


# ----- boxes -----

def test_bev_box_rasterisation_axis_aligned_and_rotated():
    m = rasterize_boxes_bev(np.array([box(2.2, -3.1, 6, 2)]), (20, 20), PC)[0]
    rows, cols = torch.nonzero(m, as_tuple=True)
    # x in [-0.8, 5.2] -> centres -0.5..4.5 -> cols 9..14; y in [-4.1, -2.1] -> rows 6, 7
    assert sorted(set(cols.tolist())) == list(range(9, 15)) and sorted(set(rows.tolist())) == [6, 7]
    assert int(m.sum()) == 12
    rot = rasterize_boxes_bev(np.array([box(-3.1, 2.2, 6, 2, yaw=math.pi / 2)]), (20, 20), PC)[0]
    assert torch.equal(rot, m.t())
    diag = rasterize_boxes_bev(np.array([box(0.0, 0.0, 6, 1.2, yaw=math.pi / 4)]), (20, 20), PC)[0]
    assert bool(diag[11, 11]) and bool(diag[8, 8]) and not bool(diag[11, 8]) and not bool(diag[12, 12])


def test_tiny_box_gets_its_centre_cell():
    cone = np.array([box(0.1, 0.1, 0.41, 0.41)])
    assert int(rasterize_boxes_bev(cone, (20, 20), PC, min_one_cell=False).sum()) == 0
    m = rasterize_boxes_bev(cone, (20, 20), PC)[0]
    assert int(m.sum()) == 1 and bool(m[10, 10])
    off_grid = rasterize_boxes_bev(np.array([box(30.0, 0.0, 0.4, 0.4)]), (20, 20), PC)
    assert int(off_grid.sum()) == 0


def pinhole_lidar2img(f=100.0, cx=100.0, cy=50.0) -> np.ndarray:
    """A camera looking along +x: u = cx - f*y/x, v = cy - f*z/x (depth = x)."""
    k = np.array([[f, 0, cx, 0], [0, f, cy, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=float)
    r = np.array([[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=float)
    return (k @ r)[None]


def test_camera_box_rasterisation():
    mats = pinhole_lidar2img()
    boxes = np.array([box(10, 0, 2, 2, z=-1, dz=2), box(-10, 0, 2, 2), box(10, 9, 2, 2, z=-1, dz=2)])
    m = rasterize_boxes_camera(boxes, mats, (100, 200), (1, 10, 20))
    assert m.shape == (3, 1, 10, 20)
    rows, cols = torch.nonzero(m[0, 0], as_tuple=True)
    assert sorted(set(rows.tolist())) == [3, 4, 5, 6] and sorted(set(cols.tolist())) == [8, 9, 10, 11]
    assert int(m[1].sum()) == 0            # behind the camera
    left = torch.nonzero(m[2, 0], as_tuple=True)[1]
    assert int(left.min()) == 0            # clipped at the left image border


# ----- energy and coverage -----

def test_energy_retained_by_size_and_coverage():
    boxes = np.array([box(-5.0, -5.0, 2, 2), box(5.0, 5.0, 4, 2)])
    labels = [np.array([PED, CAR])]
    masks = [rasterize_boxes_bev(boxes, (20, 20), PC)]
    before = torch.ones(1, 3, 20, 20)
    gain = torch.ones(1, 20, 20)
    gain[0][masks[0][0]] = 0.5
    gain[0][masks[0][1]] = 2.0
    e = energy_in_boxes(before, before * gain[:, None], masks, labels)
    assert e["small"]["retained"] == pytest.approx(0.25) and e["large"]["retained"] == pytest.approx(4.0)
    assert e["background"]["retained"] == pytest.approx(1.0)
    assert e["small"]["count"] == 1 and e["large"]["count"] == 1
    assert [o["label"] for o in e["per_object"]] == ["pedestrian", "car"]
    assert e["small"]["cells"] == 4 and e["large"]["cells"] == 8
    wmap = torch.zeros(1, 20, 20)
    wmap[0][masks[0][1]] = 3.0 / 8
    wmap[0, 0, 19] = 1.0
    cov = weight_coverage(wmap, masks, labels)
    assert cov["coverage"] == pytest.approx(0.75) and cov["large"] == pytest.approx(0.75)
    assert cov["small"] == 0.0 and cov["band"].startswith("good")


def test_camera_energy_uses_view_cells():
    mats = np.repeat(pinhole_lidar2img(), 2, axis=0)
    boxes = np.array([box(10, 0, 2, 2, z=-1, dz=2)])
    masks = [rasterize_boxes_camera(boxes, mats, (100, 200), (2, 10, 20))]
    cam = torch.ones(2, 4, 10, 20)
    after = cam.clone()
    after[1] *= 0.0                         # view 1 erased
    e = energy_in_boxes(cam, after, masks, [np.array([CAR])])
    assert e["large"]["retained"] == pytest.approx(0.5)


def test_bias_coverage_counts_window_mass_in_boxes():
    masks = [rasterize_boxes_bev(np.array([box(-9.5, -9.5, 0.9, 0.9)]), (20, 20), PC)]   # cell 0
    idx = torch.tensor([[[0, 1, 400]]])
    vals = torch.tensor([[[2.0, -2.0, 5.0]]])
    cov = bias_coverage(WindowBias(idx, vals, torch.ones(1, 1, 3, dtype=torch.bool)), masks)
    assert cov["coverage"] == pytest.approx(0.5) and cov["total_abs_bias"] == pytest.approx(4.0)


@pytest.mark.parametrize("n", [1, 2, 3, 999, 1000, 300_001])
def test_quantiles_are_torch_quantile_bit_for_bit(n):
    g = torch.Generator().manual_seed(n)
    x = torch.randn(n, generator=g, dtype=torch.float64) * 7
    for data in (x, x.round(), torch.zeros(n, dtype=torch.float64)):          # ties too
        for qs in ((0.001, 0.999), (0.0, 0.5, 1.0), (0.25,)):
            assert torch.equal(quantiles(data, qs), torch.quantile(data, torch.tensor(qs, dtype=torch.float64)))
    x[n // 2] = float("nan")
    assert torch.isnan(quantiles(x, (0.001, 0.999))).all()


def test_change_stats_leave_inputs_alone_and_ignore_layout():
    gen = torch.Generator().manual_seed(5)
    before = torch.randn(2, 6, 5, 4, generator=gen, dtype=torch.float64)
    after = before * 1.5 + 0.1
    keep0, keep1 = before.clone(), after.clone()
    stats = change_stats(before, after, 2)
    assert torch.equal(before, keep0) and torch.equal(after, keep1)   # float64: no copy made by .double()
    strided = after.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    assert not strided.is_contiguous()
    assert json.dumps(change_stats(before, strided, 2)) == json.dumps(stats)


def test_bit_identical_features_give_the_full_computations_numbers():
    """The additive path's features (a strided read-back of the originals) take the originals'
    statistics once; forcing the full computation gives the same document, byte for byte.
    NaN features, a changed element or another layout of other values never take that route."""
    from aqr_cli.analysis.features import bit_identical, modality_stats

    gen = torch.Generator().manual_seed(6)
    before = torch.randn(2, 8, 6, 5, generator=gen)
    readback = before.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    assert not readback.is_contiguous() and bit_identical(before, readback)
    masks = [torch.zeros(1, 6, 5, dtype=torch.bool).index_fill_(1, torch.tensor([2]), True)] * 2
    labels = [np.array([CAR])] * 2
    fast = modality_stats(before, readback, num_samples=2, masks=masks, labels=labels)
    full = dict(change_stats(before, readback, 2, identical=False),
                histogram=value_histograms(before, readback, identical=False), gain=None,
                energy=energy_in_boxes(before, readback, masks, labels), weight_coverage=None)
    assert json.dumps(fast) == json.dumps(full)
    assert fast["identical"] is True and fast["cosine_similarity"] == 1.0 and fast["max_change"] == 0.0
    changed = readback.clone()
    changed[1, 2, 3, 4] += 1.0
    assert not bit_identical(before, changed)
    nan = before.clone()
    nan[0, 0, 0, 0] = float("nan")
    st = change_stats(nan, nan.clone(), 2)
    assert st["mean_change"] is None and st["before"]["mean"] is None   # computed, not assumed 0
    # same bits, NaN included: the energies computed once are the full computation's
    assert json.dumps(energy_in_boxes(nan, nan.clone(), masks, labels, identical=True)) == json.dumps(
        energy_in_boxes(nan, nan.clone(), masks, labels))
