"""AQRWeightGenerator: golden reproduction, naive references at other shapes, variants, faults."""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from aqr_cli.core.configs import POINT_CLOUD_RANGE, encoder_config, reference_config
from aqr_cli.core.embeddings import CMTEmbeddings
from aqr_cli.core.errors import AQRInputError, QuirkWarning
from aqr_cli.core.generator import AQRWeightGenerator
from aqr_cli.io.rig import default_rig

PREFIX = "aqr_weight_generator."
FLASH, MHA = "PETRMultiheadFlashAttention", "MultiheadAttention"

# Golden tolerances for outputs that depend on the encoder attention. The checkpoint keeps the
# FlashBias random-normal in-projection init, so attention logits reach |770| and the softmax is
# nearly one-hot: float32 GEMM rounding alone moves these outputs by ~1e-4 (re-rounding only the
# in-projections changes encoder_out by 1.1e-4 here; the golden itself is 3.7e-5 (weights) /
# 1.05e-4 (encoder_out) away from a float64 evaluation). So 1e-5 cannot hold for every query on
# a different CPU/BLAS; we require it for the bulk and bound the worst case.
ATOL = 1e-5
WEIGHTS_MAX = 2e-4
ENCODER_MAX = 5e-4


def assert_golden(actual: torch.Tensor, expected: np.ndarray, worst: float,
                  bulk: float = 0.95) -> None:
    """All within ``worst``; the ``bulk`` quantile within ``ATOL``; the median within 1e-6."""
    assert tuple(actual.shape) == expected.shape
    err = np.abs(actual.detach().numpy().astype(np.float64) - expected)
    assert err.max() <= worst, err.max()
    assert np.quantile(err, bulk) <= ATOL, np.quantile(err, bulk)
    assert np.median(err) <= 1e-6, np.median(err)


def generator_sd(head_state_dict):
    return {k[len(PREFIX):]: v for k, v in head_state_dict.items() if k.startswith(PREFIX)}


def make_generator(sd=None, attention=FLASH, name="800x320", **kw):
    cfg = reference_config(name).aqr_config
    gen = AQRWeightGenerator(**{**cfg, "encoder_config": encoder_config(attention)}, **kw)
    if sd is not None:
        gen.load_state_dict(sd, strict=True)
    return gen.eval()


def run(gen, *args):
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", QuirkWarning)
        return gen(*args)


@pytest.fixture(scope="module")
def inputs(golden):
    """(query_embed [Q,1,C], memory [F,1,C], pos_embed [F,1,C], ref_points [1,Q,3], img_metas)."""
    scale = float(golden["aqr_in_lowrank_scale"])

    def lowrank(name):
        u = torch.from_numpy(golden[f"aqr_in_{name}_U_int8"]).float()
        v = torch.from_numpy(golden[f"aqr_in_{name}_V_int8"]).float()
        return ((u @ v) * scale)[:, None]

    metas = default_rig().img_metas()
    np.testing.assert_array_equal(np.stack(metas[0]["lidar2img"]), golden["lidar2img"])
    return (torch.from_numpy(golden["aqr_in_query_embed"]), lowrank("memory"), lowrank("pos"),
            torch.from_numpy(golden["ref_points"]), metas)


@pytest.fixture(scope="module")
def sd(head_state_dict):
    return generator_sd(head_state_dict)


def forward_with_encoder(gen, args):
    cap = {}
    handle = gen.encoder.register_forward_hook(lambda m, i, o: cap.setdefault("out", o))
    try:
        out = run(gen, *args)
    finally:
        handle.remove()
    return out, cap["out"]


# ---------------------------------------------------------------- structure


def test_state_dict_keys_shapes_order(sd):
    for attention in (FLASH, MHA, "PETRMultiheadAttention"):
        gen = make_generator(sd, attention)
        own = gen.state_dict()
        assert list(own) == list(sd)
        assert all(own[k].shape == sd[k].shape for k in sd)
    assert make_generator(None, FLASH, "1600x640").state_dict()["bev_type_embed"].shape == (256,)


def test_config_dicts_construct_both_resolutions():
    for name in ("800x320", "1600x640"):
        cfg = reference_config(name)
        gen = AQRWeightGenerator(**cfg.aqr_config)
        assert gen.num_features == cfg.num_features and gen.e_num_heads == 4
        assert gen.honour_lam is False and gen.weight_activation == "tanh"
    assert reference_config("1600x640").num_features == 56400


def test_honour_lam_resolution():
    assert make_generator(attention=MHA).honour_lam is True
    assert make_generator(attention="PETRMultiheadAttention").honour_lam is True
    assert make_generator(attention=FLASH).honour_lam is False
    assert make_generator(attention=FLASH, honour_lam=True).honour_lam is True
    with pytest.raises(AQRInputError, match="MultiFheadFlashAttention.*fails to build"):
        make_generator(attention="MultiFheadFlashAttention")
    with pytest.raises(AQRInputError, match="unknown attention type"):
        make_generator(attention="FancyAttention")


# ---------------------------------------------------------------- golden, 800x320


def test_projection_golden(golden, sd, inputs):
    gen = make_generator(sd)
    ref, metas = inputs[3], inputs[4]
    with pytest.warns(QuirkWarning):
        pts_bev, pts_pers, pts_idx, pts_pers_idx = gen.project_3d_to_features(ref, metas)
    for name, value in [("pts_bev", pts_bev), ("pts_pers", pts_pers), ("pts_idx", pts_idx),
                        ("pts_pers_idx", pts_pers_idx)]:
        assert value.dtype == torch.float32
        np.testing.assert_array_equal(value.numpy(), golden[f"aqr_{name}"], err_msg=name)
    unseen = torch.nonzero(gen.first_valid_view(ref, metas)[0] == -1).flatten().numpy()
    np.testing.assert_array_equal(unseen, golden["aqr_pts_pers_invalid_rows"])


def test_lam_golden(golden, sd, inputs):
    gen = make_generator(sd)
    pts_idx = torch.from_numpy(golden["aqr_pts_idx"])
    pts_pers_idx = torch.from_numpy(golden["aqr_pts_pers_idx"])
    mask = gen.generate_local_attention_masks(pts_idx, pts_pers_idx)
    assert mask.dtype == torch.bool and list(mask.shape) == golden["aqr_lam_mask_shape"].tolist()
    q, k = np.nonzero(~mask[0].numpy())
    np.testing.assert_array_equal(q, golden["aqr_lam_unmasked_q"])
    np.testing.assert_array_equal(k, golden["aqr_lam_unmasked_k"])
    assert all(torch.equal(mask[0], mask[h]) for h in range(1, 4))
    keys, allowed = gen.local_key_sets(pts_idx, pts_pers_idx)
    assert torch.equal(allowed.sum(-1), (~mask[0]).sum(-1)[None])


@pytest.mark.parametrize("attention, prefix", [(FLASH, "aqr"), (MHA, "aqr_mha")])
def test_forward_golden(golden, sd, inputs, attention, prefix):
    gen = make_generator(sd, attention)
    (lw, cw, loss, info), enc = forward_with_encoder(gen, inputs)
    assert loss is None and lw.shape == cw.shape == (1, 900)
    assert_golden(lw, golden[f"{prefix}_lidar_weights"], WEIGHTS_MAX)
    assert_golden(cw, golden[f"{prefix}_camera_weights"], WEIGHTS_MAX)
    assert_golden(enc, golden[f"{prefix}_encoder_out"], ENCODER_MAX, bulk=0.9)
    np.testing.assert_array_equal(info["pts_pers"].numpy(), golden["aqr_pts_pers"])


def test_variants_differ_where_lam_matters(golden):
    # guards the tolerance above: the two encoders differ far beyond it
    diff = np.abs(golden["aqr_lidar_weights"] - golden["aqr_mha_lidar_weights"])
    assert diff.max() > 100 * WEIGHTS_MAX


def test_forward_golden_real_pos_embed(golden, sd, head_state_dict, inputs):
    qe, mem, _, ref, metas = inputs
    emb = CMTEmbeddings.from_state_dict(head_state_dict).eval()
    with torch.no_grad():
        pos = emb.pos_embed((128, 128), (6, 20, 50), metas)
    lw, cw, _, _ = run(make_generator(sd), qe, mem, pos, ref, metas)
    assert_golden(lw, golden["aqr_pipe_lidar_weights"], WEIGHTS_MAX)
    assert_golden(cw, golden["aqr_pipe_camera_weights"], WEIGHTS_MAX)


def test_sigmoid_switch_same_logits(sd, inputs):
    outs = {}
    for act in ("tanh", "sigmoid"):
        gen = make_generator(sd, weight_activation=act)
        cap = {}
        gen.weight_predictor.register_forward_hook(lambda m, i, o: cap.setdefault("logits", o))
        lw, cw, _, _ = run(gen, *inputs)
        outs[act] = (lw, cw, cap["logits"])
    logits = outs["tanh"][2]
    assert torch.equal(logits, outs["sigmoid"][2])
    assert torch.equal(outs["tanh"][0], torch.tanh(logits)[..., 0])
    assert torch.equal(outs["sigmoid"][0], torch.sigmoid(logits)[..., 0])
    assert torch.equal(outs["sigmoid"][1], torch.sigmoid(logits)[..., 1])
    assert outs["sigmoid"][0].min() > 0


def test_quirk_warnings(sd, inputs):
    for attention, expect_q16 in ((FLASH, 1), (MHA, 0)):
        gen = make_generator(sd, attention)
        with warnings.catch_warnings(record=True) as rec, torch.no_grad():
            warnings.simplefilter("always")
            gen(*inputs)
        quirks = [w.message for w in rec if isinstance(w.message, QuirkWarning)]
        ids = [q.quirk_id for q in quirks]
        assert ids.count("Q16") == expect_q16
        assert [q.detail["count"] for q in quirks if q.quirk_id == "Q3"] == [17]
        assert [q.detail["count"] for q in quirks if q.quirk_id == "Q2"] == [4]


def test_eval_forward_deterministic_and_no_mutation(sd, inputs):
    gen = make_generator(sd, MHA)
    before = [x.clone() for x in inputs[:4]]
    metas_before = copy.deepcopy(inputs[4])
    a = run(gen, *inputs)
    b = run(gen, *inputs)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert all(torch.equal(x, y) for x, y in zip(inputs[:4], before))
    for key in ("lidar2img", "img_shape", "pad_shape"):
        assert all(np.array_equal(x, y) for x, y in zip(inputs[4][0][key], metas_before[0][key]))


# ---------------------------------------------------------------- naive references (spec text)

ODD = dict(bev=(37, 53), pers=(6, 11, 29), windows=[6, 3], img=(176, 464))
BIG = dict(bev=(180, 180), pers=(6, 40, 100), windows=[15, 5], img=(640, 1600))


def shape_generator(shape, attention=MHA, **kw):
    torch.manual_seed(0)
    return AQRWeightGenerator(
        embed_dims=256, encoder_config=encoder_config(attention), window_sizes=shape["windows"],
        bev_feature_shape=shape["bev"], pers_feature_shape=shape["pers"], **kw).eval()


def shape_metas(shape, batch):
    metas = default_rig().scaled_to(shape["img"]).img_metas(batch)
    if batch > 1:  # sample 1: LiDAR frame rotated by 20 degrees about z
        c, s = math.cos(0.35), math.sin(0.35)
        rot = np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])
        metas[1]["lidar2img"] = [m @ rot for m in metas[1]["lidar2img"]]
    return metas


def shape_refs(batch, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    ref = torch.rand(batch, n, 3, generator=g) * torch.tensor([1.1, 1.1, 1.0]) - torch.tensor([0.05, 0.05, 0.0])
    ref[:, 0] = torch.tensor([0.5, 0.5, 0.5])  # under the LiDAR: no camera
    ref[:, 1] = torch.tensor([1.0, 1.0, 1.0])  # index == bev_h
    ref[:, 2] = torch.tensor([0.0, 0.0, 0.0])
    return ref


def naive_projection(ref, metas, shape, pc=POINT_CLOUD_RANGE):
    """Spec 2.2 per query in float64; also flags queries within rounding of a decision edge."""
    (bev_h, bev_w), (n_v, ph, pw) = shape["bev"], shape["pers"]
    img_h, img_w = metas[0]["img_shape"][0][:2]
    ratio = ph / img_h
    b_n, q_n, _ = ref.shape
    out = {k: np.zeros((b_n, q_n) + s) for k, s in
           [("pts_bev", (2,)), ("pts_pers", (3,)), ("pts_idx", ()), ("pts_pers_idx", ())]}
    view_out = np.full((b_n, q_n), -1)
    ambiguous = np.zeros((b_n, q_n), dtype=bool)

    def near_int(x, tol):
        return abs(x - round(x)) < tol

    for b in range(b_n):
        mats = np.stack(metas[b]["lidar2img"])
        for q in range(q_n):
            r = ref[b, q].double().tolist()
            xyz = [r[a] * (pc[a + 3] - pc[a]) + pc[a] for a in range(3)]
            view, row, col = -1, 0.0, 0.0
            for v in range(n_v):
                x, y, z, _ = mats[v] @ np.array(xyz + [1.0])
                d = min(max(z, 1e-5), 99999)
                px, py = x / d, y / d
                ambiguous[b, q] |= any(abs(a - e) < 0.05 for a, e in
                                       [(px, 0), (px, img_w), (py, 0), (py, img_h)])
                if view < 0 and 0 <= px < img_w and 0 <= py < img_h:
                    view, row, col = v, py * ratio, px * ratio
            if view >= 0:
                ambiguous[b, q] |= near_int(row, 1e-3) or near_int(col, 1e-3)
                pers = (view, math.floor(row), math.floor(col))
            else:
                pers = (0, 0, 0)
            cells = [(c + 54.0) * (bev_h / 108) for c in xyz[:2]]
            ambiguous[b, q] |= near_int(cells[0], 1e-3) or near_int(cells[1], 1e-3)
            col_b, row_b = math.floor(cells[0]), math.floor(cells[1])
            view_out[b, q] = view
            out["pts_bev"][b, q] = (row_b, col_b)
            out["pts_pers"][b, q] = pers
            out["pts_idx"][b, q] = row_b * bev_w + col_b
            out["pts_pers_idx"][b, q] = pers[0] * ph * pw + pers[1] * pw + pers[2]
    return out, view_out, ambiguous


def naive_lam(pts_idx, pts_pers_idx, shape):
    """Spec 2.3 per query with Python ints: [B, Q, F] bool, True = masked."""
    (bev_h, bev_w), (n_v, h, w) = shape["bev"], shape["pers"]
    kc, kl = shape["windows"][0] // 2, shape["windows"][1] // 2
    n_bev, n_cam = bev_h * bev_w, n_v * h * w
    b_n, q_n = pts_idx.shape
    mask = np.ones((b_n, q_n, n_bev + n_cam), dtype=bool)
    for b in range(b_n):
        for q in range(q_n):
            p = int(pts_pers_idx[b, q])
            q_row, q_col = (p % (h * w)) // w, p % w
            for oy in range(-kc, kc + 1):
                for ox in range(-kc, kc + 1):
                    i = p + oy * w + ox
                    if abs((i % (h * w)) // w - q_row) <= kc and abs(i % w - q_col) <= kc:
                        mask[b, q, n_bev + min(max(i, 0), n_cam - 1)] = False
            t = int(pts_idx[b, q])
            for oy in range(-kl, kl + 1):
                for ox in range(-kl, kl + 1):
                    i = t + oy * bev_w + ox
                    if 0 <= i < n_bev and abs(i % bev_w - t % bev_w) <= kl:
                        mask[b, q, i] = False
    return mask


@pytest.mark.parametrize("shape, batch, n", [(BIG, 1, 900), (ODD, 2, 300)], ids=["1600x640", "odd"])
def test_projection_and_lam_vs_naive(shape, batch, n):
    gen = shape_generator(shape)
    metas, ref = shape_metas(shape, batch), shape_refs(batch, n)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        got = dict(zip(["pts_bev", "pts_pers", "pts_idx", "pts_pers_idx"],
                       gen.project_3d_to_features(ref, metas)))
    want, view, ambiguous = naive_projection(ref, metas, shape)
    assert ambiguous.mean() < 0.02
    ok = ~ambiguous
    for key in want:
        np.testing.assert_array_equal(got[key].numpy()[ok], want[key][ok], err_msg=key)
    np.testing.assert_array_equal(gen.first_valid_view(ref, metas).numpy()[ok], view[ok])
    assert (view[:, 0] == -1).all() and (got["pts_pers"][:, 0] == 0).all()
    counts = {w.message.quirk_id: w.message.detail["count"] for w in rec}
    assert counts["Q3"] == (view == -1).sum() and counts["Q2"] >= batch
    mask = gen.generate_local_attention_masks(got["pts_idx"], got["pts_pers_idx"])
    expect = naive_lam(got["pts_idx"].numpy(), got["pts_pers_idx"].numpy(), shape)
    heads = mask.view(batch, 4, n, -1)
    for h in range(4):
        np.testing.assert_array_equal(heads[:, h].numpy(), expect)


def test_lam_even_window_is_9x9_and_lidar_column_check():
    shape = dict(bev=(10, 10), pers=(1, 12, 12), windows=[8, 3], img=(192, 192))
    gen = shape_generator(shape)
    pts_pers_idx = torch.tensor([[5.0 * 12 + 6]])  # camera cell (5, 6)
    pts_idx = torch.tensor([[3.0 * 10 + 9, ]])      # BEV cell (3, 9): right edge
    mask = ~gen.generate_local_attention_masks(pts_idx, pts_pers_idx)[0, 0]
    cam = mask[100:].view(12, 12)
    assert cam.sum() == 81 and cam[1:10, 2:11].all()   # -4..4 even for window 8
    bev = mask[:100].view(10, 10)
    assert bev.sum() == 6 and bev[2:5, 8:10].all()     # no wrap to column 0
    beyond = ~gen.generate_local_attention_masks(torch.tensor([[100.0]]), pts_pers_idx)[0, 0, :100]
    assert beyond.view(10, 10)[9, 0:2].all() and beyond.sum() == 2  # index == H*W: partial window


# ---------------------------------------------------------------- dense reference forward


def reference_forward(gen, qe, mem, pos, mask):
    """Independent encoder path: ``nn.MultiheadAttention`` with the dense LAM (or none)."""
    layer = gen.encoder.layers[0]
    mha = nn.MultiheadAttention(256, 4)
    mha.load_state_dict(layer.attentions[0].attn.state_dict())
    mha.eval()
    with torch.no_grad():
        x = mha(qe, mem + pos, mem, attn_mask=mask, need_weights=False)[0]
        x = layer.norms[0](x)
        x = layer.norms[1](x + layer.ffns[0].layers(x))
        logits = gen.weight_predictor(gen.encoder.post_norm(x).transpose(0, 1))
    return torch.tanh(logits)


@pytest.mark.parametrize("honour", [True, False])
def test_forward_matches_dense_reference_odd_batch2(honour):
    gen = shape_generator(ODD, MHA, honour_lam=honour)
    metas, ref = shape_metas(ODD, 2), shape_refs(2, 300, seed=1)
    g = torch.Generator().manual_seed(2)
    qe = torch.randn(300, 2, 256, generator=g)
    mem, pos = torch.randn(2, gen.num_features, 2, 256, generator=g)
    lw, cw, _, info = run(gen, qe, mem, pos, ref, metas)
    mask = gen.generate_local_attention_masks(info["pts_idx"], info["pts_pers_idx"]) if honour else None
    w = reference_forward(gen, qe, mem, pos, mask)
    torch.testing.assert_close(lw, w[..., 0], rtol=0, atol=ATOL)
    torch.testing.assert_close(cw, w[..., 1], rtol=0, atol=ATOL)


def test_forward_smoke_1600x640():
    cfg = reference_config("1600x640")
    metas = default_rig().scaled_to(cfg.img_shape).img_metas()
    g = torch.Generator().manual_seed(3)
    qe = torch.randn(900, 1, 256, generator=g)
    mem, pos = torch.randn(2, cfg.num_features, 1, 256, generator=g)
    ref = shape_refs(1, 900, seed=3)
    out = {}
    for honour in (False, True):
        torch.manual_seed(0)
        gen = AQRWeightGenerator(**cfg.aqr_config, honour_lam=honour).eval()
        with warnings.catch_warnings(record=True) as rec, torch.no_grad():
            warnings.simplefilter("always")
            lw, cw, _, info = gen(qe, mem, pos, ref, metas)
        assert lw.shape == cw.shape == (1, 900) and info["pts_pers"].shape == (1, 900, 3)
        assert torch.isfinite(lw).all() and torch.isfinite(cw).all()
        assert lw.abs().max() <= 1 and cw.abs().max() <= 1
        assert any(w.message.quirk_id == "Q16" for w in rec) is (not honour)
        out[honour] = lw
    assert (out[True] - out[False]).abs().max() > 1e-2


# ---------------------------------------------------------------- faults


@pytest.fixture(scope="module")
def small():
    gen = shape_generator(ODD)
    metas = shape_metas(ODD, 1)
    q, f = 20, gen.num_features
    return gen, (torch.randn(q, 1, 256), torch.randn(f, 1, 256), torch.randn(f, 1, 256),
                 shape_refs(1, q), metas)


def _nan(x):
    x = x.clone()
    x.view(-1)[3] = float("nan")
    return x


def _inf(x):
    x = x.clone()
    x.view(-1)[5] = float("inf")
    return x


@pytest.mark.parametrize("index, bad, match", [
    (0, lambda x: x[:-1], r"query_embed: expected shape \[Q, B, C\]"),
    (0, lambda x: x[..., :128], "query_embed"),
    (0, lambda x: x.long(), "floating"),
    (1, lambda x: x[:-1], r"memory: expected shape \[F = H\*W \+ V\*h\*w, B, C\] = \[3875"),
    (2, lambda x: torch.cat([x, x]), "pos_embed"),
    (3, lambda x: x[..., :2], r"ref_points: expected .*\[B, Q, 3\]"),
    (1, _nan, "memory: contains 1 NaN"),
    (2, _inf, "pos_embed: contains 0 NaN and 1 Inf"),
    (3, _nan, "ref_points: contains 1 NaN"),
    (4, lambda m: [{k: v for k, v in m[0].items() if k != "lidar2img"}], "missing 'lidar2img'"),
    (4, lambda m: [dict(m[0], lidar2img=m[0]["lidar2img"][:5])], "expected 6 matrices"),
    (4, lambda m: m * 2, "img_metas: expected a list of B = 1"),
    (4, lambda m: [dict(m[0], img_shape=[(0, 464, 3)] * 6)], "img_shape"),
])
def test_forward_faults(small, index, bad, match):
    gen, args = small
    args = list(args)
    args[index] = bad(args[index])
    with pytest.raises(AQRInputError, match=match):
        run(gen, *args)


@pytest.mark.parametrize("kw, match", [
    (dict(encoder_config=None), "encoder_config: required"),
    (dict(window_sizes=[8, 5], pers_feature_shape=(6, 8, 50)), r"camera window 8 spans 9x9.*8x50"),
    (dict(window_sizes=[8, 13], bev_feature_shape=(12, 12)), "lidar window 13"),
    (dict(window_sizes=[0, 5]), "window_sizes"),
    (dict(pers_feature_shape=(6, 20)), "pers_feature_shape"),
    (dict(weight_activation="relu"), "weight_activation"),
    (dict(pc_range=[0, 1]), "pc_range"),
])
def test_constructor_faults(kw, match):
    cfg = {**reference_config("800x320").aqr_config, **kw}
    with pytest.raises(AQRInputError, match=match):
        AQRWeightGenerator(**cfg)


def test_encoder_config_faults():
    cfg = encoder_config(MHA)
    cfg["transformerlayers"]["operation_order"] = ("self_attn", "norm", "cross_attn", "norm", "ffn", "norm")
    with pytest.raises(AQRInputError, match="operation_order"):
        AQRWeightGenerator(encoder_config=cfg)
    cfg = encoder_config(MHA)
    cfg["transformerlayers"]["attn_cfgs"][0]["num_heads"] = 3
    with pytest.raises(AQRInputError, match="divisible"):
        AQRWeightGenerator(encoder_config=cfg)


def test_lam_input_faults(small):
    gen = small[0]
    with pytest.raises(AQRInputError, match="pts_pers_idx"):
        gen.generate_local_attention_masks(torch.zeros(1, 5), torch.zeros(1, 4))
    with pytest.raises(AQRInputError, match="pts_idx: contains"):
        gen.generate_local_attention_masks(torch.full((1, 5), float("nan")), torch.zeros(1, 5))
