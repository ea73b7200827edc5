"""AttentionBiasGenerator / SparseBias against the upstream golden data and a naive reference."""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pytest
import torch

from aqr_cli.core.bias import AttentionBiasGenerator, SparseBias
from aqr_cli.core.configs import reference_config
from aqr_cli.core.errors import AQRInputError, QuirkWarning

pytestmark = pytest.mark.filterwarnings("ignore::aqr_cli.core.errors.QuirkWarning")

CFG_800 = reference_config("800x320").attention_bias_config
CASES = {
    "bias_w8_uniform": {},
    "bias_w7_gauss_s2": dict(window_size=7, use_gaussian_window=True, gaussian_sigma=2.0),
    "bias_global": dict(use_local_bias=False),
    "bias_w8_scale7p3": {},
}
LOCAL_CASES = [c for c in CASES if c != "bias_global"]
REDUCES = ("maxabs", "sum", "mean", "count")
HW_800 = 128 * 128


# ----- helpers -----

def golden_inputs(golden):
    """(lidar_weights, camera_weights, pts_bev_indices, pts_pers_indices) as tensors."""
    keys = ("in_lidar_weights", "in_camera_weights", "bias_in_pts_bev_indices",
            "bias_in_pts_pers_indices")
    return tuple(torch.from_numpy(golden[k].copy()) for k in keys)


def golden_module(golden, case, fp16=False):
    cfg = dict(CFG_800, debug_print=False, fp16=fp16, **CASES[case])
    m = AttentionBiasGenerator(**cfg)
    with torch.no_grad():
        m.bias_scale.fill_(float(golden[f"{case}_scale_param"]))
    return m, cfg


def axis_offsets(ws, parity="head"):
    """Per-axis offsets from the spec text (5.1)."""
    half = ws // 2
    if ws % 2 == 0 and parity == "head":
        return list(range(-half + 1, half + 1))
    return list(range(-half, half + 1))


def naive_windows(lw, cw, pbev, ppers, bev, pers, ws, *, parity="head", gaussian=False, sigma=2.5):
    """Per (b, q) a dict {dense column: unscaled value}, Python loops over offsets (spec 5.2).

    BEV: qy = floor(p / W), qx = p mod W, true 2-D bounds. Camera: v, h, w truncated; bounds
    inside the map; the target index clamped to the camera block and summed (scatter-add).
    """
    H, W = bev
    V, h, w = pers
    hw, n_cam = H * W, V * h * w
    axis = axis_offsets(ws, parity)
    out = []
    for b in range(lw.shape[0]):
        rows = []
        for q in range(lw.shape[1]):
            cols = {}
            p = float(pbev[b, q])
            qy, qx = math.floor(p / W), p % W
            v, r0, c0 = (int(float(x)) for x in ppers[b, q])
            for dy in axis:
                for dx in axis:
                    g = math.exp(-(dy * dy + dx * dx) / (2 * sigma * sigma)) if gaussian else 1.0
                    if 0 <= qy + dy < H and 0 <= qx + dx < W:
                        col = int(p + dy * W + dx)
                        cols[col] = cols.get(col, 0.0) + float(lw[b, q]) * g
                    if 0 <= r0 + dy < h and 0 <= c0 + dx < w:
                        col = hw + min(max(v * h * w + (r0 + dy) * w + c0 + dx, 0), n_cam - 1)
                        cols[col] = cols.get(col, 0.0) + float(cw[b, q]) * g
            rows.append(cols)
        out.append(rows)
    return out


def naive_dense(windows, shape, scale, max_bias=5.0):
    """Dense float64 [B, Q, F] from naive windows: value * scale, clamped to +-max_bias."""
    out = np.zeros(shape)
    for b, rows in enumerate(windows):
        for q, cols in enumerate(rows):
            for col, val in cols.items():
                out[b, q, col] = min(max(val * scale, -max_bias), max_bias)
    return out


def naive_heatmaps(dense, coverage, bev, pers, reduce):
    """Per-query Python loop over a dense bias [B, Q, F] (upstream-style for maxabs).

    ``coverage`` [B, Q, F] bool: cells inside each query's window (for mean and count).
    """
    H, W = bev
    B, Q, _ = dense.shape
    hw = H * W
    maps = []
    for lo, hi, shp in ((0, hw, bev), (hw, dense.shape[2], pers)):
        res = np.zeros((B, hi - lo))
        for b in range(B):
            acc = np.zeros(hi - lo)
            cnt = np.zeros(hi - lo)
            for q in range(Q):
                row = dense[b, q, lo:hi]
                if reduce == "maxabs":
                    better = np.abs(row) > np.abs(acc)  # strictly larger replaces
                    acc[better] = row[better]
                else:
                    acc = acc + row
                    cnt = cnt + coverage[b, q, lo:hi]
            if reduce == "count":
                acc = cnt
            elif reduce == "mean":
                acc = np.where(cnt > 0, acc / np.maximum(cnt, 1), 0.0)
            res[b] = acc
        maps.append(res.reshape(B, *shp))
    return maps


def coverage_from(windows, shape):
    cov = np.zeros(shape, dtype=bool)
    for b, rows in enumerate(windows):
        for q, cols in enumerate(rows):
            cov[b, q, list(cols)] = True
    return cov


def assert_heatmaps(sparse, dense, coverage, reduce):
    bev_map, pers_map = sparse.heatmaps(reduce)
    want_bev, want_pers = naive_heatmaps(dense, coverage, sparse.bev_shape, sparse.pers_shape,
                                         reduce)
    assert bev_map.shape == want_bev.shape and pers_map.shape == want_pers.shape
    if reduce == "maxabs":  # a selection, not arithmetic: exact
        np.testing.assert_array_equal(bev_map.numpy(), want_bev)
        np.testing.assert_array_equal(pers_map.numpy(), want_pers)
    else:
        np.testing.assert_allclose(bev_map.double().numpy(), want_bev, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(pers_map.double().numpy(), want_pers, rtol=1e-5, atol=1e-5)


# ----- golden cases -----

@pytest.mark.parametrize("case", LOCAL_CASES)
def test_golden_float32(golden, case):
    m, _ = golden_module(golden, case)
    with torch.no_grad():
        out = m(*golden_inputs(golden))
    assert out.dtype == torch.float32
    assert list(out.shape) == golden[f"{case}_shape"].tolist()
    q, f = golden[f"{case}_q"].astype(np.int64), golden[f"{case}_f"].astype(np.int64)
    nz = out[0].nonzero().numpy()
    np.testing.assert_array_equal(nz[:, 0], q)
    np.testing.assert_array_equal(nz[:, 1], f)
    err = np.abs(out[0].numpy()[q, f] - golden[f"{case}_v_f32"]).max()
    assert err <= 1e-5


@pytest.mark.parametrize("case", LOCAL_CASES)
def test_golden_fp16(golden, case):
    m, _ = golden_module(golden, case, fp16=True)
    with torch.no_grad():
        out = m(*golden_inputs(golden))
    assert out.dtype == torch.float16
    q, f = golden[f"{case}_q"].astype(np.int64), golden[f"{case}_f"].astype(np.int64)
    got = out[0].numpy()
    np.testing.assert_array_equal(got[q, f], golden[f"{case}_v_f16"])
    got = got.copy()
    got[q, f] = 0
    assert not got.any()


@pytest.mark.parametrize("fp16", [False, True])
def test_golden_global(golden, fp16):
    m, _ = golden_module(golden, "bias_global", fp16=fp16)
    with torch.no_grad():
        out = m(*golden_inputs(golden))[0]
    key = "f16" if fp16 else "f32"
    bev_v = torch.from_numpy(golden[f"bias_global_bev_value_{key}"])
    cam_v = torch.from_numpy(golden[f"bias_global_cam_value_{key}"])
    assert out.dtype == bev_v.dtype and out.shape == (900, 22384)
    assert torch.equal(out[:, :HW_800], bev_v[:, None].expand(900, HW_800))
    assert torch.equal(out[:, HW_800:], cam_v[:, None].expand(900, 22384 - HW_800))


def test_golden_scale_clamp(golden):
    m, _ = golden_module(golden, "bias_w8_scale7p3")
    assert m.effective_scale() == 5.0
    with torch.no_grad():
        out = m(*golden_inputs(golden))
    assert float(out.abs().max()) == 5.0  # weights up to 1.5: the final clamp bites


# ----- sparse form -----

@pytest.mark.parametrize("fp16", [False, True])
@pytest.mark.parametrize("case", list(CASES))
def test_sparse_to_dense_equals_dense(golden, case, fp16):
    m, _ = golden_module(golden, case, fp16=fp16)
    with torch.no_grad():
        sp = m.forward_sparse(*golden_inputs(golden))
        dense = m(*golden_inputs(golden))
    assert isinstance(sp, SparseBias)
    assert sp.values.dtype == torch.float32 and sp.indices.dtype == torch.int64
    got = sp.to_dense()
    assert got.dtype == dense.dtype and torch.equal(got, dense)
    # the other dtype: float32 values, or their half rounding (both outputs agree after .half())
    other = torch.float32 if fp16 else torch.float16
    assert sp.to_dense(other).dtype == other
    assert torch.equal(sp.to_dense(other).half(), dense.half())


def test_sparse_layout(golden):
    m, _ = golden_module(golden, "bias_w8_uniform")
    with torch.no_grad():
        sp = m.forward_sparse(*golden_inputs(golden))
    assert sp.indices.shape == sp.values.shape == sp.mask.shape == (1, 900, 128)
    assert sp.k_bev == 64 and sp.shape == (1, 900, 22384)
    bev, cam = sp.bev_values(), sp.camera_values()
    assert bev.values.shape == (1, 900, 64) and cam.values.shape == (1, 900, 64)
    assert int(bev.cells[bev.mask].max()) < HW_800 and int(cam.cells[cam.mask].min()) >= 0
    assert not sp.values[~sp.mask].any()
    assert "SparseBias(B=1, Q=900" in repr(sp)


@pytest.mark.parametrize("case", list(CASES))
def test_heatmaps_match_naive_loop(golden, case):
    m, cfg = golden_module(golden, case)
    inputs = golden_inputs(golden)
    with torch.no_grad():
        sp = m.forward_sparse(*inputs)
    dense = sp.to_dense(torch.float32).numpy().astype(np.float64)
    if case == "bias_global":
        coverage = np.ones(dense.shape, dtype=bool)
    else:
        wins = naive_windows(*(t.numpy() for t in inputs), cfg["bev_feature_shape"],
                             cfg["pers_feature_shape"], cfg["window_size"],
                             gaussian=cfg["use_gaussian_window"], sigma=cfg["gaussian_sigma"])
        coverage = coverage_from(wins, dense.shape)
    for reduce in REDUCES:
        assert_heatmaps(sp, dense, coverage, reduce)


def test_heatmap_fp16_rounding_and_bad_reduce(golden):
    m, _ = golden_module(golden, "bias_w8_uniform")
    with torch.no_grad():
        sp = m.forward_sparse(*golden_inputs(golden))
    dense16 = sp.to_dense(torch.float16).float().numpy()
    want_bev, want_pers = naive_heatmaps(dense16, None, sp.bev_shape, sp.pers_shape, "maxabs")
    bev_map, pers_map = sp.heatmaps("maxabs", dtype=torch.float16)
    np.testing.assert_array_equal(bev_map.numpy(), want_bev)
    np.testing.assert_array_equal(pers_map.numpy(), want_pers)
    with pytest.raises(AQRInputError, match="reduce"):
        sp.heatmaps("median")


# ----- checkpoint -----

def _generator_sd(head_state_dict):
    pre = "attention_bias_generator."
    return {k[len(pre):]: v for k, v in head_state_dict.items() if k.startswith(pre)}


def test_checkpoint_strict_load(head_state_dict):
    sd = _generator_sd(head_state_dict)
    m = AttentionBiasGenerator(**CFG_800)
    m.load_state_dict(sd, strict=True)
    assert m.effective_scale() == pytest.approx(3.17, abs=1e-6)
    assert torch.unique(m.y_offsets).tolist() == list(range(-3, 5))
    assert torch.unique(m.x_offsets).tolist() == list(range(-3, 5))
    assert {k: (tuple(v.shape), v.dtype) for k, v in m.state_dict().items()} == {
        k: (tuple(v.shape), v.dtype) for k, v in sd.items()}
    for k, v in sd.items():  # freshly built buffers equal the stored ones
        if k != "bias_scale":
            assert torch.equal(AttentionBiasGenerator(**CFG_800).state_dict()[k], v), k


def test_from_state_dict_head_generation(head_state_dict):
    with warnings.catch_warnings():
        warnings.simplefilter("error", QuirkWarning)
        m = AttentionBiasGenerator.from_state_dict(head_state_dict, **CFG_800)
    assert m.checkpoint_generation == "head" and m.window_parity == "head"
    assert m.effective_scale() == pytest.approx(3.17, abs=1e-6)
    assert m.y_offsets.numel() == 64


def test_parameters_and_buffers():
    m = AttentionBiasGenerator(**CFG_800)
    assert isinstance(m.bias_scale, torch.nn.Parameter) and m.bias_scale.shape == (1,)
    assert m.bias_scale.dtype == torch.float32
    fixed = AttentionBiasGenerator(**dict(CFG_800, learnable_scale=False))
    assert "bias_scale" in dict(fixed.named_buffers()) and not list(fixed.parameters())
    for name in ("y_offsets", "x_offsets", "window_offsets_bev", "window_offsets_pers"):
        buf = getattr(m, name)
        assert buf.dtype == torch.int64 and buf.shape == (64,)
    assert torch.equal(m.window_offsets_bev, m.y_offsets * 128 + m.x_offsets)
    assert torch.equal(m.window_offsets_pers, m.y_offsets * 50 + m.x_offsets)
    assert m.gaussian_weights.dtype == torch.float32 and bool((m.gaussian_weights == 1).all())
    g = AttentionBiasGenerator(**dict(CFG_800, use_gaussian_window=True, gaussian_sigma=2.0))
    gw = dict(zip(zip(g.y_offsets.tolist(), g.x_offsets.tolist()), g.gaussian_weights.tolist()))
    assert gw[(0, 0)] == 1.0  # not normalised
    assert gw[(-3, -3)] == pytest.approx(math.exp(-18 / 8), rel=1e-6)
    assert gw[(4, 4)] == pytest.approx(math.exp(-32 / 8), rel=1e-6)


def _old_state_dict(bev_w=128, pers_w=50, ws=8, scale=2.5):
    axis = torch.arange(-(ws // 2), ws // 2 + 1)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    y, x = y.reshape(-1), x.reshape(-1)
    return {"bias_scale": torch.tensor(scale), "y_offsets": y, "x_offsets": x,
            "window_offsets_bev": y * bev_w + x, "window_offsets_pers": y * pers_w + x}


def test_old_generation_checkpoint(golden):
    sd = _old_state_dict()
    cfg = dict(CFG_800, learnable_scale=False, fp16=False, debug_print=False)
    with pytest.warns(QuirkWarning, match="Q14") as rec:
        m = AttentionBiasGenerator.from_state_dict(sd, **cfg)
    assert rec[0].message.detail["generation"] == "bias_snapshot"
    assert m.checkpoint_generation == "bias_snapshot" and m.window_parity == "symmetric"
    assert m.y_offsets.numel() == 81 and m.bias_scale.shape == (1,) and m.effective_scale() == 2.5
    lw, cw, pb, pp = (t[:, :40] for t in golden_inputs(golden))
    with torch.no_grad():
        out = m(lw, cw, pb, pp).numpy()
    wins = naive_windows(lw.numpy(), cw.numpy(), pb.numpy(), pp.numpy(), (128, 128), (6, 20, 50),
                         8, parity="symmetric")
    want = naive_dense(wins, out.shape, 2.5)
    np.testing.assert_allclose(out, want, atol=1e-6, rtol=0)
    assert (np.count_nonzero(out[0, 0, HW_800:])) == 81  # a full 9x9 camera window for row 0


def test_old_generation_parity_request_and_mismatch():
    with pytest.warns(QuirkWarning, match="stored offsets are used"):
        AttentionBiasGenerator.from_state_dict(_old_state_dict(), window_parity="head", **CFG_800)
    with pytest.raises(AQRInputError, match="window_offsets_bev"):
        AttentionBiasGenerator.from_state_dict(_old_state_dict(bev_w=180), **CFG_800)
    with pytest.raises(AQRInputError, match="y_offsets"):
        AttentionBiasGenerator.from_state_dict(_old_state_dict(ws=6), **CFG_800)
    with pytest.raises(AQRInputError, match="missing"):
        AttentionBiasGenerator.from_state_dict({"bias_scale": torch.tensor(1.0)}, **CFG_800)


# ----- other shapes against the naive reference -----

def _random_inputs(gen, B, Q, bev, pers, extra_bev=(), extra_pers=()):
    H, W = bev
    V, h, w = pers
    lw = torch.rand(B, Q, generator=gen) * 2 - 1
    cw = torch.rand(B, Q, generator=gen) * 2 - 1
    pb = torch.randint(0, H * W, (B, Q), generator=gen).float()
    pp = torch.stack([torch.randint(0, n, (B, Q), generator=gen) for n in (V, h, w)], -1).float()
    for i, p in enumerate(extra_bev):
        pb[:, i] = p
    for i, p in enumerate(extra_pers):
        pp[:, i] = torch.tensor(p, dtype=torch.float32)
    return lw, cw, pb, pp


def _check_against_naive(cfg, inputs, scale):
    m = AttentionBiasGenerator(**dict(cfg, debug_print=False, fp16=False))
    with torch.no_grad():
        m.bias_scale.fill_(scale)
        sp = m.forward_sparse(*inputs)
        out = m(*inputs)
    assert torch.equal(sp.to_dense(), out)
    wins = naive_windows(*(t.numpy() for t in inputs), cfg["bev_feature_shape"],
                         cfg["pers_feature_shape"], cfg["window_size"],
                         gaussian=cfg["use_gaussian_window"], sigma=cfg["gaussian_sigma"])
    want = naive_dense(wins, tuple(out.shape), m.effective_scale(), min(5.0, cfg["max_scale"]))
    np.testing.assert_allclose(out.numpy(), want, atol=1e-5, rtol=0)
    coverage = coverage_from(wins, tuple(out.shape))
    for reduce in REDUCES:
        assert_heatmaps(sp, out.numpy().astype(np.float64), coverage, reduce)
    return m, sp


def test_1600x640_against_naive():
    cfg = reference_config("1600x640").attention_bias_config
    m = AttentionBiasGenerator(**cfg)
    assert m.y_offsets.numel() == 225 and torch.unique(m.y_offsets).tolist() == list(range(-7, 8))
    assert torch.equal(m.window_offsets_bev, m.y_offsets * 180 + m.x_offsets)
    assert torch.equal(m.window_offsets_pers, m.y_offsets * 100 + m.x_offsets)
    gen = torch.Generator().manual_seed(1)
    edges_bev = (0.0, 180 * 180 - 1.0, 179.0, 180.0 * 179, -5.0, 180 * 180 + 3.0)
    edges_pers = ((0, 0, 0), (5, 39, 99), (2, 3, 97), (4, 38, 1))
    inputs = _random_inputs(gen, 1, 30, (180, 180), (6, 40, 100), edges_bev, edges_pers)
    _, sp = _check_against_naive(cfg, inputs, 2.5)
    assert sp.values.shape == (1, 30, 450)


def test_odd_shape_against_naive():
    cfg = dict(bev_feature_shape=(37, 53), pers_feature_shape=(6, 11, 29), window_size=6,
               bias_scale=1.0, learnable_scale=True, min_scale=0.5, max_scale=4.0,
               use_local_bias=True, use_gaussian_window=True, gaussian_sigma=1.7)
    gen = torch.Generator().manual_seed(7)
    edges_bev = (0.0, 37 * 53 - 1.0, -1.0, 37 * 53 + 60.0, 52.0, 53.0, -200.0)
    # in-map, corners, off-map h/w, views -1 and 6 (whole window clamps into one column)
    edges_pers = ((0, 0, 0), (5, 10, 28), (3, -2, 5), (2, 12, 30), (-1, 4, 4), (6, 5, 7),
                  (1.9, 3.7, 28.2))
    lw, cw, pb, pp = _random_inputs(gen, 2, 40, (37, 53), (6, 11, 29), edges_bev, edges_pers)
    # ties for maxabs: same cells, equal |w| with opposite signs, first query must win
    pb[:, 20], pb[:, 21] = pb[:, 19], pb[:, 19]
    pp[:, 20], pp[:, 21] = pp[:, 19], pp[:, 19]
    lw[:, 20], lw[:, 21], cw[:, 20], cw[:, 21] = 0.95, -0.95, -0.99, 0.99
    lw[:, 19], cw[:, 19] = 0.1, 0.1
    m, sp = _check_against_naive(cfg, (lw, cw, pb, pp), 3.3)
    bev_map, _ = sp.heatmaps("maxabs")
    y, x = int(pb[0, 20]) // 53, int(pb[0, 20]) % 53
    assert float(bev_map[0, y, x]) == pytest.approx(0.95 * 3.3, rel=1e-6)


def test_view_out_of_range_sums_into_one_column():
    cfg = dict(bev_feature_shape=(10, 10), pers_feature_shape=(2, 6, 7), window_size=3,
               fp16=False, debug_print=False)
    m = AttentionBiasGenerator(**cfg)
    lw = torch.tensor([[0.3, 0.3]])
    cw = torch.tensor([[0.1, -0.2]])
    pb = torch.tensor([[11.0, 12.0]])
    pp = torch.tensor([[[-1.0, 2.0, 3.0], [2.0, 0.0, 0.0]]])
    with torch.no_grad():
        out = m(lw, cw, pb, pp)
        sp = m.forward_sparse(lw, cw, pb, pp)
    cam = out[0, :, 100:]
    assert float(cam[0, 0]) == pytest.approx(9 * 0.1 * 2.5) and int((cam[0] != 0).sum()) == 1
    assert float(cam[1, -1]) == pytest.approx(4 * -0.2 * 2.5) and int((cam[1] != 0).sum()) == 1
    assert int(sp.camera_values().mask.sum()) == 2
    assert int(sp.heatmaps("count")[1].sum()) == 2


# ----- statistics, memory, scale -----

def test_debug_statistics(golden):
    m, _ = golden_module(golden, "bias_w8_uniform")
    inputs = golden_inputs(golden)
    with torch.no_grad():
        sp = m.forward_sparse(*inputs)
    stats = m.debug_statistics(sp, inputs[0], inputs[1])
    d = sp.to_dense(torch.float32)
    dd = d.double()
    allv = stats["all_entries"]["overall"]
    assert allv["count"] == d.numel()
    assert allv["mean"] == pytest.approx(float(dd.mean()), rel=1e-9, abs=1e-12)
    assert allv["std"] == pytest.approx(float(dd.std()), rel=1e-9)

    def share(cond):  # an exact count, as a fraction
        return int(torch.count_nonzero(cond)) / d.numel()

    assert allv["positive"] == pytest.approx(share(d > 0), abs=1e-12)
    assert allv["negative_upstream"] == pytest.approx(1 - allv["positive"])
    assert allv["near_zero"] == pytest.approx(share(d.abs() < 0.1), abs=1e-12)
    assert allv["near_zero"] > 0.99
    assert allv["strong_negative"] == pytest.approx(share(d < -2), abs=1e-12)
    bev_std = float(dd[..., :HW_800].std())
    assert stats["all_entries"]["bev"]["std"] == pytest.approx(bev_std, rel=1e-9)
    win = stats["in_window"]["overall"]
    assert win["count"] == int(sp.mask.sum()) and win["near_zero"] < 0.2
    dense_stats = m.debug_statistics(d, inputs[0], inputs[1])
    assert dense_stats["all_entries"]["overall"]["mean"] == pytest.approx(allv["mean"], rel=1e-9)
    assert dense_stats["in_window_basis"] == "nonzero" and stats["in_window_basis"] == "windows"
    lw, cw = inputs[0], inputs[1]
    prefer = float((lw > cw).float().mean())
    assert stats["modality_preference"]["prefer_lidar"] == pytest.approx(prefer)
    cam_std = float(cw.double().std())
    assert stats["input_weights"]["camera"]["std"] == pytest.approx(cam_std, rel=1e-9)
    assert stats["scale"]["value"] == pytest.approx(3.17, abs=1e-6)
    assert stats["scale"]["grad"] is None


def test_debug_statistics_use_preclamp_values(golden):
    m, _ = golden_module(golden, "bias_w8_scale7p3")
    inputs = golden_inputs(golden)
    with torch.no_grad():
        sp = m.forward_sparse(*inputs)
    stats = m.debug_statistics(sp, inputs[0], inputs[1])
    # upstream's statistics see the values before the +-5 clamp
    assert stats["all_entries"]["overall"]["max"] == pytest.approx(1.5 * 5.0)
    assert stats["scale"]["near_max"] is True
    gstats = golden_module(golden, "bias_global")[0]
    with torch.no_grad():
        gsp = gstats.forward_sparse(*inputs)
    g = gstats.debug_statistics(gsp, inputs[0], inputs[1])["all_entries"]["camera"]
    dense_cam = gsp.to_dense(torch.float32)[..., HW_800:].double()
    assert g["mean"] == pytest.approx(float(dense_cam.mean()), rel=1e-9)
    assert g["std"] == pytest.approx(float(dense_cam.std()), rel=1e-6)


def test_memory_usage_matches_spec():
    m800 = AttentionBiasGenerator(**CFG_800)
    mem = m800.get_memory_usage(4, 900)
    assert mem["total_features"] == 22384 and mem["bias_shape"] == (4, 900, 22384)
    assert round(mem["memory_fp16_mb"], 1) == 153.7 and round(mem["memory_fp32_mb"], 1) == 307.4
    assert mem["current_dtype"] == "fp16" and mem["estimated_memory_mb"] == mem["memory_fp16_mb"]
    assert round(m800.get_memory_usage(4, 1730)["memory_fp32_mb"], 1) == 590.9
    cfg_1600 = reference_config("1600x640").attention_bias_config
    m1600 = AttentionBiasGenerator(**dict(cfg_1600, fp16=False))
    mem = m1600.get_memory_usage(2, 900)
    assert round(mem["memory_fp16_mb"], 1) == 193.6
    assert round(mem["estimated_memory_mb"], 1) == 387.3


def test_print_counter_and_crash_flag(golden):
    fixed = AttentionBiasGenerator(**dict(CFG_800, learnable_scale=False, print_interval=2))
    assert fixed.upstream_print_would_crash
    assert not AttentionBiasGenerator(**CFG_800).upstream_print_would_crash
    quiet = AttentionBiasGenerator(**dict(CFG_800, learnable_scale=False, debug_print=False))
    assert not quiet.upstream_print_would_crash
    inputs = golden_inputs(golden)
    with torch.no_grad(), warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        fixed.forward_sparse(*inputs)
        assert fixed._iter_count == 1 and not fixed.last_call_would_print
        fixed.forward_sparse(*inputs)
        assert fixed._iter_count == 2 and fixed.last_call_would_print


def test_scale_clamp_and_gradients(golden):
    cfg = dict(CFG_800, fp16=False, debug_print=False)
    m = AttentionBiasGenerator(**cfg)
    lw, cw, pb, pp = (t[:, :50] for t in golden_inputs(golden))
    lw = lw.clone().requires_grad_(True)
    out = m(lw, cw, pb, pp)
    out.sum().backward()
    sp = m.forward_sparse(lw.detach(), cw, pb, pp)
    n_bev = sp.bev_values().mask.sum(-1).float()
    torch.testing.assert_close(lw.grad, n_bev * 2.5)
    raw_sum = float(sp.unscaled.double().sum())
    assert float(m.bias_scale.grad[0]) == pytest.approx(raw_sum, rel=1e-5)
    with torch.no_grad():
        m.bias_scale.fill_(9.0)
    m.bias_scale.grad = None
    m(lw.detach(), cw, pb, pp).sum().backward()
    # Q13: outside [min, max] the clamp passes no gradient, the scale is stuck at the bound
    assert m.effective_scale() == 5.0 and float(m.bias_scale.grad[0]) == 0.0
    fixed = AttentionBiasGenerator(**dict(cfg, learnable_scale=False, bias_scale=9.0))
    assert fixed.effective_scale() == 9.0
    with torch.no_grad():
        assert float(fixed(lw.detach(), cw, pb, pp).abs().max()) == 5.0


def test_q2_warning_counts(golden):
    m, _ = golden_module(golden, "bias_w8_uniform")
    with pytest.warns(QuirkWarning, match="Q2") as rec:
        m(*golden_inputs(golden))
    q2 = [r.message for r in rec if getattr(r.message, "quirk_id", "") == "Q2"]
    # rows 1 and 7 leave [0, H*W); rows 3 and 6 wrap inside it and cannot be told apart
    assert q2[0].detail == {"bev_out_of_grid": 2, "camera_out_of_map": 0}
    lw, cw, pb, pp = (t[:, 8:] for t in golden_inputs(golden))
    with warnings.catch_warnings():
        warnings.simplefilter("error", QuirkWarning)
        m(lw, cw, pb, pp)


# ----- faults -----

def _ok_inputs(B=1, Q=4):
    return (torch.zeros(B, Q), torch.zeros(B, Q), torch.zeros(B, Q), torch.zeros(B, Q, 3))


@pytest.mark.parametrize("pos, bad, name", [
    (0, torch.zeros(4), "lidar_weights"),
    (0, [[0.0] * 4], "lidar_weights"),
    (1, torch.zeros(1, 5), "camera_weights"),
    (2, torch.zeros(1, 4, 1), "pts_bev_indices"),
    (3, torch.zeros(1, 4, 2), "pts_pers_indices"),
    (3, torch.zeros(1, 4), "pts_pers_indices"),
])
def test_wrong_shapes(pos, bad, name):
    m = AttentionBiasGenerator(**CFG_800)
    args = list(_ok_inputs())
    args[pos] = bad
    with pytest.raises(AQRInputError, match=name) as exc:
        m(*args)
    assert "expected" in str(exc.value)
    with pytest.raises(AQRInputError, match=name):
        m.forward_sparse(*args)


@pytest.mark.parametrize("pos, value, name", [
    (0, float("nan"), "lidar_weights"), (1, float("inf"), "camera_weights"),
    (2, float("nan"), "pts_bev_indices"), (3, float("nan"), "pts_pers_indices"),
    (2, float("-inf"), "pts_bev_indices"),
])
def test_non_finite_inputs(pos, value, name):
    m = AttentionBiasGenerator(**CFG_800)
    args = list(_ok_inputs())
    args[pos] = args[pos].clone()
    args[pos].view(-1)[1] = value
    with pytest.raises(AQRInputError, match=name):
        m(*args)


@pytest.mark.parametrize("override, name", [
    (dict(window_size=21), "window_size"),            # > pers_h 20
    (dict(window_size=20, window_parity="symmetric"), "window_size"),  # 21x21 window
    (dict(window_size=0), "window_size"),
    (dict(window_size=2.5), "window_size"),
    (dict(bev_feature_shape=(128, 0)), "bev_feature_shape"),
    (dict(bev_feature_shape=(128,)), "bev_feature_shape"),
    (dict(pers_feature_shape=(6, 20)), "pers_feature_shape"),
    (dict(pers_feature_shape=(6, -20, 50)), "pers_feature_shape"),
    (dict(window_parity="diagonal"), "window_parity"),
    (dict(min_scale=6.0), "min_scale"),
    (dict(use_gaussian_window=True, gaussian_sigma=0.0), "gaussian_sigma"),
    (dict(print_interval=0), "print_interval"),
])
def test_bad_config(override, name):
    with pytest.raises(AQRInputError, match=name):
        AttentionBiasGenerator(**dict(CFG_800, **override))


def test_window_as_large_as_map_is_allowed():
    m = AttentionBiasGenerator(**dict(CFG_800, window_size=20))
    assert m.y_offsets.numel() == 400


def test_inputs_not_mutated(golden):
    m, _ = golden_module(golden, "bias_w7_gauss_s2")
    inputs = golden_inputs(golden)
    copies = [t.clone() for t in inputs]
    versions = [t._version for t in inputs]
    with torch.no_grad():
        sp = m.forward_sparse(*inputs)
        m(*inputs)
        sp.heatmaps("maxabs")
        sp.to_dense()
        m.debug_statistics(sp, inputs[0], inputs[1])
    for t, c, v in zip(inputs, copies, versions):
        assert torch.equal(t, c) and t._version == v


# ----- heatmaps: per-query box path vs entry-by-entry path -----

def _entry_path(sp):
    """The same SparseBias without its WindowLayout: reduced entry by entry."""
    return dataclasses.replace(sp, layout=None)


def _assert_same_heatmaps(got, want, reduce):
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        if reduce in ("maxabs", "count"):  # a selection / a count: identical, signs included
            assert torch.equal(g, w) and torch.equal(torch.signbit(g.float()), torch.signbit(w.float()))
        else:  # float64 sums rounded once vs float32 sums in entry order
            torch.testing.assert_close(g, w, rtol=2e-6, atol=2e-6)


BOX_CONFIGS = {
    "800x320": dict(reference_config("800x320").attention_bias_config),
    "1600x640": dict(reference_config("1600x640").attention_bias_config),
    "odd_w7": dict(bev_feature_shape=(37, 53), pers_feature_shape=(6, 11, 29), window_size=7),
    "w6_symmetric": dict(bev_feature_shape=(37, 53), pers_feature_shape=(4, 11, 29),
                         window_size=6, window_parity="symmetric"),
    "w4_head_scale_clamp": dict(bev_feature_shape=(20, 20), pers_feature_shape=(2, 9, 13),
                                window_size=4, bias_scale=4.0, max_scale=4.5),
    "w1": dict(bev_feature_shape=(12, 17), pers_feature_shape=(3, 7, 9), window_size=1),
}
# BEV: corners, partial windows off every side, far away, fractional (irregular), huge
EDGE_BEV = (0.0, -1.0, -5.0, 2.0, -200.0, 1e6, 5.5, -3.25, 1e30, -1e30)
# camera: corners, off-map h / w (partial and far), views -1 / V (collapsed), 2.5 (-> 2)
EDGE_PERS = ((0, 0, 0), (0, -2, 5), (1, 3, -3), (1, 200, 5), (-1, 4, 4), (99, 5, 7),
             (1.5, 3.7, 2.2), (0, -1e6, 3))


@pytest.mark.parametrize("dtype", [None, torch.float16])
@pytest.mark.parametrize("config", list(BOX_CONFIGS))
def test_box_heatmaps_match_entry_path(config, dtype):
    cfg = dict(BOX_CONFIGS[config], fp16=False, debug_print=False)
    bev, pers = cfg["bev_feature_shape"], cfg["pers_feature_shape"]
    gen = torch.Generator().manual_seed(21)
    edge_bev = EDGE_BEV + (bev[0] * bev[1] - 1.0, bev[0] * bev[1] + 3.0, bev[1] - 1.0)
    edge_pers = EDGE_PERS + ((pers[0] - 1, pers[1] - 1, pers[2] - 1), (pers[0], 2, 2))
    lw, cw, pb, pp = _random_inputs(gen, 2, 150, bev, pers, edge_bev, edge_pers)
    lw[:, :3] = torch.tensor([0.0, -0.0, 1e-9])  # zero, negative zero, fp16 underflow
    m = AttentionBiasGenerator(**cfg)
    with torch.no_grad():
        sp = m.forward_sparse(lw, cw, pb, pp)
    assert sp.layout is not None and sp.layout.describes(sp)
    regular = [sp.layout.boxes(sp, block).regular for block in (0, 1)]
    assert not bool(regular[0].all()) and not bool(regular[1].all())  # both paths exercised
    for reduce in REDUCES:
        _assert_same_heatmaps(sp.heatmaps(reduce, dtype), _entry_path(sp).heatmaps(reduce, dtype),
                              reduce)


@pytest.mark.parametrize("dtype", [torch.float64, torch.int64, torch.int32])
def test_box_heatmaps_position_dtypes(dtype):
    """BEV indices given as float64 / integer tensors: boxes where upstream's arithmetic is exact."""
    cfg = dict(BOX_CONFIGS["odd_w7"], fp16=True, debug_print=False)
    gen = torch.Generator().manual_seed(22)
    lw, cw, pb, pp = _random_inputs(gen, 2, 80, (37, 53), (6, 11, 29), (-4.0, 37 * 53 + 2.0, 0.0))
    pb = pb.to(dtype)
    m = AttentionBiasGenerator(**cfg)
    with torch.no_grad():
        sp = m.forward_sparse(lw, cw, pb, pp)
    assert bool(sp.layout.boxes(sp, 0).regular.all())
    for reduce in REDUCES:
        _assert_same_heatmaps(sp.heatmaps(reduce, torch.float16),
                              _entry_path(sp).heatmaps(reduce, torch.float16), reduce)


def test_box_heatmaps_against_naive_loop_with_irregular_rows():
    """Uniform windows (box path) incl. collapsed views and fractional BEV indices, checked
    against the spec-text naive loop."""
    cfg = dict(BOX_CONFIGS["odd_w7"], bias_scale=1.0, learnable_scale=True, min_scale=0.5,
               max_scale=4.0, use_local_bias=True, use_gaussian_window=False, gaussian_sigma=2.5)
    gen = torch.Generator().manual_seed(23)
    inputs = _random_inputs(gen, 2, 40, (37, 53), (6, 11, 29), (0.0, -1.0, 37 * 53 + 60.0, 7.5),
                            ((0, 0, 0), (5, 10, 28), (-1, 4, 4), (6, 5, 7), (1.9, 3.7, 28.2)))
    _, sp = _check_against_naive(cfg, inputs, 3.3)
    assert sp.layout is not None and sp.layout.describes(sp)


def test_box_maxabs_ties_first_query_wins():
    """Equal |value| with opposite signs on the same cells: the first query's value is kept."""
    cfg = dict(BOX_CONFIGS["800x320"], fp16=False, debug_print=False)
    lw = torch.tensor([[0.1, 0.4, -0.4, 0.3, -0.3]])
    cw = torch.tensor([[0.1, -0.6, 0.6, 0.2, -0.2]])
    pb = torch.tensor([[5.0, 1000.0, 1000.0, 1001.0, 1001.0]])
    pp = torch.tensor([[[0.0, 3, 3], [2.0, 10, 10], [2.0, 10, 10], [2.0, 10, 11], [2.0, 10, 11]]])
    m = AttentionBiasGenerator(**cfg)
    with torch.no_grad():
        m.bias_scale.fill_(2.0)
        sp = m.forward_sparse(lw, cw, pb, pp)
    bev, cam = sp.heatmaps("maxabs")
    y, x = divmod(1000, 128)
    assert float(bev[0, y, x]) == pytest.approx(0.8) and float(bev[0, y, x + 1]) == pytest.approx(0.8)
    assert float(cam[0, 2, 10, 10]) == pytest.approx(-1.2)
    _assert_same_heatmaps((bev, cam), _entry_path(sp).heatmaps("maxabs"), "maxabs")


def test_stale_layout_is_not_used():
    """Replacing or editing the entries in place falls back to the entry-by-entry reduction."""
    cfg = dict(BOX_CONFIGS["odd_w7"], fp16=False, debug_print=False)
    gen = torch.Generator().manual_seed(24)
    inputs = _random_inputs(gen, 1, 30, (37, 53), (6, 11, 29))
    m = AttentionBiasGenerator(**cfg)
    with torch.no_grad():
        sp = m.forward_sparse(*inputs)
    replaced = dataclasses.replace(sp, values=sp.values.detach() * torch.linspace(0.5, 2, 98))
    assert not replaced.layout.describes(replaced)
    for reduce in REDUCES:
        _assert_same_heatmaps(replaced.heatmaps(reduce), _entry_path(replaced).heatmaps(reduce),
                              reduce)
    with torch.no_grad():
        sp.values[0, 3, 5] = 4.5  # in place: the version counter moves
    assert not sp.layout.describes(sp)
    assert torch.equal(sp.heatmaps("maxabs")[0], _entry_path(sp).heatmaps("maxabs")[0])


def test_layout_only_for_uniform_windows():
    gen = torch.Generator().manual_seed(25)
    inputs = _random_inputs(gen, 1, 10, (37, 53), (6, 11, 29))
    for gaussian, expect in ((True, False), (False, True)):
        m = AttentionBiasGenerator(**dict(BOX_CONFIGS["odd_w7"], use_gaussian_window=gaussian,
                                          debug_print=False))
        with torch.no_grad():
            assert (m.forward_sparse(*inputs).layout is not None) == expect
    m = AttentionBiasGenerator(**dict(BOX_CONFIGS["odd_w7"], use_local_bias=False,
                                      debug_print=False))
    with torch.no_grad():
        assert m.forward_sparse(*inputs).layout is None


@pytest.mark.parametrize("b,q", [(0, 5), (2, 0)])
def test_heatmaps_empty(b, q):
    m = AttentionBiasGenerator(**dict(BOX_CONFIGS["odd_w7"], fp16=False, debug_print=False))
    with torch.no_grad():
        sp = m.forward_sparse(torch.rand(b, q), torch.rand(b, q), torch.zeros(b, q),
                              torch.zeros(b, q, 3))
    for reduce in REDUCES:
        for path in (sp, _entry_path(sp)):
            bev, cam = path.heatmaps(reduce)
            assert bev.shape == (b, 37, 53) and cam.shape == (b, 6, 11, 29)
            assert not bool(bev.any()) and not bool(cam.any())


@pytest.mark.parametrize("seed", range(8))
def test_box_heatmaps_random_configs(seed):
    """Random shapes, windows, parities, scales and inputs: box path == entry path."""
    g = torch.Generator().manual_seed(100 + seed)
    pick = lambda lo, hi: int(torch.randint(lo, hi + 1, (1,), generator=g))
    H, W, V, h, w = pick(6, 40), pick(6, 40), pick(1, 4), pick(5, 20), pick(5, 30)
    ws = pick(1, min(H, W, h, w) - 1)
    parity = "symmetric" if seed % 2 else "head"
    m = AttentionBiasGenerator(bev_feature_shape=(H, W), pers_feature_shape=(V, h, w),
                               window_size=ws, window_parity=parity, fp16=bool(seed % 3),
                               bias_scale=0.5 + seed, max_scale=6.0, debug_print=False)
    B, Q = pick(1, 3), pick(1, 100)
    lw = torch.tanh(2 * torch.randn(B, Q, generator=g))
    cw = torch.tanh(2 * torch.randn(B, Q, generator=g))
    pb = torch.randint(-3 * W, (H + 3) * W, (B, Q), generator=g).float()
    pb[:, ::7] += 0.5  # not integers: entry by entry
    pp = torch.stack([torch.randint(-1, V + 1, (B, Q), generator=g),
                      torch.randint(-ws, h + ws, (B, Q), generator=g),
                      torch.randint(-ws, w + ws, (B, Q), generator=g)], -1).float()
    pp[:, ::5, 0] += 0.5  # views 0.5 .. V + 0.5, truncated
    with torch.no_grad():
        sp = m.forward_sparse(lw, cw, pb, pp)
    assert sp.layout is not None and sp.layout.describes(sp)
    for dtype in (None, torch.float16):
        for reduce in REDUCES:
            _assert_same_heatmaps(sp.heatmaps(reduce, dtype),
                                  _entry_path(sp).heatmaps(reduce, dtype), reduce)
