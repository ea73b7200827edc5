"""CMT embedding functions against the upstream golden arrays, plus memory order and faults."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from aqr_cli.core.embeddings import (CMTEmbeddings, build_memory, build_pos_embed, coords_bev,
                                     inverse_sigmoid, pos2embed)
from aqr_cli.core.errors import AQRInputError, QuirkWarning
from aqr_cli.io.rig import default_rig

ATOL = 1e-5


def close(actual: torch.Tensor, expected: np.ndarray, atol: float = ATOL) -> None:
    assert tuple(actual.shape) == expected.shape
    np.testing.assert_allclose(actual.detach().numpy(), expected, rtol=0, atol=atol)


@pytest.fixture(scope="module")
def emb(head_state_dict):
    return CMTEmbeddings.from_state_dict(head_state_dict).eval()


@pytest.fixture(scope="module")
def metas():
    return default_rig().img_metas()


def test_pos2embed_golden(golden):
    out = pos2embed(torch.from_numpy(golden["emb_pos2embed_in"]), num_pos_feats=256)
    close(out, golden["emb_pos2embed_out"])


def test_pos2embed_ignores_temperature_and_layout():
    pos = torch.tensor([[0.25, 0.0]])
    a = pos2embed(pos, 256)
    assert torch.equal(a, pos2embed(pos, 256, temperature=20))
    y, x = a[0, :256], a[0, 256:]  # y block first
    assert torch.equal(y[0::2], torch.zeros(128)) and torch.equal(y[1::2], torch.ones(128))
    i = torch.arange(256)
    div = 1 + 2 * (i // 2) / 256  # divisors in [1, 2), not temperature**(...)
    expect = torch.where(i % 2 == 0, torch.sin(2 * math.pi * 0.25 / div), torch.cos(2 * math.pi * 0.25 / div))
    torch.testing.assert_close(x, expect.float(), rtol=0, atol=1e-6)


def test_coords_bev_golden(golden):
    close(coords_bev(128, 128), golden["emb_coords_bev"], atol=0)


def test_coords_bev_non_square_quirk():
    with pytest.warns(QuirkWarning, match="Q37"):
        c = coords_bev(3, 5)
    assert c.shape == (15, 2)
    t = 1 * 5 + 4  # row i=1, column j=4
    assert c[t].tolist() == pytest.approx([(4 + 0.5) / 3, (1 + 0.5) / 5])


def test_inverse_sigmoid_roundtrip_clamps():
    x = torch.tensor([-0.5, 0.0, 0.3, 1.0, 1.7])
    y = inverse_sigmoid(x).sigmoid()
    assert y[0] == y[1] and y[3] == y[4]
    assert y[1].item() == pytest.approx(1e-5, rel=1e-3) and y[2].item() == pytest.approx(0.3)


def test_from_state_dict_infers_sizes(head_state_dict):
    emb = CMTEmbeddings.from_state_dict(head_state_dict)
    assert emb.reference_points.num_embeddings == 900 and emb.hidden_dim == 256
    assert emb.depth_num == 64
    keys = {k for k in head_state_dict if k.startswith(("reference_points", "bev_embedding", "rv_embedding"))}
    assert set(emb.state_dict()) == keys
    prefixed = {"pts_bbox_head." + k: v for k, v in head_state_dict.items()}
    torch.testing.assert_close(CMTEmbeddings.from_state_dict(prefixed).bev_embedding[0].weight,
                               head_state_dict["bev_embedding.0.weight"])
    with pytest.raises(AQRInputError, match="depth_num"):
        CMTEmbeddings.from_state_dict(head_state_dict, depth_num=32)
    with pytest.raises(AQRInputError, match="rv_embedding.0.weight"):
        CMTEmbeddings.from_state_dict({k: v for k, v in head_state_dict.items()
                                       if k != "rv_embedding.0.weight"})


def test_query_embed_golden(golden, emb, metas):
    ref = torch.from_numpy(golden["ref_points"])
    before = ref.clone()
    with torch.no_grad():
        bev, rv = emb.query_embed(ref, metas)
    assert torch.equal(ref, before)
    close(bev, golden["emb_bev_query_embeds"])
    close(rv, golden["emb_rv_query_embeds"])
    close(bev + rv, golden["emb_query_embeds"])
    close((bev + rv).transpose(0, 1), golden["aqr_in_query_embed"])


def test_bev_pos_embed_golden(golden, emb):
    with torch.no_grad():
        full = emb.bev_pos_embed(128, 128)
    assert full.shape == (128 * 128, 256)
    close(full[golden["emb_bev_pos_embeds_rows"]], golden["emb_bev_pos_embeds_subset"])


def test_rv_pos_embed_golden(golden, emb, metas):
    rows = golden["emb_rv_pos_embeds_h_rows"]
    with torch.no_grad():
        full = emb.rv_pos_embed((20, 50), metas)
        same = emb.rv_pos_embed(torch.zeros(6, 4, 20, 50), metas)
    assert full.shape == (6, 20, 50, 256)
    close(full[:, rows], golden["emb_rv_pos_embeds_subset"])
    assert torch.equal(full, same)


def test_rv_pos_embed_batch_uses_each_sample(emb):
    metas = default_rig().img_metas(2)
    metas[1]["lidar2img"][0][0, 3] += 40.0  # shift sample 1, camera 0 only
    with torch.no_grad():
        two = emb.rv_pos_embed((20, 50), metas)
        one = emb.rv_pos_embed((20, 50), metas[:1])
    assert two.shape == (12, 20, 50, 256)
    assert torch.allclose(two[:6], one, atol=1e-6)
    assert torch.allclose(two[7:], one[1:], atol=1e-6) and not torch.allclose(two[6], one[0])


def test_build_memory_order():
    b, c, hb, wb, v, hp, wp = 2, 3, 4, 5, 6, 2, 3
    bev = torch.arange(b * c * hb * wb, dtype=torch.float32).view(b, c, hb, wb)
    cam = -torch.arange(b * v * c * hp * wp, dtype=torch.float32).view(b * v, c, hp, wp)
    mem = build_memory(bev, cam)
    assert mem.shape == (hb * wb + v * hp * wp, b, c)
    for bi, ch, h, w in [(0, 0, 0, 0), (1, 2, 3, 4), (0, 1, 2, 1)]:
        assert mem[h * wb + w, bi, ch] == bev[bi, ch, h, w]
    for bi, vi, ch, h, w in [(0, 0, 0, 0, 0), (1, 5, 2, 1, 2), (1, 2, 1, 0, 1)]:
        assert mem[hb * wb + vi * hp * wp + h * wp + w, bi, ch] == cam[bi * v + vi, ch, h, w]
    with pytest.raises(AQRInputError, match="cam_feats"):
        build_memory(bev, cam[:, :2])


def test_build_pos_embed_order():
    bev = torch.randn(20, 8)
    rv = torch.randn(2 * 6, 2, 3, 8)
    pe = build_pos_embed(bev, rv, batch_size=2)
    assert pe.shape == (20 + 36, 2, 8)
    assert torch.equal(pe[7, 1], bev[7])
    assert torch.equal(pe[20 + 4 * 6 + 1 * 3 + 2, 1], rv[6 + 4, 1, 2])
    with pytest.raises(AQRInputError, match="rv_pos_embed"):
        build_pos_embed(bev, rv, batch_size=5)


def test_pos_embed_full_matches_parts(emb, metas, golden):
    with torch.no_grad():
        pe = emb.pos_embed((128, 128), (6, 20, 50), metas)
    assert pe.shape == (22384, 1, 256)
    rows = golden["emb_bev_pos_embeds_rows"]
    close(pe[rows, 0], golden["emb_bev_pos_embeds_subset"])
    h = int(golden["emb_rv_pos_embeds_h_rows"][1])
    close(pe[16384 + 3 * 1000 + h * 50: 16384 + 3 * 1000 + (h + 1) * 50, 0],
          golden["emb_rv_pos_embeds_subset"][3, 1])


@pytest.mark.parametrize("bad, match", [
    (lambda r, m: (r[..., :2], m), "ref_points"),
    (lambda r, m: (r.clone().fill_(float("nan")), m), "NaN"),
    (lambda r, m: (r, [{"pad_shape": m[0]["pad_shape"]}]), "lidar2img"),
    (lambda r, m: (r, [dict(m[0], lidar2img=m[0]["lidar2img"][:3] + [np.eye(3)])]), "lidar2img"),
    (lambda r, m: (r, [dict(m[0], pad_shape=None)]), "pad_shape"),
])
def test_query_embed_faults(emb, metas, bad, match):
    ref, m = bad(torch.rand(1, 10, 3), metas)
    with pytest.raises(AQRInputError, match=match):
        emb.query_embed(ref, m)


def test_no_quirk_warnings_on_square_grid(emb, metas):
    with warnings.catch_warnings():
        warnings.simplefilter("error", QuirkWarning)
        with torch.no_grad():
            emb.bev_pos_embed(16, 16)
            emb.query_embed(torch.rand(1, 4, 3), metas)
