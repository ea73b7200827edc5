"""FeatureModulator: upstream golden outputs, the Q27 gain, learnable parameters and faults."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aqr_cli.core.configs import reference_config
from aqr_cli.core.errors import AQRInputError
from aqr_cli.core.modulator import FeatureModulator

TOL = 1e-5


def _cases():
    cases = {}
    for mtype in ("element_wise", "channel_wise", "adaptive"):
        for n in (0, 1):
            for r in (0, 1):
                cases[f"mod_{mtype}_n{n}_r{r}"] = dict(
                    modulation_type=mtype, normalize_weights=bool(n), residual_connection=bool(r))
    for act in ("sigmoid", "tanh", "relu"):
        cases[f"mod_element_wise_n0_r1_act_{act}"] = dict(
            modulation_type="element_wise", normalize_weights=False, residual_connection=True,
            activation=act)
    cases["mod_element_wise_n1_r1_zeropers"] = dict(
        modulation_type="element_wise", normalize_weights=True, residual_connection=True)
    return cases


CASES = _cases()


def _inputs(golden, case):
    t = lambda k: torch.from_numpy(golden[k].copy())
    pers_map = t("mod_weight_map_pers")
    if case.endswith("zeropers"):
        pers_map = torch.from_numpy(golden["render_int_bilinear_pers"].copy())
        assert float(pers_map.abs().sum()) == 0.0
    return t("mod_in_bev_features"), t("mod_weight_map_bev"), t("mod_in_pers_features"), pers_map


def _max_err(a, b):
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())


@pytest.mark.parametrize("case", list(CASES))
def test_golden(golden, case):
    fb, mb, fp, mp = _inputs(golden, case)
    mod = FeatureModulator(residual_weight=0.7, **CASES[case])
    out_bev, out_pers = mod(fb, mb, feature_type="bev"), mod(fp, mp, feature_type="perspective")
    assert out_bev.shape == (1, 2, 128, 128) and out_pers.shape == (6, 2, 20, 50)
    assert _max_err(out_bev, golden[f"{case}_bev"]) <= TOL
    assert _max_err(out_pers, golden[f"{case}_pers"]) <= TOL


@pytest.mark.parametrize("case", list(CASES))
def test_gain_reproduces_forward(golden, case):
    fb, mb, fp, mp = _inputs(golden, case)
    mod = FeatureModulator(residual_weight=0.7, **CASES[case])
    g_bev, g_pers = mod.gain(mb, "bev"), mod.gain(mp, "perspective")
    assert g_bev.shape == mb.shape and g_pers.shape == mp.shape
    assert _max_err(fb * g_bev[:, None], golden[f"{case}_bev"]) <= TOL
    assert _max_err(fp * g_pers.reshape(6, 1, 20, 50), golden[f"{case}_pers"]) <= TOL


def test_reference_config_builds():
    mod = FeatureModulator(**reference_config("800x320").modulator_config)
    assert mod.residual_weight == 0.7 and not mod.normalize_weights
    assert dict(mod.state_dict()) == {}


def test_q27_gain_values():
    """Element-wise, no normalisation, residual 0.7: gain = m + 0.7 (0.7 where no query lands)."""
    mod = FeatureModulator(normalize_weights=False, residual_weight=0.7)
    maps = torch.tensor([[[0.0, 1.0], [1.5, 0.25]]])
    assert torch.allclose(mod.gain(maps, "bev"), torch.tensor([[[0.7, 1.7], [2.2, 0.95]]]))
    mod = FeatureModulator(normalize_weights=False, residual_weight=0.6)
    assert float(mod.gain(torch.full((1, 2, 2), 2.5), "bev").max()) == pytest.approx(3.1)


def test_normalisation_per_view():
    """Min-max runs per (sample, view); a constant view becomes 0.5."""
    maps = torch.zeros(2, 3, 4, 5)
    maps[0, 0, 1, 1], maps[0, 2] = 3.0, 7.0
    maps[1, 1, 2, 2] = 0.5
    mod = FeatureModulator(residual_connection=False)
    g = mod.gain(maps, "perspective")
    assert float(g[0, 0].max()) == 1.0 and float(g[0, 0].min()) == 0.0
    assert torch.all(g[0, 1] == 0.5) and torch.all(g[0, 2] == 0.5)
    assert float(g[1, 1, 2, 2]) == 1.0 and torch.all(g[1, 0] == 0.5)
    feats = torch.randn(6, 3, 4, 5)
    assert torch.allclose(mod(feats, maps, "perspective"), feats * g.reshape(6, 1, 4, 5))


def test_normalisation_per_sample_bev():
    maps = torch.stack([torch.arange(12.0).view(3, 4), torch.full((3, 4), 2.0)])
    g = FeatureModulator(residual_connection=False).gain(maps, "bev")
    assert torch.allclose(g[0], torch.arange(12.0).view(3, 4) / 11)
    assert torch.all(g[1] == 0.5)


def test_learnable_parameters():
    mod = FeatureModulator(learnable_modulation=True, normalize_weights=False,
                           residual_connection=False, activation="relu")
    assert list(mod.state_dict()) == ["modulation_scale", "modulation_bias"]
    assert mod.modulation_scale.shape == (1,) and float(mod.modulation_scale.detach()) == 1.0
    assert mod.modulation_bias.shape == (1,) and float(mod.modulation_bias.detach()) == 0.0
    with torch.no_grad():
        mod.modulation_scale.fill_(2.0)
        mod.modulation_bias.fill_(-0.5)
    maps = torch.tensor([[[0.0, 0.1], [0.5, 1.0]]])
    feats = torch.ones(1, 3, 2, 2)
    out = mod(feats, maps, "bev")
    assert torch.allclose(out[0, 0], torch.tensor([[0.0, 0.0], [0.5, 1.5]]))
    out.sum().backward()
    assert mod.modulation_scale.grad is not None and float(mod.modulation_scale.grad) > 0


def test_learnable_state_dict_roundtrip():
    src = FeatureModulator(learnable_modulation=True)
    with torch.no_grad():
        src.modulation_scale.fill_(1.7)
    dst = FeatureModulator(learnable_modulation=True)
    dst.load_state_dict(src.state_dict(), strict=True)
    assert float(dst.modulation_scale.detach()) == pytest.approx(1.7)


@pytest.mark.parametrize("kwargs,name", [
    (dict(modulation_type="gated"), "modulation_type"),
    (dict(activation="gelu"), "activation"),
    (dict(residual_weight="big"), "residual_weight"),
])
def test_bad_constructor_args(kwargs, name):
    with pytest.raises(AQRInputError, match=name):
        FeatureModulator(**kwargs)


def test_shape_faults():
    mod = FeatureModulator()
    with pytest.raises(AQRInputError, match=r"weight_maps.*\[1, 8, 8\]"):
        mod(torch.randn(1, 4, 8, 8), torch.rand(1, 8, 9), "bev")
    with pytest.raises(AQRInputError, match=r"weight_maps.*\[B, H, W\]"):
        mod(torch.randn(1, 4, 8, 8), torch.rand(1, 1, 8, 8), "bev")
    with pytest.raises(AQRInputError, match=r"features.*\[B, C, H, W\]"):
        mod(torch.randn(4, 8, 8), torch.rand(1, 8, 8), "bev")
    with pytest.raises(AQRInputError, match=r"features.*B\*V"):
        mod(torch.randn(5, 4, 8, 8), torch.rand(1, 6, 8, 8), "perspective")
    with pytest.raises(AQRInputError, match=r"weight_maps.*\[1, 6, 8, 8\]"):
        mod(torch.randn(6, 4, 8, 8), torch.rand(1, 6, 8, 7), "perspective")
    with pytest.raises(AQRInputError, match=r"weight_maps.*\[B, V, h, w\]"):
        mod(torch.randn(6, 4, 8, 8), torch.rand(6, 8, 8), "perspective")
    with pytest.raises(AQRInputError, match="feature_type"):
        mod(torch.randn(1, 4, 8, 8), torch.rand(1, 8, 8), "camera")
    with pytest.raises(AQRInputError, match="feature_type"):
        mod.gain(torch.rand(1, 8, 8), "camera")
    with pytest.raises(AQRInputError, match="weight_maps"):
        mod.gain(torch.rand(8, 8), "bev")


@pytest.mark.parametrize("activation", ["none", "relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("mtype", ["element_wise", "channel_wise", "adaptive"])
def test_no_input_mutation(activation, mtype):
    mod = FeatureModulator(modulation_type=mtype, activation=activation, normalize_weights=False,
                           learnable_modulation=True)
    feats, maps = torch.randn(1, 3, 5, 6), torch.randn(1, 5, 6)
    pfeats, pmaps = torch.randn(12, 3, 5, 6), torch.randn(2, 6, 5, 6)
    args = [feats, maps, pfeats, pmaps]
    before = [a.clone() for a in args]
    mod(feats, maps, "bev")
    mod(pfeats, pmaps, "perspective")
    mod.gain(maps, "bev")
    mod.gain(pmaps, "perspective")
    mod.preprocess_weight_maps(maps)
    for a, b in zip(args, before):
        assert torch.equal(a, b)


def test_perspective_reshape_is_sample_major():
    """Features row n = b*V + v pairs with map [b, v]."""
    maps = torch.zeros(2, 3, 2, 2)
    maps[1, 0] = 1.0  # sample 1, view 0 -> feature row 3
    mod = FeatureModulator(normalize_weights=False, residual_connection=False)
    out = mod(torch.ones(6, 1, 2, 2), maps, "perspective")
    assert out.sum(dim=(1, 2, 3)).tolist() == [0, 0, 0, 4, 0, 0]
