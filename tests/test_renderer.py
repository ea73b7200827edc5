"""WeightRenderer: upstream golden maps, an independent naive reference, quirks and faults."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from aqr_cli.core.configs import reference_config
from aqr_cli.core.errors import AQRInputError, QuirkWarning
from aqr_cli.core.renderer import WeightRenderer

METHODS = ("gaussian", "bilinear", "direct", "distance_weighted")
SETS = ("int", "frac", "sparse")
TOL = 1e-5


def _renderer(method, **over):
    cfg = reference_config("800x320").renderer_config
    return WeightRenderer(**{**cfg, "render_method": method, **over})


def _inputs(golden, set_name):
    """(lidar weights, camera weights, pts_bev, pts_pers) the fixtures README lists per set."""
    t = lambda k: torch.from_numpy(golden[k].copy())
    lw, cw = t("in_lidar_weights"), t("in_camera_weights")
    kind = "int" if set_name == "int" else "frac"
    pb, pp = t(f"render_pts_bev_{kind}"), t(f"render_pts_pers_{kind}")
    if set_name == "sparse":
        rows = torch.from_numpy(golden["render_sparse_rows"])
        lw, cw, pb, pp = lw[:, rows], cw[:, rows], pb[:, rows], pp[:, rows]
    return lw, cw, pb, pp


def _quiet(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QuirkWarning)
        return fn(*args, **kw)


def _max_err(a, b):
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())


# ---------------------------------------------------------------- golden maps

@pytest.mark.parametrize("set_name", SETS)
@pytest.mark.parametrize("method", METHODS)
def test_golden_bev(golden, method, set_name):
    lw, _, pb, _ = _inputs(golden, set_name)
    out = _quiet(_renderer(method).render_bev_weights, lw, pb)
    ref = golden[f"render_{set_name}_{method}_bev"]
    assert out.shape == ref.shape and out.dtype == torch.float32
    assert _max_err(out, ref) <= TOL


@pytest.mark.parametrize("set_name", SETS)
@pytest.mark.parametrize("method", METHODS)
def test_golden_perspective(golden, method, set_name):
    _, cw, _, pp = _inputs(golden, set_name)
    out = _renderer(method).render_perspective_weights(cw, pp)
    ref = golden[f"render_{set_name}_{method}_pers"]
    assert out.shape == ref.shape
    assert _max_err(out, ref) <= TOL


@pytest.mark.parametrize("method", METHODS)
def test_golden_nonorm(golden, method):
    lw, cw, pb, pp = _inputs(golden, "int")
    r = _renderer(method, normalize_weights=False)
    assert _max_err(_quiet(r.render_bev_weights, lw, pb),
                    golden[f"render_int_{method}_nonorm_bev"]) <= TOL
    assert _max_err(r.render_perspective_weights(cw, pp),
                    golden[f"render_int_{method}_nonorm_pers"]) <= TOL


def test_golden_kernel(golden):
    kernel = _renderer("gaussian").gaussian_kernel
    assert kernel.shape == (7, 7) and kernel.dtype == torch.float32
    assert _max_err(kernel, golden["render_gaussian_kernel"]) <= 1e-7


@pytest.mark.parametrize("method", METHODS)
def test_effective_lidar_weights_match_upstream_inplace_clamp(golden, method):
    lw, _, pb, _ = _inputs(golden, "int")
    before = lw.clone()
    r = _renderer(method)
    with pytest.warns(QuirkWarning):
        r.render_bev_weights(lw, pb)
    assert torch.equal(lw, before), "caller's weights must not be modified"
    eff = r.effective_bev_weights(lw)
    assert _max_err(eff, golden["render_lidar_weights_after_bev_call"]) == 0.0
    assert torch.equal(lw, before)


def test_camera_weights_unchanged_like_upstream(golden):
    _, cw, _, pp = _inputs(golden, "int")
    before = cw.clone()
    _renderer("gaussian").render_perspective_weights(cw, pp)
    assert torch.equal(cw, before)
    assert _max_err(cw, golden["render_camera_weights_after_pers_call"]) == 0.0


def test_load_checkpoint_kernel(head_state_dict):
    pre = "weight_renderer."
    sd = {k[len(pre):]: v for k, v in head_state_dict.items() if k.startswith(pre)}
    assert list(sd) == ["gaussian_kernel"]
    r = WeightRenderer(**reference_config("800x320").renderer_config)
    r.gaussian_kernel.zero_()
    r.load_state_dict(sd, strict=True)
    assert torch.equal(r.gaussian_kernel, sd["gaussian_kernel"])


@pytest.mark.parametrize("method", ["bilinear", "direct", "distance_weighted"])
def test_kernel_buffer_only_for_gaussian(method):
    assert dict(_renderer(method).state_dict()) == {}


# ---------------------------------------------------------------- upstream quirks

def test_q1_warning_when_negative():
    r = _renderer("gaussian")
    w = torch.tensor([[-0.5, 0.3, 1.2, 0.8]])
    pts = torch.tensor([[[5.0, 5.0], [6.0, 6.0], [7.0, 7.0], [8.0, 8.0]]])
    with pytest.warns(QuirkWarning) as rec:
        r.render_bev_weights(w, pts)
    q1 = [x.message for x in rec if isinstance(x.message, QuirkWarning)]
    assert len(q1) == 1 and q1[0].quirk_id == "Q1"
    assert q1[0].detail["count"] == 2
    assert q1[0].detail["min"] == pytest.approx(-0.5)
    assert q1[0].detail["max"] == pytest.approx(1.2)


def test_no_q1_warning_when_in_unit_range():
    r = _renderer("gaussian")
    w = torch.tensor([[0.0, 0.3, 1.0]])
    pts = torch.tensor([[[5.0, 5.0], [6.0, 6.0], [7.0, 7.0]]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r.render_bev_weights(w, pts)
        r.render_perspective_weights(torch.tensor([[-0.5, 1.5, 0.2]]),
                                     torch.tensor([[[0.0, 1.0, 1.0]] * 3]))


def test_threshold_compares_in_float64():
    """Upstream compares ``w.item()`` (float64) with 0.01: float32 0.01 is skipped."""
    r = _renderer("direct")
    pts = torch.tensor([[[10.0, 10.0]]])
    assert float(r.render_bev_weights(torch.tensor([[0.01]]), pts).max()) == 0.0
    out64 = r.render_bev_weights(torch.tensor([[0.01]], dtype=torch.float64), pts.double())
    assert out64.dtype == torch.float64 and float(out64[0, 10, 10]) == 0.01


def test_truncation_toward_zero():
    r = _renderer("direct")
    pts = torch.tensor([[[-0.4, 3.0], [-1.0, 5.0], [3.9, 127.99]]])
    out = r.render_bev_weights(torch.tensor([[0.5, 0.6, 0.7]]), pts)
    assert float(out[0, 0, 3]) == pytest.approx(0.5)  # -0.4 -> row 0
    assert float(out[0, :, 5].sum()) == 0.0  # -1.0 -> row -1, skipped
    assert float(out[0, 3, 127]) == pytest.approx(0.7)


@pytest.mark.parametrize("sigma,size,peak,cells", [
    (1.0, 7, 0.159241, 21), (1.5, 11, 0.070762, 25),
    (2.0, 13, 0.039870, 37), (2.5, 17, 0.025496, 37)])
def test_kernel_table(sigma, size, peak, cells):
    r = WeightRenderer(gaussian_sigma=sigma, bev_feature_shape=(64, 64), normalize_weights=False)
    assert r.gaussian_kernel.shape == (size, size)
    assert float(r.gaussian_kernel.max()) == pytest.approx(peak, abs=1e-6)
    out = r.render_bev_weights(torch.ones(1, 1), torch.tensor([[[30.0, 30.0]]]))
    assert int((out > 0).sum()) == cells


def test_1600x640_config_kernel():
    cfg = reference_config("1600x640").renderer_config
    r = WeightRenderer(**cfg)
    assert r.bev_feature_shape == (180, 180) and r.pers_feature_shape == (6, 40, 100)
    assert r.gaussian_kernel.shape == (13, 13)
    assert float(r.gaussian_kernel[6, 6]) == pytest.approx(0.039870, abs=1e-6)


def test_perspective_only_gaussian_and_direct():
    w = torch.full((1, 3), 0.9)
    pts = torch.tensor([[[0.0, 5.0, 5.0], [3.0, 1.0, 1.0], [5.0, 10.0, 20.0]]])
    for method in ("bilinear", "distance_weighted"):
        assert float(_renderer(method).render_perspective_weights(w, pts).abs().sum()) == 0.0
    assert float(_renderer("direct").render_perspective_weights(w, pts).sum()) == pytest.approx(2.7)


def test_batch_items_independent():
    g = torch.Generator().manual_seed(5)
    w = torch.rand(3, 50, generator=g)
    pb = torch.rand(3, 50, 2, generator=g) * 140 - 6
    pp = torch.cat([torch.randint(0, 6, (3, 50, 1), generator=g).float(),
                    torch.rand(3, 50, 2, generator=g) * torch.tensor([20.0, 50.0])], -1)
    for method in METHODS:
        r = _renderer(method)
        bev, pers = r.render_bev_weights(w, pb), r.render_perspective_weights(w, pp)
        for i in range(3):
            assert _max_err(bev[i:i + 1], r.render_bev_weights(w[i:i + 1], pb[i:i + 1])) <= 1e-6
            assert _max_err(pers[i:i + 1],
                            r.render_perspective_weights(w[i:i + 1], pp[i:i + 1])) <= 1e-6


# ---------------------------------------------------------------- naive reference

def _naive_kernel(sigma):
    k = int(6 * sigma + 1)
    k += 1 - k % 2
    half = k // 2
    vals = [[math.exp(-(a * a + b * b) / (2 * sigma * sigma)) for b in range(-half, half + 1)]
            for a in range(-half, half + 1)]
    total = sum(map(sum, vals))
    return torch.tensor([[v / total for v in row] for row in vals], dtype=torch.float32)


def _naive_splat(method, wmap, w, y, x, sigma, decay):
    """Draw one query (weight ``w`` past the threshold) into ``wmap [H, W]`` per spec 3.3."""
    h, wd = wmap.shape
    if method == "gaussian":
        k = _naive_kernel(sigma)
        half = k.shape[0] // 2
        yi, xi = int(y), int(x)
        if not (0 <= yi < h and 0 <= xi < wd):
            return
        for dy in range(-half, half + 1):
            for dx in range(-half, half + 1):
                if 0 <= yi + dy < h and 0 <= xi + dx < wd:
                    wmap[yi + dy, xi + dx] += w * float(k[dy + half, dx + half])
    elif method == "direct":
        yi, xi = int(y), int(x)
        if 0 <= yi < h and 0 <= xi < wd:
            wmap[yi, xi] = max(float(wmap[yi, xi]), w)
    elif method == "bilinear":
        y0, x0 = int(y), int(x)
        if not (0 <= y0 < h - 1 and 0 <= x0 < wd - 1):
            return
        fy, fx = y - y0, x - x0
        for cy, cx, cw in ((y0, x0, (1 - fy) * (1 - fx)), (y0, x0 + 1, (1 - fy) * fx),
                           (y0 + 1, x0, fy * (1 - fx)), (y0 + 1, x0 + 1, fy * fx)):
            wmap[cy, cx] += w * cw
    else:
        radius = 0.2 * min(h, wd)
        ii, jj = np.meshgrid(np.arange(h), np.arange(wd), indexing="ij")
        d = np.sqrt((ii - y) ** 2 + (jj - x) ** 2)  # whole grid; the centre is not checked
        wmap += torch.from_numpy(np.where(d <= radius, w * np.exp(-d / (radius * decay)), 0.0))


def _naive_post(wmap, thr, norm, clamp):
    wmap[wmap < thr] = 0
    return wmap.clamp(0, clamp) if norm else wmap


def naive_bev(method, weights, pts, shape, sigma=2.0, decay=0.8, thr=0.01, norm=True, clamp=1.5):
    """Per-query loop from the spec text: clamp to [0, 1] if needed, skip w < thr, splat, post."""
    b, q = weights.shape
    wl = weights.tolist()
    if any(v < 0 or v > 1 for row in wl for v in row):
        wl = [[min(max(v, 0.0), 1.0) for v in row] for row in wl]
    out = torch.zeros(b, *shape, dtype=torch.float64)
    for bi in range(b):
        for qi in range(q):
            if wl[bi][qi] < thr:
                continue
            y, x = pts[bi, qi].tolist()
            _naive_splat(method, out[bi], wl[bi][qi], y, x, sigma, decay)
    return _naive_post(out, thr, norm, clamp)


def naive_pers(method, weights, pts, shape, sigma=2.0, thr=0.01, norm=True, clamp=1.5):
    """Per-query loop: rows with view == v and finite h; only gaussian/direct draw."""
    b, q = weights.shape
    v, h, w = shape
    out = torch.zeros(b, v, h, w, dtype=torch.float64)
    for bi in range(b):
        for qi in range(q):
            wt = float(weights[bi, qi])
            view, y, x = pts[bi, qi].tolist()
            if method not in ("gaussian", "direct") or wt < thr:
                continue
            if math.isnan(y) or view not in range(v):
                continue
            _naive_splat(method, out[bi, int(view)], wt, y, x, sigma, 0.8)
    return _naive_post(out, thr, norm, clamp)


def _edge_bev(h, w, b, q, seed):
    g = torch.Generator().manual_seed(seed)
    pts = torch.rand(b, q, 2, generator=g) * torch.tensor([h + 6.0, w + 6.0]) - 3
    pts[:, ::3] = pts[:, ::3].floor()  # integer-valued rows like the upstream projection
    edges = torch.tensor([[-0.4, 3.3], [2.6, -0.7], [h - 1, 2], [1, w - 1], [h - 0.5, w - 0.5],
                          [-1.2, 4.0], [h, 2.0], [3.0, w], [1e4, 5.0], [h - 1.5, w - 1.5],
                          [0.0, 0.0], [0.0, 0.0], [h / 2, w / 2], [h / 2, w / 2]])
    pts[:, :len(edges)] = edges
    weights = torch.rand(b, q, generator=g) * 1.5 - 0.3
    weights[:, :10] = torch.tensor([0.9, 0.8, 0.7, 0.95, 1.2, 0.6, 0.9, 0.9, 0.9, 0.85])
    weights[:, 10:14] = torch.tensor([0.01, 0.0101, 0.95, 1.0])  # threshold; max vs sum
    return weights, pts


def _edge_pers(v, h, w, b, q, seed):
    g = torch.Generator().manual_seed(seed)
    view = torch.randint(-1, v + 1, (b, q, 1), generator=g).float()
    hw = torch.rand(b, q, 2, generator=g) * torch.tensor([h + 4.0, w + 4.0]) - 2
    pts = torch.cat([view, hw], -1)
    edges = torch.tensor([[0, -0.45, 3.3], [v - 1, h - 0.2, w - 0.7], [2, h - 1, w - 1],
                          [1, float("nan"), float("nan")], [2.5, 3, 3], [0, 0, 0], [0, 0, 0],
                          [v - 1, -1.1, 2], [3, 5, w]])
    pts[:, :len(edges)] = edges
    weights = torch.rand(b, q, generator=g) * 2.0 - 0.6
    weights[:, :len(edges)] = torch.tensor([0.9, 1.3, 0.7, 0.8, 0.9, 0.01, 0.0101, 0.9, 0.9])
    return weights, pts


SHAPES = {
    "1600x640": dict(bev=(180, 180), pers=(6, 40, 100), batch=1, queries=80, sigma=2.0),
    "odd": dict(bev=(37, 53), pers=(6, 11, 29), batch=2, queries=60, sigma=1.3),
}


@pytest.mark.parametrize("shape_name", list(SHAPES))
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("norm", [True, False])
def test_bev_matches_naive_reference(shape_name, method, norm):
    s = SHAPES[shape_name]
    weights, pts = _edge_bev(*s["bev"], s["batch"], s["queries"], seed=11)
    r = WeightRenderer(render_method=method, gaussian_sigma=s["sigma"], bev_feature_shape=s["bev"],
                       pers_feature_shape=s["pers"], normalize_weights=norm)
    out = _quiet(r.render_bev_weights, weights, pts)
    ref = naive_bev(method, weights, pts, s["bev"], sigma=s["sigma"], norm=norm)
    assert out.shape == ref.shape
    assert _max_err(out, ref) <= TOL


@pytest.mark.parametrize("shape_name", list(SHAPES))
@pytest.mark.parametrize("method", METHODS)
def test_perspective_matches_naive_reference(shape_name, method):
    s = SHAPES[shape_name]
    weights, pts = _edge_pers(*s["pers"], s["batch"], s["queries"] * 3, seed=12)
    r = WeightRenderer(render_method=method, gaussian_sigma=s["sigma"], bev_feature_shape=s["bev"],
                       pers_feature_shape=s["pers"], normalize_weights=False)
    out = r.render_perspective_weights(weights, pts)
    ref = naive_pers(method, weights, pts, s["pers"], sigma=s["sigma"], norm=False)
    assert out.shape == ref.shape
    assert _max_err(out, ref) <= TOL
    if method in ("gaussian", "direct"):
        assert float(ref.abs().sum()) > 0


def test_feature_shape_override_matches_naive():
    weights, pts = _edge_bev(20, 30, 1, 40, seed=3)
    r = _renderer("gaussian")
    out = _quiet(r.render_bev_weights, weights, pts, feature_shape=(20, 30))
    assert out.shape == (1, 20, 30)
    assert _max_err(out, naive_bev("gaussian", weights, pts, (20, 30), sigma=1.0)) <= TOL


def _naive_stamps(kernel, weights, pts, shape):
    """Upstream's slice-and-add stamping with an arbitrary ``kernel [k, k]``, no postprocess."""
    h, w = shape
    half = kernel.shape[0] // 2
    out = torch.zeros(weights.shape[0], h, w)
    for b in range(weights.shape[0]):
        for q in range(weights.shape[1]):
            y, x = (int(v) for v in pts[b, q].tolist())
            if weights[b, q] < 0.01 or not (0 <= y < h and 0 <= x < w):
                continue
            y0, y1 = max(0, y - half), min(h, y + half + 1)
            x0, x1 = max(0, x - half), min(w, x + half + 1)
            ky, kx = half - (y - y0), half - (x - x0)
            out[b, y0:y1, x0:x1] += weights[b, q] * kernel[ky:ky + y1 - y0, kx:kx + x1 - x0]
    return out


@pytest.mark.parametrize("separable", [True, False])
def test_loaded_kernel_orientation(separable):
    """An asymmetric kernel from a state_dict is stamped the upstream way round."""
    g = torch.Generator().manual_seed(2)
    kernel = (torch.outer(torch.rand(7, generator=g), torch.rand(7, generator=g)) if separable
              else torch.rand(7, 7, generator=g)) / 10
    r = WeightRenderer(gaussian_sigma=1.0, bev_feature_shape=(23, 31), normalize_weights=False,
                       min_weight_threshold=0.01)
    weights, pts = torch.rand(2, 40, generator=g), torch.rand(2, 40, 2, generator=g) * 34 - 2
    r.render_bev_weights(weights, pts)  # fills the cache for the original kernel
    r.load_state_dict({"gaussian_kernel": kernel}, strict=True)
    ref = _naive_stamps(kernel, weights, pts, (23, 31))
    ref[ref < 0.01] = 0
    assert _max_err(r.render_bev_weights(weights, pts), ref) <= 1e-6


# ---------------------------------------------------------------- faults

@pytest.mark.parametrize("kwargs,name", [
    (dict(render_method="nearest"), "render_method"),
    (dict(gaussian_sigma=0.0), "gaussian_sigma"),
    (dict(gaussian_sigma=-1.0), "gaussian_sigma"),
    (dict(distance_decay=0.0), "distance_decay"),
    (dict(bev_feature_shape=(128,)), "bev_feature_shape"),
    (dict(bev_feature_shape=(0, 128)), "bev_feature_shape"),
    (dict(pers_feature_shape=(6, 20)), "pers_feature_shape"),
    (dict(max_weight_clamp=-1.0), "max_weight_clamp"),
])
def test_bad_constructor_args(kwargs, name):
    with pytest.raises(AQRInputError, match=name):
        WeightRenderer(**kwargs)
    assert issubclass(AQRInputError, ValueError)


@pytest.mark.parametrize("method", METHODS)
def test_bev_input_faults(method):
    r = _renderer(method)
    w, pts = torch.rand(1, 5), torch.rand(1, 5, 2) * 100
    with pytest.raises(AQRInputError, match=r"pts_bev.*\[B, Q, 2\]"):
        r.render_bev_weights(w, torch.rand(1, 5, 3))
    with pytest.raises(AQRInputError, match=r"pts_bev.*\[B, Q, 2\]"):
        r.render_bev_weights(w, torch.rand(2, 5, 2))
    with pytest.raises(AQRInputError, match=r"query_weights.*\[B, Q\]"):
        r.render_bev_weights(w[0], pts)
    with pytest.raises(AQRInputError, match="query_weights.*NaN"):
        r.render_bev_weights(torch.tensor([[0.5, float("nan"), 0.1, 0.2, 0.3]]), pts)
    with pytest.raises(AQRInputError, match="query_weights.*Inf"):
        r.render_bev_weights(torch.tensor([[0.5, float("inf"), 0.1, 0.2, 0.3]]), pts)
    bad = pts.clone()
    bad[0, 2, 1] = float("nan")
    with pytest.raises(AQRInputError, match="pts_bev.*NaN"):
        r.render_bev_weights(w, bad)
    with pytest.raises(AQRInputError, match="query_weights.*floating"):
        r.render_bev_weights(torch.ones(1, 5, dtype=torch.long), pts)
    with pytest.raises(AQRInputError, match="feature_shape"):
        r.render_bev_weights(w, pts, feature_shape=(10, -2))


@pytest.mark.parametrize("method", METHODS)
def test_perspective_input_faults(method):
    r = _renderer(method)
    w, pts = torch.rand(1, 4), torch.tensor([[[0.0, 1, 1], [1, 2, 2], [2, 3, 3], [3, 4, 4]]])
    with pytest.raises(AQRInputError, match=r"pts_pers.*\[B, Q, 3\]"):
        r.render_perspective_weights(w, pts[..., :2])
    with pytest.raises(AQRInputError, match="query_weights.*NaN"):
        r.render_perspective_weights(torch.tensor([[0.5, float("nan"), 0.1, 0.2]]), pts)
    inf = pts.clone()
    inf[0, 1, 2] = float("inf")
    with pytest.raises(AQRInputError, match="pts_pers.*Inf"):
        r.render_perspective_weights(w, inf)
    half_nan = pts.clone()
    half_nan[0, 1, 2] = float("nan")
    with pytest.raises(AQRInputError, match="pts_pers.*NaN w"):
        r.render_perspective_weights(w, half_nan)
    nan_rows = pts.clone()
    nan_rows[0, 1, 1:] = float("nan")  # upstream's skip marker is accepted
    assert r.render_perspective_weights(w, nan_rows).shape == (1, 6, 20, 50)
    with pytest.raises(AQRInputError, match="feature_shape"):
        r.render_perspective_weights(w, pts, feature_shape=(6, 20))


# ---------------------------------------------------------------- no mutation

@pytest.mark.parametrize("method", METHODS)
def test_no_input_mutation(golden, method):
    lw, cw, pb, pp = _inputs(golden, "frac")
    args = [lw, cw, pb, pp]
    before = [a.clone() for a in args]
    r = _renderer(method)
    _quiet(r.render_bev_weights, lw, pb)
    r.render_perspective_weights(cw, pp)
    r.effective_bev_weights(lw)
    for a, b in zip(args, before):
        assert torch.equal(torch.nan_to_num(a), torch.nan_to_num(b))
        assert torch.equal(torch.isnan(a), torch.isnan(b))


def test_effective_weights_returns_new_tensor():
    w = torch.tensor([[0.2, 0.4]])
    eff = WeightRenderer().effective_bev_weights(w)
    eff += 1
    assert torch.equal(w, torch.tensor([[0.2, 0.4]]))


def test_maps_carry_no_gradient():
    w = torch.rand(1, 5, requires_grad=True)
    pts = torch.rand(1, 5, 2) * 100
    for method in METHODS:
        assert not _renderer(method).render_bev_weights(w, pts).requires_grad


# ---------------------------------------------------------------- fast-path equivalences

def _float32_neighbours(value, steps=4):
    """float32 numbers around ``value``: the nearest one and ``steps`` ulps either side."""
    t = torch.tensor(value, dtype=torch.float32)
    out = [t]
    up, down = t.clone(), t.clone()
    for _ in range(steps):
        up = torch.nextafter(up, torch.tensor(math.inf))
        down = torch.nextafter(down, torch.tensor(-math.inf))
        out += [up, down]
    return torch.stack(out)


@pytest.mark.parametrize("thr", [0.01, 0.3, 1e-8, 0.0, -0.25, 1.0, 2.0 ** -20, 1e39, -1e39])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_drawn_threshold_equals_float64_item_compare(thr, dtype):
    """The one-op threshold cut draws exactly the weights with ``float(w) >= thr``."""
    r = _renderer("direct", min_weight_threshold=thr)
    g = torch.Generator().manual_seed(3)
    near = _float32_neighbours(thr if abs(thr) < 1e38 else 0.5).to(dtype)
    w = torch.cat([near, torch.rand(200, generator=g, dtype=torch.float64).to(dtype) * 2 - 0.5,
                   torch.tensor([0.0, -0.0, 1.0, 3e38], dtype=dtype)]).view(1, -1)
    want = torch.tensor([float(v) >= thr for v in w.view(-1).tolist()]).view(1, -1)
    assert torch.equal(r._drawn(w), want)
    drawn = r._drawn_weights(w)
    assert torch.equal(drawn != 0, want & (w != 0))
    assert torch.equal(drawn[want], w[want])


def test_drawn_threshold_float32_neighbours_of_001():
    """Only the float32 values >= 0.01 (real) are drawn: 0.0099999998 is not, its successor is."""
    r = _renderer("direct")
    near = _float32_neighbours(0.01, steps=2)
    pts = torch.tensor([[[10.0, c] for c in range(near.numel())]])
    out = r.render_bev_weights(near.view(1, -1), pts)[0, 10, :near.numel()]
    for value, drawn in zip(near.tolist(), out.tolist()):
        assert (drawn != 0) == (value >= 0.01), value


@pytest.mark.parametrize("thr", [0.01, 0.3, 0.0, -0.5, 1e39, -1e39])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_postprocess_equals_torch_compare(thr, dtype):
    """Zeroing ``maps < thr`` with the threshold cut equals torch's own comparison."""
    r = _renderer("direct", min_weight_threshold=thr, normalize_weights=False)
    g = torch.Generator().manual_seed(4)
    rounded = torch.tensor(thr, dtype=torch.float64).to(dtype)
    near = rounded.view(1)
    if torch.isfinite(rounded):
        near = torch.stack([rounded, torch.nextafter(rounded, torch.tensor(math.inf, dtype=dtype)),
                            torch.nextafter(rounded, torch.tensor(-math.inf, dtype=dtype))])
    maps = torch.cat([near.to(dtype), (torch.rand(100, generator=g) * 3 - 1).to(dtype),
                      torch.tensor([0.0, -0.0, float("inf"), -float("inf")], dtype=dtype)])
    maps = maps.view(1, 1, -1)
    want = torch.where(maps < thr, torch.zeros((), dtype=dtype), maps)
    got = r._postprocess_weight_map(maps.clone())
    assert got.dtype == dtype and torch.equal(got, want)


@pytest.mark.parametrize("shape", [(64, 96), (96, 64), (72, 180), (180, 180), (20, 100),
                                   (64, 53), (1, 1), (5, 3), (9, 8)])
def test_vertical_band_pass_matches_stamps(shape):
    """An asymmetric separable kernel is stamped exactly like upstream's slicing: edges,
    cropping, the vertical pass' 8-row block seams, and samples stacked in one tall image
    (a stamp never leaks into the next sample); the pass is one banded ``[8, 8 + k - 1]``
    block of the kernel's centre column, the scatter its centre row."""
    h, w = shape
    g = torch.Generator().manual_seed(6)
    kernel = torch.outer(torch.rand(7, generator=g), torch.rand(7, generator=g)) / 10
    r = WeightRenderer(gaussian_sigma=1.0, bev_feature_shape=shape, normalize_weights=False)
    r.load_state_dict({"gaussian_kernel": kernel}, strict=True)
    weights = torch.rand(3, 300, generator=g)
    pts = torch.rand(3, 300, 2, generator=g) * torch.tensor([h + 6.0, w + 6.0]) - 3
    pts[:, :8] = torch.tensor([[0, 0], [0, w - 1], [h - 1, 0], [h - 1, w - 1],
                               [3, 31], [7, 32], [8, w - 33], [h // 2, w // 2]], dtype=torch.float32)
    ref = _naive_stamps(kernel, weights, pts, shape)
    ref[ref < 0.01] = 0
    out = r.render_bev_weights(weights, pts)
    assert out.is_contiguous()
    assert _max_err(out, ref) <= 1e-6
    row, band = r._separable(torch.float32)
    assert row.shape == (7,) and band.shape == (8, 14)
    assert torch.allclose(band[2, 2:9], kernel[:, 3].flip(0))  # output row i: taps u = i..i+6


def test_camera_views_stay_apart():
    """Stamps near a view's top and bottom edges reach neither the neighbouring views nor the
    next sample (an asymmetric kernel, 3 views of 5 x 9 cells, every row of every view)."""
    g = torch.Generator().manual_seed(7)
    kernel = torch.outer(torch.rand(7, generator=g), torch.rand(7, generator=g)) / 10
    v, h, w = 3, 5, 9
    r = WeightRenderer(gaussian_sigma=1.0, pers_feature_shape=(v, h, w), normalize_weights=False)
    r.load_state_dict({"gaussian_kernel": kernel}, strict=True)
    view, row, col = torch.meshgrid(torch.arange(v), torch.arange(h), torch.tensor([0, 4, 8]),
                                    indexing="ij")
    pts = torch.stack([view, row, col], -1).reshape(1, -1, 3).float().repeat(2, 1, 1)
    weights = torch.rand(2, pts.shape[1], generator=g) + 0.05
    out = r.render_perspective_weights(weights, pts)
    for b in range(2):
        for k in range(v):
            mine = pts[b, :, 0] == k
            ref = _naive_stamps(kernel, weights[b:b + 1, mine], pts[b:b + 1, mine, 1:], (h, w))[0]
            ref[ref < 0.01] = 0
            assert _max_err(out[b, k], ref) <= 1e-6


@pytest.mark.parametrize("method", METHODS)
def test_outputs_contiguous_and_fresh(method):
    w, pts = _edge_bev(20, 30, 2, 40, seed=8)
    r = WeightRenderer(render_method=method, gaussian_sigma=1.0, bev_feature_shape=(20, 30),
                       pers_feature_shape=(3, 9, 11))
    bev = _quiet(r.render_bev_weights, w, pts)
    wp, pp = _edge_pers(3, 9, 11, 2, 60, seed=9)
    cam = r.render_perspective_weights(wp, pp)
    assert bev.is_contiguous() and cam.is_contiguous()
    assert bev.shape == (2, 20, 30) and cam.shape == (2, 3, 9, 11)
    bev2 = _quiet(r.render_bev_weights, w, pts)
    assert bev2.data_ptr() != bev.data_ptr() and torch.equal(bev2, bev)


@pytest.mark.parametrize("method", ["gaussian", "direct"])
def test_extreme_and_integer_coordinates_match_naive(method):
    """Huge, negative and integer-typed coordinates, non-integral views, empty batches."""
    r = WeightRenderer(render_method=method, gaussian_sigma=1.0, bev_feature_shape=(20, 30),
                       pers_feature_shape=(3, 9, 11), normalize_weights=False)
    w = torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.5, 0.4]])
    pts = torch.tensor([[[1e30, 3.0], [-1e30, 4.0], [5.0, 1e30], [2.0, -1e30], [19.9, 29.9],
                         [-0.99, -0.99]]])
    ref = naive_bev(method, w, pts, (20, 30), sigma=1.0, norm=False)
    assert _max_err(r.render_bev_weights(w, pts), ref) <= TOL
    ipts = torch.tensor([[[0, 0], [19, 29], [20, 3], [-1, 4], [7, 30], [10, 10]]])
    assert _max_err(r.render_bev_weights(w, ipts),
                    naive_bev(method, w, ipts.double(), (20, 30), sigma=1.0, norm=False)) <= TOL
    pp = torch.tensor([[[2.5, 3, 3], [1.0, 1e30, 2], [-0.0, 4, 4], [2.0, -1e30, 5],
                        [3.0, 2, 2], [2.0, 8.9, 10.9]]], dtype=torch.float64)
    ref = naive_pers(method, w.double(), pp, (3, 9, 11), sigma=1.0, norm=False)
    assert _max_err(r.render_perspective_weights(w.double(), pp), ref) <= TOL
    assert r.render_bev_weights(torch.rand(0, 4), torch.rand(0, 4, 2)).shape == (0, 20, 30)
    assert r.render_perspective_weights(torch.rand(0, 4), torch.rand(0, 4, 3)).shape == (0, 3, 9, 11)


def test_alternating_shapes_reuse_separable_cache():
    """BEV and camera calls share one cached band (it depends on the kernel and dtype only);
    a kernel edit drops it."""
    r = _renderer("gaussian")
    w, pb = _edge_bev(128, 128, 1, 30, seed=1)
    wp, pp = _edge_pers(6, 20, 50, 1, 30, seed=2)
    _quiet(r.render_bev_weights, w, pb)
    r.render_perspective_weights(wp, pp)
    bands = dict(r.__dict__["_band_cache"][2])
    assert list(bands) == [torch.float32]
    _quiet(r.render_bev_weights, w, pb)
    r.render_perspective_weights(wp.double(), pp.double())
    assert r.__dict__["_band_cache"][2][torch.float32] is bands[torch.float32]
    assert len(r.__dict__["_band_cache"][2]) == 2
    with torch.no_grad():
        r.gaussian_kernel.mul_(2)
    out = _quiet(r.render_bev_weights, w, pb)
    assert len(r.__dict__["_band_cache"][2]) == 1
    ref = naive_bev("gaussian", w, pb, (128, 128), sigma=1.0)
    assert float(out.max()) > float(ref.max()) + 1e-3  # the doubled kernel is used
    r.gaussian_kernel = r.gaussian_kernel / 2  # a new buffer object, version 0 again
    assert _max_err(_quiet(r.render_bev_weights, w, pb), ref) <= 1e-6
    r.gaussian_kernel.data = r.gaussian_kernel * 2  # same object and version, new storage
    assert torch.equal(_quiet(r.render_bev_weights, w, pb), out)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("method", ["gaussian", "direct"])
def test_random_shapes_match_naive(method, seed):
    """Random map shapes (dense band and block-banded column passes), thresholds, sigmas."""
    g = torch.Generator().manual_seed(200 + seed)
    pick = lambda lo, hi: int(torch.randint(lo, hi + 1, (1,), generator=g))
    H, W, V, h, w = pick(20, 150), pick(20, 150), pick(1, 4), pick(5, 60), pick(5, 120)
    sigma = (0.7, 1.0, 1.3)[seed % 3]
    thr = (0.01, 0.0, 0.2)[seed % 3]
    norm = bool(seed % 2)
    r = WeightRenderer(render_method=method, gaussian_sigma=sigma, bev_feature_shape=(H, W),
                       pers_feature_shape=(V, h, w), normalize_weights=norm,
                       min_weight_threshold=thr)
    wts = torch.tanh(1.5 * torch.randn(2, 60, generator=g))
    pts = torch.rand(2, 60, 2, generator=g) * torch.tensor([H + 4.0, W + 4.0]) - 2
    pp = torch.cat([torch.randint(-1, V + 1, (2, 60, 1), generator=g).float(),
                    torch.rand(2, 60, 2, generator=g) * torch.tensor([h + 4.0, w + 4.0]) - 2], -1)
    ref = naive_bev(method, wts, pts, (H, W), sigma=sigma, thr=thr, norm=norm)
    assert _max_err(_quiet(r.render_bev_weights, wts, pts), ref) <= TOL
    ref = naive_pers(method, wts, pp, (V, h, w), sigma=sigma, thr=thr, norm=norm)
    assert _max_err(r.render_perspective_weights(wts, pp), ref) <= TOL


@pytest.mark.parametrize("shape", [(128, 128), (37, 53)])
def test_distance_weighted_integer_path_equals_box_path(shape):
    # integer centres take the one-table path; it must give the very bits of the per-query
    # distance boxes (same float32 expressions, same per-cell summation order)
    h, w = shape
    weights, pts = _edge_bev(h, w, 2, 300, seed=13)
    weights, pts = weights.clamp(0, 1), pts.floor()
    pts[0, :4] = torch.tensor([[-1e9, 5.0], [5.0, 1e9], [-40.0, -40.0], [h + 20.0, 3.0]])
    r = WeightRenderer(render_method="distance_weighted", bev_feature_shape=shape,
                       normalize_weights=False)
    fast = r.render_bev_weights(weights, pts)
    radius = min(shape) * 0.2
    boxes = r._distance_boxes(weights, pts[..., 0], pts[..., 1], r._drawn(weights), shape,
                              radius, int(math.ceil(radius)) + 1)
    assert float(fast.sum()) > 0
    assert torch.equal(fast, r._postprocess_weight_map(boxes))
    assert _max_err(fast, naive_bev("distance_weighted", weights, pts, shape, norm=False)) <= TOL


def test_distance_weighted_fractional_centre_takes_box_path():
    r = WeightRenderer(render_method="distance_weighted", bev_feature_shape=(40, 40))
    r._distance_stamps = lambda *a: pytest.fail("a fractional centre took the table path")
    weights, pts = torch.tensor([[0.5, 0.7]]), torch.tensor([[[3.0, 4.0], [10.5, 7.0]]])
    out = r.render_bev_weights(weights, pts)
    assert _max_err(out, naive_bev("distance_weighted", weights, pts, (40, 40))) <= TOL


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("thr", [-0.5, 0.0, 0.01])
def test_bev_clamp_kept_where_it_changes_what_is_drawn(method, thr):
    """Weights below 0 are clamped to 0 before drawing: with a threshold <= 0 they would be
    drawn (negative, or as 0) otherwise; weights above 1 are clamped for every threshold."""
    _, pts = _edge_bev(20, 30, 2, 40, seed=11)
    w = torch.tanh(3 * torch.randn(2, 40, generator=torch.Generator().manual_seed(12)))
    for weights in (w, w * 1.5):  # below 0 only; below 0 and above 1
        r = WeightRenderer(render_method=method, gaussian_sigma=1.0, bev_feature_shape=(20, 30),
                           min_weight_threshold=thr, normalize_weights=False)
        ref = naive_bev(method, weights, pts, (20, 30), sigma=1.0, thr=thr, norm=False)
        assert _max_err(_quiet(r.render_bev_weights, weights, pts), ref) <= TOL
