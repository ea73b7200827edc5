"""Chunked cross-attention engine, its statistics, groups and the bias-scale sweep."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from aqr_cli.analysis.attention import (
    METRICS, AttentionPath, CrossAttentionWeights, WindowBias, align_width, compare_attention,
    compute_attention, preference_groups, query_groups, size_groups, summarize_metrics,
)
from aqr_cli.analysis.attention.engine import block_topk
from aqr_cli.analysis.sweep import (
    bias_scale_sweep, scale_band, scaled_bias, unit_bias, unit_bias_from_generator,
)
from aqr_cli.core.bias import AttentionBiasGenerator
from aqr_cli.core.configs import CLASS_NAMES
from aqr_cli.core.errors import AQRInputError

pytestmark = pytest.mark.filterwarnings("ignore::aqr_cli.core.errors.QuirkWarning")

B, Q, F, C, H, NB, K = 1, 7, 40, 16, 2, 24, 6


def small_case(seed: int = 0, b: int = B):
    """Random weights, queries, keys and a window bias for the small dense cases."""
    gen = torch.Generator().manual_seed(seed)
    w = CrossAttentionWeights(0.3 * torch.randn(3 * C, C, generator=gen),
                              0.1 * torch.randn(3 * C, generator=gen), num_heads=H)
    q = torch.randn(b, Q, C, generator=gen)
    k = torch.randn(b, F, C, generator=gen)
    idx = torch.stack([torch.randperm(F, generator=gen)[:K] for _ in range(b * Q)]).view(b, Q, K)
    vals = 2.0 * torch.randn(b, Q, K, generator=gen)
    valid = torch.rand(b, Q, K, generator=gen) > 0.25
    return w, q, k, WindowBias(idx, vals, valid)


def dense_reference(w, q, k, dense_bias):
    """softmax(q k^T / sqrt(d) + bias) per head, averaged over heads: [B, Q, F] (float64)."""
    d = C // H
    qp = (q.double() @ w.in_proj_weight[:C].double().t() + w.in_proj_bias[:C].double())
    kp = (k.double() @ w.in_proj_weight[C:2 * C].double().t() + w.in_proj_bias[C:2 * C].double())
    qh = qp.view(q.shape[0], Q, H, d).transpose(1, 2)
    kh = kp.view(k.shape[0], F, H, d).transpose(1, 2)
    logits = qh @ kh.transpose(-1, -2) / math.sqrt(d)
    if dense_bias is not None:
        logits = logits + dense_bias.double().unsqueeze(1)
    return torch.softmax(logits, -1).mean(1)


def run(w, q, k, bias=None, chunk=None, extra=()):
    paths = [AttentionPath("baseline")]
    if bias is not None:
        paths.append(AttentionPath("additive", bias=bias))
    paths += list(extra)
    return compute_attention(q, k, w, num_bev=NB, paths=paths, window=bias, chunk_size=chunk,
                             keep_rows=range(Q))


# ----- attention maps -----

def test_rows_match_dense_softmax_with_bias():
    w, q, k, bias = small_case()
    res = run(w, q, k, bias, chunk=3)
    ref0 = dense_reference(w, q, k, None)
    ref1 = dense_reference(w, q, k, bias.to_dense(F))
    torch.testing.assert_close(res.rows["baseline"].double(), ref0, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(res.rows["additive"].double(), ref1, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(ref0, ref1, atol=1e-3)  # the bias matters in this case


def test_statistics_match_direct_formulas():
    w, q, k, bias = small_case(1)
    res = run(w, q, k, bias, chunk=2)
    p0 = dense_reference(w, q, k, None)
    p = dense_reference(w, q, k, bias.to_dense(F))
    st = res.per_query["additive"]
    ent = -(p * p.log()).sum(-1)
    torch.testing.assert_close(st["entropy"].double(), ent, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(st["entropy_norm"].double(), ent / math.log(F), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(st["max_attention"].double(), p.amax(-1), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(st["lidar_share"].double(), p[..., :NB].sum(-1), atol=1e-6, rtol=1e-5)
    in_win = (bias.to_dense(F) != 0) | torch.zeros(B, Q, F, dtype=torch.bool).scatter(
        2, bias.indices, bias.valid)
    torch.testing.assert_close(st["window_mass"].double(), (p * in_win).sum(-1), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(st["l1_delta"].double(), (p - p0).abs().sum(-1), atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(st["mean_abs_delta"].double(), (p - p0).abs().mean(-1), atol=1e-7, rtol=1e-4)
    kl = (p0 * (p0.log() - p.log())).sum(-1)
    torch.testing.assert_close(st["kl_from_reference"].double(), kl, atol=1e-5, rtol=1e-4)
    top = p.topk(3, -1).indices
    top0 = p0.topk(3, -1).indices
    res3 = compute_attention(q, k, w, num_bev=NB, top_k=3,
                             paths=[AttentionPath("baseline"), AttentionPath("additive", bias=bias)])
    overlap = (top.unsqueeze(-1) == top0.unsqueeze(-2)).any(-1).sum(-1) / 3
    torch.testing.assert_close(res3.per_query["additive"]["topk_overlap"].double(), overlap.double())


def test_bias_added_after_scaling_matches_multihead_attention():
    torch.manual_seed(3)
    mha = torch.nn.MultiheadAttention(C, H, batch_first=True)
    with torch.no_grad():
        mha.in_proj_bias.normal_(0, 0.1)
    w = CrossAttentionWeights(mha.in_proj_weight, mha.in_proj_bias, num_heads=H)
    _, q, k, bias = small_case(2, b=2)
    dense = bias.to_dense(F)
    res = compute_attention(q, k, w, num_bev=NB, paths=[AttentionPath("additive", bias=bias)],
                            keep_rows=range(Q), chunk_size=4)
    with torch.no_grad():
        _, want = mha(q, k, k, attn_mask=dense.repeat_interleave(H, 0), need_weights=True,
                      average_attn_weights=True)
    torch.testing.assert_close(res.rows["additive"], want, atol=1e-6, rtol=1e-5)
    # Adding the bias before the 1/sqrt(d) scaling would give different weights.
    with torch.no_grad():
        _, before = mha(q, k, k, attn_mask=dense.repeat_interleave(H, 0) * math.sqrt(C // H),
                        need_weights=True, average_attn_weights=True)
    assert (res.rows["additive"] - before).abs().max() > 1e-3


def test_a_path_reads_its_own_values():
    """The multiplicative path attends over the modulated memory: its keys AND its values (the
    readout is ``p_h W_v v`` per head with the path's own ``v``), as MultiheadAttention does."""
    torch.manual_seed(5)
    mha = torch.nn.MultiheadAttention(C, H, batch_first=True)
    w = CrossAttentionWeights(mha.in_proj_weight, mha.in_proj_bias, num_heads=H)
    _, q, k, _ = small_case(6)
    mod = k * (1.0 + torch.rand(k.shape[:2]).unsqueeze(-1))  # a per-cell gain, as the modulator
    res = compute_attention(q, k, w, num_bev=NB, values=k, chunk_size=3,
                            paths=[AttentionPath("baseline"),
                                   AttentionPath("multiplicative", keys=mod, values=mod)])
    with torch.no_grad():
        out_base, _ = mha(q, k, k, need_weights=False)
        out_mod, _ = mha(q, mod, mod, need_weights=False)
        # MultiheadAttention applies out_proj; the engine's readout stops before it
        inv = torch.linalg.pinv(mha.out_proj.weight)
        want_base = (out_base - mha.out_proj.bias) @ inv.t()
        want_mod = (out_mod - mha.out_proj.bias) @ inv.t()
    rel = (want_mod - want_base).norm(dim=-1) / want_base.norm(dim=-1)
    got = res.readout["multiplicative"]["relative_change"]
    assert got["mean"] == pytest.approx(rel.mean().item(), rel=1e-4)
    # keys alone (the values left at the memory) give a different, smaller-or-other change
    keys_only = compute_attention(q, k, w, num_bev=NB, values=k, chunk_size=3,
                                  paths=[AttentionPath("baseline"),
                                         AttentionPath("multiplicative", keys=mod)])
    assert keys_only.readout["multiplicative"]["relative_change"]["mean"] != pytest.approx(
        got["mean"], rel=1e-3)


def test_chunking_invariance():
    w, q, k, bias = small_case(4, b=2)
    a = run(w, q, k, bias, chunk=1)
    b = run(w, q, k, bias, chunk=Q)
    for path in ("baseline", "additive"):
        for m in METRICS:
            torch.testing.assert_close(a.per_query[path][m], b.per_query[path][m], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(a.rows[path], b.rows[path], atol=1e-7, rtol=1e-6)
    assert (a.chunk_size, b.chunk_size) == (1, Q)


def test_reference_against_itself():
    w, q, k, _ = small_case(5)
    res = run(w, q, k, extra=[AttentionPath("same_keys"), AttentionPath("copied_keys", keys=k.clone())])
    for path in ("baseline", "same_keys", "copied_keys"):
        st = res.per_query[path]
        assert torch.all(st["kl_from_reference"] == 0)
        assert torch.all(st["topk_overlap"] == 1)
        assert torch.all(st["l1_delta"] == 0) and torch.all(st["mean_abs_delta"] == 0)


def test_strong_window_bias_puts_all_mass_in_window():
    w, q, k, bias = small_case(6)
    strong = bias.with_values(torch.where(bias.valid, 60.0, 0.0))
    res = run(w, q, k, strong)
    assert torch.all(res.per_query["additive"]["window_mass"] > 1 - 1e-6)
    assert torch.all(res.per_query["baseline"]["window_mass"] < 0.9)


def test_lidar_and_camera_shares_sum_to_one():
    w, q, k, bias = small_case(7, b=2)
    res = run(w, q, k, bias)
    for st in res.per_query.values():
        torch.testing.assert_close(st["lidar_share"] + st["camera_share"], torch.ones(2, Q))


# ----- biased paths derived from the baseline (attention/derived.py) -----

def count_softmaxes(monkeypatch) -> list:
    """Patch the engine's dense softmax to record the paths it runs for."""
    from aqr_cli.analysis.attention import engine

    calls = []
    real = engine._softmax_mean

    def counted(logits, bias, num_bev, p):
        calls.append(bias is not None)
        return real(logits, bias, num_bev, p)

    monkeypatch.setattr(engine, "_softmax_mean", counted)
    return calls


def mha_readout(mha, q, k, dense_bias):
    """MultiheadAttention's output before out_proj, with the bias on every head's logits."""
    with torch.no_grad():
        mask = None if dense_bias is None else dense_bias.repeat_interleave(H, 0)
        out, _ = mha(q, k, k, attn_mask=mask, need_weights=False)
        return (out - mha.out_proj.bias) @ torch.linalg.pinv(mha.out_proj.weight).t()


def test_biased_paths_are_derived_without_their_own_softmax(monkeypatch):
    """Additive and swept paths come from the baseline's per-head probabilities: one dense
    softmax per chunk (the baseline's), and the same rows, statistics and readout as the dense
    computation (float64 MultiheadAttention and formulas)."""
    torch.manual_seed(13)
    mha = torch.nn.MultiheadAttention(C, H, batch_first=True)
    w = CrossAttentionWeights(mha.in_proj_weight, mha.in_proj_bias, num_heads=H)
    _, q, k, bias = small_case(13, b=2)
    swept = [AttentionPath(f"s{s}", bias=bias.with_values(bias.values * s), readout=False)
             for s in (0.5, 2.5)]
    calls = count_softmaxes(monkeypatch)
    res = compute_attention(q, k, w, num_bev=NB, values=k, chunk_size=3, keep_rows=range(Q),
                            paths=[AttentionPath("baseline"), AttentionPath("additive", bias=bias), *swept])
    assert calls == [False] * 3  # 3 chunks of 3, 3, 1 queries: the baseline's softmax only
    for path, scale in (("additive", 1.0), ("s0.5", 0.5), ("s2.5", 2.5)):
        dense = bias.to_dense(F) * scale
        torch.testing.assert_close(res.rows[path].double(), dense_reference(w, q, k, dense),
                                   atol=1e-7, rtol=1e-5)
    got = res.readout["additive"]["relative_change"]["mean"]
    r0, r1 = mha_readout(mha, q, k, None), mha_readout(mha, q, k, bias.to_dense(F))
    assert got == pytest.approx(((r1 - r0).norm(dim=-1) / r0.norm(dim=-1)).mean().item(), rel=1e-4)
    assert set(res.readout) == {"baseline", "additive"}


@pytest.mark.parametrize("live", [(0,), (1, 2), (), (0, 1, 2, 3)])
def test_heads_with_zero_values_read_zero(live, monkeypatch):
    """Values zero-padded like a dump's 16 of 256 channels (identity weights): heads whose
    values are all zero are skipped and read 0. The readout statistics of the dense and derived
    paths are those computed with every head, and match a float64 per-head reference."""
    from aqr_cli.analysis.attention import engine

    gen = torch.Generator().manual_seed(21)
    heads = 4
    d = C // heads
    w = CrossAttentionWeights.identity(C, heads)
    _, q, k, bias = small_case(21, b=2)
    mask = torch.zeros(C)
    for h in live:
        mask[h * d:(h + 1) * d] = 1.0
    v0 = torch.randn(2, F, C, generator=gen) * mask
    v1 = v0 * (1.0 + torch.rand(2, F, 1, generator=gen))

    def attend():
        return compute_attention(q, k, w, num_bev=NB, values=v0, chunk_size=3, paths=[
            AttentionPath("baseline"), AttentionPath("additive", bias=bias),
            AttentionPath("multiplicative", values=v1)]).readout

    got = attend()
    monkeypatch.setattr(engine, "_live_heads", lambda v: (0, v.shape[1]))
    every_head = attend()
    for path in ("additive", "multiplicative"):
        for stat in ("relative_change", "cosine"):
            for key in ("mean", "median"):
                a, b = got[path][stat][key], every_head[path][stat][key]
                assert (a is None and b is None) or a == pytest.approx(b, rel=1e-6, nan_ok=True)
    if not live:
        return

    def readout(dense_bias, v):
        qh = q.double().view(2, Q, heads, d).transpose(1, 2) / math.sqrt(d)
        kh = k.double().view(2, F, heads, d).transpose(1, 2)
        bias_h = 0 if dense_bias is None else dense_bias.double()[:, None]
        out = (qh @ kh.transpose(-1, -2) + bias_h).softmax(-1) @ v.double().view(2, F, heads, d).transpose(1, 2)
        return out.transpose(1, 2).reshape(2, Q, C)

    r0 = readout(None, v0)
    for path, r1 in (("additive", readout(bias.to_dense(F), v0)), ("multiplicative", readout(None, v1))):
        rel = (r1 - r0).norm(dim=-1) / r0.norm(dim=-1)
        assert got[path]["relative_change"]["mean"] == pytest.approx(rel.mean().item(), rel=1e-5)


def test_ill_conditioned_or_unusual_biases_are_computed_densely(monkeypatch):
    """A window holding nearly all the attention under a strongly negative bias (Z_h ~ 1 - S
    would lose digits), repeated columns, a global bias and |b| above the bound all take the
    dense softmax, and still give the dense result."""
    from aqr_cli.analysis.attention.derived import MAX_DERIVED_BIAS, derivable

    w, q, k, bias = small_case(14)
    # keys aligned with every query on its window columns: the baseline puts ~all mass there
    hot = bias.indices[0, 0, :3]
    k = k.clone()
    k[0, hot] = 40.0 * q[0].mean(0)
    window = WindowBias(hot.expand(B, Q, 3), torch.full((B, Q, 3), -30.0), torch.ones(B, Q, 3, dtype=torch.bool))
    calls = count_softmaxes(monkeypatch)
    res = run(w, q, k, window, chunk=Q)
    assert calls == [False, True]
    torch.testing.assert_close(res.rows["additive"].double(),
                               dense_reference(w, q, k, window.to_dense(F)), atol=1e-7, rtol=1e-5)
    dup = bias.indices.clone()
    dup[..., 1] = dup[..., 0]
    both = bias.valid.clone()
    both[..., :2] = True
    assert not derivable(WindowBias(dup, bias.values, both))
    assert not derivable(bias.with_values(bias.values * 0 + MAX_DERIVED_BIAS + 1))
    assert not derivable(WindowBias(bias.indices[..., :2], bias.values[..., :2], bias.valid[..., :2],
                                    is_global=True))
    assert derivable(bias) and derivable(WindowBias(dup, bias.values, bias.valid & (dup != dup[..., :1])))


def test_topk_by_blocks_equals_full_topk():
    gen = torch.Generator().manual_seed(0)
    for f in (22384, 56400, 64 * 40 + 5, 300):
        p = torch.rand(2, 5, f, generator=gen)
        vals, idx = block_topk(p, 10)
        want = p.topk(10)
        assert torch.equal(vals, want.values) and torch.equal(idx, want.indices)


# ----- sparse bias from the generator -----

def gen_bias(use_local_bias=True, fp16=True, scale=3.17):
    torch.manual_seed(8)
    g = AttentionBiasGenerator(bev_feature_shape=(6, 4), pers_feature_shape=(2, 2, 4), window_size=2,
                               bias_scale=scale, learnable_scale=False, debug_print=False, fp16=fp16,
                               use_local_bias=use_local_bias)
    lw, cw = torch.tanh(torch.randn(1, Q)), torch.tanh(torch.randn(1, Q))
    pts_idx = torch.randint(0, 24, (1, Q)).float()
    pts_pers = torch.stack([torch.randint(0, 2, (1, Q)), torch.randint(0, 2, (1, Q)),
                            torch.randint(0, 4, (1, Q))], -1).float()
    return g, (lw, cw, pts_idx, pts_pers)


@pytest.mark.parametrize("local", [True, False])
def test_generator_sparse_bias_equals_dense_bias(local):
    g, inputs = gen_bias(use_local_bias=local)
    sparse = g.forward_sparse(*inputs)
    dense = g(*inputs).float()
    assert dense.shape[-1] == F
    w, q, k, _ = small_case(9)
    res = compute_attention(q, k, w, num_bev=NB, paths=[AttentionPath("additive", bias=sparse)],
                            keep_rows=range(Q))
    torch.testing.assert_close(res.rows["additive"].double(), dense_reference(w, q, k, dense),
                               atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(WindowBias.from_sparse(sparse).to_dense(F, NB), dense)
    if not local:
        assert torch.allclose(res.per_query["additive"]["window_mass"], torch.ones(1, Q))


# ----- weights, widths, the three paths -----

def test_weights_from_state_dict_and_fallback(head_state_dict):
    pre = "pts_bbox_head.transformer.decoder.layers.0.attentions.1.attn."
    sd = {pre + "in_proj_weight": torch.randn(3 * C, C), pre + "in_proj_bias": torch.randn(3 * C)}
    w = CrossAttentionWeights.resolve(sd, embed_dims=C, num_heads=H)
    assert w.source == "checkpoint" and w.key.startswith("pts_bbox_head.transformer")
    assert torch.equal(w.in_proj_weight, sd[w.key + "in_proj_weight"])
    x = torch.randn(3, C)
    torch.testing.assert_close(w.project_key(x), x @ w.in_proj_weight[C:2 * C].t() + w.in_proj_bias[C:2 * C])
    fallback = CrossAttentionWeights.resolve(head_state_dict, embed_dims=256)
    assert fallback.source == "fallback" and fallback.is_identity and fallback.num_heads == 8
    assert "identity" in fallback.describe()["note"]
    x256 = torch.randn(3, 256)
    assert torch.equal(fallback.project_query(x256), x256) and torch.equal(fallback.project_key(x256), x256)
    with pytest.raises(AQRInputError):
        CrossAttentionWeights.from_state_dict(head_state_dict)
    with pytest.raises(AQRInputError):
        CrossAttentionWeights(torch.randn(3 * C, C), torch.randn(3 * C), num_heads=5)


def test_identity_fallback_is_plain_dot_product_attention():
    gen = torch.Generator().manual_seed(10)
    qpos = torch.randn(1, Q, C, generator=gen)
    mem, kpos = torch.randn(1, F, C, generator=gen), torch.randn(1, F, C, generator=gen)
    res = compare_attention(qpos, mem, kpos, num_bev=NB, keep_rows=range(Q),
                            weights=CrossAttentionWeights.identity(C, H))
    d = C // H
    keys = mem + kpos
    qh, kh = qpos.view(1, Q, H, d).transpose(1, 2), keys.view(1, F, H, d).transpose(1, 2)
    want = torch.softmax(qh @ kh.transpose(-1, -2) / math.sqrt(d), -1).mean(1)
    torch.testing.assert_close(res.rows["baseline"], want, atol=1e-6, rtol=1e-5)
    assert res.weights["source"] == "fallback"


def test_width_mismatch_projection_or_skip():
    gen = torch.Generator().manual_seed(11)
    qpos, kpos = torch.randn(1, Q, 32, generator=gen), torch.randn(1, F, 32, generator=gen)
    mem = torch.randn(1, F, 16, generator=gen)
    _, _, _, bias = small_case(11)
    res = compare_attention(qpos, mem, kpos, num_bev=NB, bias=bias, modulated_memory=0.5 * mem,
                            weights=CrossAttentionWeights.identity(32, 4))
    assert res.status == "ok" and res.projection["status"] == "projected"
    assert set(res.paths) == {"baseline", "multiplicative", "additive"}
    skipped = compare_attention(qpos, mem, kpos, num_bev=NB, bias=bias, width_mode="skip")
    assert skipped.status == "skipped" and "16" in skipped.reason and skipped.per_query == {}
    json.dumps(skipped.to_dict())
    padded, info = align_width(mem, 32, "zero_pad")
    assert torch.equal(padded[..., :16], mem) and torch.all(padded[..., 16:] == 0)
    proj, info = align_width(mem, 32, "orthogonal", seed=3)
    torch.testing.assert_close(proj.norm(dim=-1), mem.norm(dim=-1), atol=1e-4, rtol=1e-4)
    assert torch.equal(proj, align_width(mem, 32, "orthogonal", seed=3)[0])
    down, _ = align_width(torch.randn(1, F, 40), 32, "zero_pad")
    assert down.shape[-1] == 32


def test_bad_inputs_raise_input_error():
    w, q, k, bias = small_case(12)
    with pytest.raises(AQRInputError):
        compute_attention(q, k[..., :8], w, num_bev=NB)
    with pytest.raises(AQRInputError):
        compute_attention(q, k, w, num_bev=F + 1)
    bad = k.clone()
    bad[0, 3, 2] = float("nan")
    with pytest.raises(AQRInputError, match="NaN"):
        compute_attention(q, bad, w, num_bev=NB)
    with pytest.raises(AQRInputError):
        compute_attention(q, k, w, num_bev=NB, keep_rows=[Q])
    oob = WindowBias(bias.indices + F, bias.values, bias.valid)
    with pytest.raises(AQRInputError):
        compute_attention(q, k, w, num_bev=NB, paths=[AttentionPath("a", bias=oob)])


# ----- groups and summaries -----

def test_groups_and_summary():
    lw = torch.tensor([[0.9, 0.1, 0.5, 0.55]])
    cw = torch.tensor([[0.1, 0.9, 0.6, 0.5]])
    pref = preference_groups(lw, cw)
    assert pref["prefer_lidar"].tolist() == [[True, False, False, True]]
    assert pref["balanced"].tolist() == [[False, False, True, True]]
    boxes = [np.array([[0, 0, -1, 4, 2, 1.5, 0, 0, 0], [20, 0, -1, 0.7, 0.7, 1.7, 0.3, 0, 0]])]
    labels = [np.array([CLASS_NAMES.index("car"), CLASS_NAMES.index("pedestrian")])]
    xy = torch.tensor([[[1.0, 0.5], [21.0, 0.0], [40.0, 40.0], [0.0, 3.5]]])
    size = size_groups(xy, boxes, labels, radius=3.0)
    assert size["large"].tolist() == [[True, False, False, True]]
    assert size["small"].tolist() == [[False, True, False, False]]
    assert size["none"].tolist() == [[False, False, True, False]]
    metrics = {m: torch.tensor([[0.1, 0.95, 0.8, 0.4]]) for m in METRICS}
    s = summarize_metrics(metrics)
    assert s["count"] == 4 and s["max_attention"]["mean"] == pytest.approx(0.5625)
    assert s["max_attention"]["median"] == pytest.approx(0.6)
    assert s["share_max_gt_0.9"] == 0.25 and s["share_max_gt_0.7"] == 0.5
    empty = summarize_metrics(metrics, torch.zeros(1, 4, dtype=torch.bool))
    assert empty["count"] == 0 and empty["entropy"]["mean"] is None
    groups = query_groups(lw, cw, xy, boxes, labels)
    assert set(groups) == {"by_preference", "by_size"}


def test_result_summary_is_json_ready():
    w, q, k, bias = small_case(13)
    res = run(w, q, k, bias)
    lw, cw = torch.rand(1, Q), torch.rand(1, Q)
    doc = res.to_dict(query_groups(lw, cw))
    text = json.dumps(doc)
    assert "NaN" not in text
    assert doc["paths"]["additive"]["by_preference"]["prefer_lidar"]["count"] == int((lw > cw).sum())
    assert doc["settings"]["num_keys"] == F and doc["settings"]["num_bev_keys"] == NB


# ----- sweep -----

def test_sweep_scales_and_clamp():
    assert [scale_band(s) for s in (0.5, 2, 2.5, 3, 5, 5.01, -6)] == [
        "sensitive", "sensitive", "safe", "safe", "edge", "saturated", "saturated"]
    g, inputs = gen_bias(fp16=False, scale=1.0)
    unit = unit_bias_from_generator(g, *inputs)
    torch.testing.assert_close(unit.to_dense(F), g(*inputs))  # scale 1 -> unit values
    big = scaled_bias(unit, 10.0)
    assert float(big.values.abs().max()) <= 5.0
    strong = unit.values.abs() * 10 > 5
    assert bool(strong.any()) and torch.all(big.values[strong].abs() == 5.0)


def test_sweep_matches_fixed_scale_generator():
    g, inputs = gen_bias(fp16=False, scale=1.0)
    unit = unit_bias(g.forward_sparse(*inputs))
    w, q, k, _ = small_case(14)
    sw = bias_scale_sweep(q, k, w, unit, [0, 2.5, 7.0, 2.5], num_bev=NB)
    assert sw.scales == [0.0, 2.5, 7.0] and sw.bands == ["sensitive", "safe", "saturated"]
    assert sw.curve("kl_from_reference")[0] == 0.0
    assert sw.curve("topk_overlap")[0] == 1.0
    for scale, summary in zip(sw.scales, sw.attention):
        fixed = AttentionBiasGenerator(bev_feature_shape=(6, 4), pers_feature_shape=(2, 2, 4),
                                       window_size=2, bias_scale=scale, learnable_scale=False,
                                       debug_print=False, fp16=False)
        ref = compute_attention(q, k, w, num_bev=NB, paths=[
            AttentionPath("baseline"), AttentionPath("additive", bias=fixed.forward_sparse(*inputs))])
        want = ref.summary()["additive"]["overall"]
        for m in ("entropy", "kl_from_reference", "window_mass", "lidar_share"):
            assert summary["overall"][m]["mean"] == pytest.approx(want[m]["mean"], rel=1e-5, abs=1e-7)
    assert sw.bias[2]["max_abs"] == 5.0 and sw.bias[2]["share_clamped"] > 0
    assert sw.bias[1]["share_clamped"] == 0.0
    json.dumps(sw.to_dict())


def test_projected_keys_give_the_same_run_as_raw_keys():
    from aqr_cli.analysis.attention import ProjectedKeys, project_keys

    for w, q, k, bias in (small_case(20), small_case(21, b=2)):
        pos = 0.5 * k.flip(1)
        raw = run(w, q, k + pos, bias)
        proj = project_keys(k, w, add=pos)
        assert isinstance(proj, ProjectedKeys) and proj.shape == tuple(k.shape)
        shared = run(w, q, proj, bias)
        for p in raw.per_query:
            for m in METRICS:
                assert torch.equal(raw.per_query[p][m], shared.per_query[p][m]), (p, m)
            assert torch.equal(raw.rows[p], shared.rows[p])
    # identity weights: the sum is written straight into the [B, h, d, F] layout
    eye = CrossAttentionWeights.identity(C, H)
    k = torch.randn(2, 5000, C)
    pos = torch.randn(2, 5000, C)
    heads = project_keys(k, eye, add=pos).heads
    assert heads.is_contiguous() and torch.equal(heads.reshape(2, C, 5000), (k + pos).transpose(1, 2))
    with pytest.raises(AQRInputError, match="other attention weights"):
        run(small_case(22)[0], q, proj)
    with pytest.raises(AQRInputError, match="NaN or Inf"):
        project_keys(k, eye, add=torch.full_like(pos, float("inf")) - torch.full_like(pos, float("inf")))


def test_sweep_in_the_comparison_pass_equals_a_separate_sweep():
    from aqr_cli.analysis.sweep import sweep_paths, sweep_result

    gen = torch.Generator().manual_seed(23)
    qpos = torch.randn(1, Q, C, generator=gen)
    mem, kpos = torch.randn(1, F, C, generator=gen), torch.randn(1, F, C, generator=gen)
    w, _, _, bias = small_case(23)
    scales = [0.5, 2.5, 10.0]
    args = dict(num_bev=NB, bias=bias, modulated_memory=0.5 * mem, weights=w, keep_rows=[1, 4],
                chunk_size=3)
    alone = compare_attention(qpos, mem, kpos, **args)
    swept, extra = sweep_paths(bias, scales)
    both = compare_attention(qpos, mem, kpos, extra_paths=extra, **args)
    main = both.select(["baseline", "multiplicative", "additive"])
    assert main.paths == alone.paths and main.readout == alone.readout
    assert json.dumps(main.to_dict()) == json.dumps(alone.to_dict())
    for p in alone.paths:
        assert torch.equal(main.rows[p], alone.rows[p])
    assert set(both.readout) == {"baseline", "multiplicative", "additive"}   # none for the scales
    separate = bias_scale_sweep(qpos, mem + kpos, w, bias, scales, num_bev=NB, chunk_size=3)
    merged = sweep_result(both, bias, swept, extra)
    assert json.dumps(merged.to_dict()) == json.dumps(separate.to_dict())
