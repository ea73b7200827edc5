"""A checkpoint as a ``render-weights`` source: the checkpoint's generator, embeddings and
reference points run on the seeded synthetic scene (a checkpoint holds no features). The
command's numbers must be those of the core generator run directly with the same weights on
the same scene."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import aqr_cli.cli.commands  # noqa: F401  (registers the commands)
from aqr_cli.cli.app import app
from aqr_cli.views.render import FILES
from conftest import CHECKPOINT, RIG


@pytest.fixture(scope="module")
def checkpoint_run(tmp_path_factory):
    """``render-weights CHECKPOINT --save-arrays --json`` once: (result, folder, summary)."""
    out = tmp_path_factory.mktemp("ckpt_source") / "out"
    res = CliRunner().invoke(app, ["render-weights", str(CHECKPOINT), "--save-arrays", "--out",
                                   str(out), "--json"], env={"COLUMNS": "100"})
    assert res.exit_code == 0, res.output
    return res, out, json.loads(res.stdout)


@pytest.fixture(scope="module")
def direct_weights(head_state_dict):
    """LiDAR and camera weights [1, 900] of the core generator with the checkpoint's weights on
    the seed-0 synthetic scene, built without the command's source code."""
    from aqr_cli.analysis.scene import make_scene
    from aqr_cli.core.configs import reference_config
    from aqr_cli.core.embeddings import CMTEmbeddings, build_memory
    from aqr_cli.core.generator import AQRWeightGenerator
    from aqr_cli.core.geometry import rig_from_mapping

    cfg = reference_config("800x320")   # the fixture's meta config is this reference
    rig = rig_from_mapping(json.loads(RIG.read_text()))
    head = head_state_dict
    scene = make_scene(cfg, rig.lidar2img, rig.img_shape, batch_size=1, seed=0,
                       channels=cfg.hidden_dim, num_query=cfg.num_query)
    ref = head["reference_points.weight"][None].float()
    metas = rig.img_metas(1)
    kw = {k: v for k, v in cfg.aqr_config.items() if k != "type"}
    kw["bev_feature_shape"], kw["pers_feature_shape"] = tuple(cfg.bev_shape), tuple(cfg.pers_shape)
    gen = AQRWeightGenerator(**kw)
    prefix = "aqr_weight_generator."
    gen.load_state_dict({k[len(prefix):]: v for k, v in head.items() if k.startswith(prefix)},
                        strict=True)
    emb = CMTEmbeddings.from_state_dict(head, pc_range=cfg.pc_range, depth_num=cfg.depth_num)
    gen.eval(), emb.eval()
    with torch.no_grad():
        qb, qr = emb.query_embed(ref, metas)
        pos = emb.pos_embed(cfg.bev_shape, cfg.pers_shape, metas)
        memory = build_memory(scene.bev_features, scene.cam_features)
        lw, cw, _, _ = gen((qb + qr).transpose(0, 1), memory, pos, ref, metas)
    return lw, cw


def test_outputs_written(checkpoint_run):
    res, out, doc = checkpoint_run
    names = {p.name for p in out.iterdir()}
    assert set(FILES.values()) - {"render_methods.png"} <= names, names
    assert json.loads((out / "summary.json").read_text()) == doc
    for name in names - {"summary.json", "arrays.npz", ".aqr-manifest.json"}:
        assert (out / name).stat().st_size > 10_000, name
    with np.load(out / "arrays.npz") as z:
        assert z["lidar_weights"].shape == (1, 900) and z["pers_weight_map"].shape == (1, 6, 20, 50)


def test_summary_numbers_are_the_core_generator_with_the_checkpoint_weights(checkpoint_run,
                                                                           direct_weights):
    _, out, doc = checkpoint_run
    lw, cw = direct_weights
    for name, w in (("lidar", lw), ("camera", cw)):
        got = doc["weights"][name]
        want = {"mean": float(w.mean()), "std": float(w.std()), "min": float(w.min()),
                "max": float(w.max())}
        for key, value in want.items():
            assert got[key] == pytest.approx(value, abs=1e-6), (name, key)
    assert doc["preference"]["prefer_lidar"] == pytest.approx(float((lw > cw).float().mean()))
    with np.load(out / "arrays.npz") as z:
        np.testing.assert_allclose(z["lidar_weights"], lw.numpy(), atol=1e-6)
        np.testing.assert_allclose(z["camera_weights"], cw.numpy(), atol=1e-6)
    # learned weights, not a random init: the checkpoint's learned bias scale is reported
    assert doc["bias"]["scale_effective"] == pytest.approx(3.17, abs=1e-5)


def test_source_kind_is_checkpoint(checkpoint_run):
    _, _, doc = checkpoint_run
    assert doc["source"]["kind"] == "checkpoint"
    assert doc["source"]["label"] == CHECKPOINT.name
    assert CHECKPOINT.name in doc["caption"]["source"]
    assert "synthetic" in doc["caption"]["source"]  # the features are a synthetic scene's
    assert any("a checkpoint holds no features" in n for n in doc["source"]["notes"])
