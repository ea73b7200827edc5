"""A dump + checkpoint pair of another configuration (1600x640 shapes, sigma 1.5, windows 15)
re-renders to its stored maps, with every setting taken from the checkpoint's config."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

import aqr_cli.cli.commands  # noqa: F401
from aqr_cli.analysis.scene import make_scene
from aqr_cli.cli.app import app
from aqr_cli.core.bias import AttentionBiasGenerator
from aqr_cli.core.configs import reference_config
from aqr_cli.core.embeddings import CMTEmbeddings, build_memory
from aqr_cli.core.generator import AQRWeightGenerator
from aqr_cli.io.rig import default_rig
from aqr_cli.core.renderer import WeightRenderer

from conftest import CHECKPOINT

SIGMA = 1.5  # neither reference config uses it: proves the checkpoint's config is read


def _config_text() -> str:
    text = torch.load(CHECKPOINT, map_location="cpu", weights_only=True)["meta"]["config"]
    for old, new in (("bev_feature_shape=(128, 128)", "bev_feature_shape=(180, 180)"),
                     ("pers_feature_shape=(6, 20, 50)", "pers_feature_shape=(6, 40, 100)"),
                     ("window_sizes=[8, 5]", "window_sizes=[15, 5]"),
                     ("window_size=8", "window_size=15"),
                     ("gaussian_sigma=1.0", f"gaussian_sigma={SIGMA}")):
        assert old in text
        text = text.replace(old, new)
    return text


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(checkpoint path, dump path) written the way upstream would write them."""
    d = tmp_path_factory.mktemp("pair1600")
    cfg = reference_config("1600x640")
    cfg.renderer_config["gaussian_sigma"] = SIGMA
    rig = default_rig().scaled_to((640, 1600))
    metas = rig.img_metas(1)
    torch.manual_seed(3)
    gen = AQRWeightGenerator(**cfg.aqr_config).eval()
    emb = CMTEmbeddings(900, 256, 64, cfg.pc_range).eval()
    renderer = WeightRenderer(**cfg.renderer_config)
    bias = AttentionBiasGenerator(**cfg.attention_bias_config)
    state = {}
    for name, module in (("aqr_weight_generator", gen), ("weight_renderer", renderer),
                         ("attention_bias_generator", bias), ("", emb)):
        for k, v in module.state_dict().items():
            state["pts_bbox_head." + (f"{name}.{k}" if name else k)] = v.detach().clone()
    ckpt = d / "epoch_1.pth"
    torch.save({"meta": {"config": _config_text(), "exp_name": "cmt_aqr_1600x640_test.py",
                         "epoch": 1, "iter": 10}, "state_dict": state}, ckpt)
    scene = make_scene(cfg, rig.lidar2img, rig.img_shape, seed=5)
    ref = emb.reference_points.weight.detach()[None]
    with torch.no_grad():
        qb, qr = emb.query_embed(ref, metas)
        pos = emb.pos_embed(cfg.bev_shape, cfg.pers_shape, metas)
        memory = build_memory(scene.bev_features, scene.cam_features)
        lw, cw, _, info = gen((qb + qr).transpose(0, 1), memory, pos, ref, metas)
        bev_map = renderer.render_bev_weights(lw, info["pts_bev"])
        pers_map = renderer.render_perspective_weights(cw, info["pts_pers"])
    dump = {"iteration": 1000, "weight_map_bev": bev_map, "weight_map_pers": pers_map,
            "lidar_weights": renderer.effective_bev_weights(lw), "camera_weights": cw.clone(),
            "pts_bev": info["pts_bev"],
            "modulated_bev_features": scene.bev_features[:, :16] * 1.7,
            "modulated_pers_features": scene.cam_features[:, :16] * 1.7,
            "original_bev_features": scene.bev_features[:, :16].clone(),
            "original_pers_features": scene.cam_features[:, :16].clone(), "img_metas": metas}
    path = d / "weights_iter_1000.pth"
    torch.save(dump, path)
    assert float(pers_map.max()) > 0.05 and float(bev_map.max()) > 0.05
    return ckpt, path


def test_other_config_pair_reproduces_stored_maps(pair, tmp_path):
    ckpt, dump = pair
    res = CliRunner().invoke(app, ["render-weights", str(dump), "--checkpoint", str(ckpt),
                                   "--out", str(tmp_path / "o"), "--json", "--save-arrays"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["settings"]["bev_shape"] == [180, 180] and doc["settings"]["pers_shape"] == [6, 40, 100]
    assert doc["settings"]["renderer"]["gaussian_sigma"] == SIGMA
    assert doc["bias"]["window_size"] == 15
    assert doc["fidelity"]["bev_max_abs_diff"] <= 1e-5
    assert doc["fidelity"]["camera_max_abs_diff"] <= 1e-5


def test_reference_settings_would_not_reproduce_them(pair, tmp_path):
    """Without the checkpoint the 1600x640 reference (sigma 2.0) renders a different BEV map."""
    _, dump = pair
    res = CliRunner().invoke(app, ["render-weights", str(dump), "--out", str(tmp_path / "o"), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["settings"]["renderer"]["gaussian_sigma"] == 2.0
    assert doc["fidelity"]["bev_max_abs_diff"] > 1e-3


def test_absurd_config_shapes_are_refused_before_allocating(tmp_path):
    ck = torch.load(CHECKPOINT, map_location="cpu", weights_only=True)
    ck["meta"]["config"] = ck["meta"]["config"].replace("bev_feature_shape=(128, 128)",
                                                        "bev_feature_shape=(200000, 200000)")
    path = tmp_path / "absurd.pth"
    torch.save(ck, path)
    res = CliRunner().invoke(app, ["render-weights", "--synthetic", "--checkpoint", str(path),
                                   "--out", str(tmp_path / "o")])
    assert res.exit_code == 1
    lines = res.stderr.strip().splitlines()
    # refused by the config-vs-tensor check every command applies (the bias offsets encode 128)
    assert len(lines) == 1 and "absurd.pth" in lines[0] and "200000" in lines[0]
    assert not (tmp_path / "o").exists()
