"""``aqr render-weights``: fidelity to the dump, outputs, determinism, batch mode, bad input."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import aqr_cli.cli.commands  # noqa: F401  (registers the commands)
from aqr_cli.analysis.render import render_maps_and_bias
from aqr_cli.analysis.sources import from_dump
from aqr_cli.inputs.settings import Overrides
from aqr_cli.cli.app import app
from aqr_cli.views.render import FILES

from conftest import CHECKPOINT, DUMP, DUMP_TRAIN

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def synthetic_out(render_scene_run):
    """The session's render-weights run on the synthetic scene (conftest.RENDER_SCENE_ARGS)."""
    res, out = render_scene_run
    assert res.exit_code == 0, res.output
    return out


def test_dump_rerender_matches_stored_maps():
    """Re-rendering weights_iter_100 with the checkpoint's settings gives the stored maps."""
    src = from_dump(str(DUMP), Overrides(), checkpoint=str(CHECKPOINT))
    res = render_maps_and_bias(src, "gaussian")
    stored_bev, stored_pers = src.stored_maps
    assert res.bev_map.shape == (1, 128, 128) and res.pers_map.shape == (1, 6, 20, 50)
    assert float((res.bev_map - stored_bev).abs().max()) <= 1e-5
    assert float((res.pers_map - stored_pers).abs().max()) <= 1e-5
    assert res.summary["fidelity"]["camera_max_abs_diff"] <= 1e-5
    assert float(stored_pers.max()) > 0.1  # the comparison is not between two empty maps


def test_dump_without_checkpoint_renders_bev_and_says_camera_unknown():
    src = from_dump(str(DUMP), Overrides())
    res = render_maps_and_bias(src, "gaussian")
    assert float((res.bev_map - src.stored_maps[0]).abs().max()) <= 1e-5
    assert src.pts_pers is None and res.summary["fidelity"]["camera_max_abs_diff"] is None
    assert any("pts_pers" in n for n in src.notes)


def test_train_dump_has_gt_boxes_and_q1():
    from aqr_cli.analysis.quirks import collect_quirks

    with collect_quirks() as quirks:
        src = from_dump(str(DUMP_TRAIN), Overrides())
    assert len(src.boxes[0]) == 7 and src.box_labels[0][2] == "pedestrian"
    q1 = [q for q in quirks if q.quirk_id == "Q1"]
    assert q1 and q1[0].detail["lidar_min"] >= 0 > q1[0].detail["camera_min"]


def test_synthetic_outputs(synthetic_out):
    names = sorted(p.name for p in synthetic_out.iterdir())
    from aqr_cli.views.readings import FILES as READINGS

    assert names == sorted([*FILES.values(), *READINGS.values(), ".aqr-manifest.json"])
    doc = json.loads((synthetic_out / "summary.json").read_text())
    for key in ("source", "settings", "weights", "preference", "maps", "bias", "quirks", "files"):
        assert key in doc
    lw = doc["weights"]["lidar"]
    assert -1 <= lw["min"] < lw["mean"] < lw["max"] <= 1 and lw["std"] > 0.2
    assert doc["weights"]["lidar_after_renderer_clamp"]["min"] >= 0.0
    p = doc["preference"]
    assert math.isclose(p["prefer_lidar"] + p["prefer_camera"], 1.0, abs_tol=0.01)
    b = doc["bias"]
    assert b["all_features"]["overall"]["near_zero"] > 0.9      # upstream's zero-dominated number
    assert b["in_window"]["overall"]["near_zero"] < 0.5         # the meaningful one
    assert b["scale_effective"] == pytest.approx(2.5)
    ids = {q["id"] for q in doc["quirks"]}
    assert {"Q1", "Q3", "Q16"} <= ids
    assert set(doc["methods"]) == {"gaussian", "bilinear", "direct", "distance_weighted"}
    assert doc["methods"]["bilinear"]["camera"]["max"] == 0.0   # Q25: no camera render


def test_arrays_npz(synthetic_out):
    with np.load(synthetic_out / "arrays.npz") as z:
        shapes = {k: z[k].shape for k in z.files}
        assert shapes["lidar_weights"] == (1, 900) and shapes["camera_weights"] == (1, 900)
        assert shapes["pts_bev"] == (1, 900, 2) and shapes["pts_pers"] == (1, 900, 3)
        assert shapes["bev_weight_map"] == (1, 128, 128)
        assert shapes["pers_weight_map"] == (1, 6, 20, 50)
        assert shapes["bias_bev_heatmap"] == (1, 128, 128)
        assert shapes["bias_pers_heatmap"] == (1, 6, 20, 50)
        hb = z["bias_bev_heatmap"]
        assert hb.min() < 0 < hb.max() and np.abs(hb).max() <= 2.5 + 1e-6


def test_same_input_same_bytes(synthetic_out, tmp_path, monkeypatch):
    """Again, with the figures saved by two forked workers (the suite's own runs use one, see
    conftest.py): the same bytes. In-process use (notebooks, CliRunner) leaves the caller's
    autograd mode alone."""
    from conftest import RENDER_SCENE_ARGS

    monkeypatch.setenv("AQR_FIGURE_WORKERS", "2")
    out2 = tmp_path / "again"
    grad_before = torch.is_grad_enabled()
    res = invoke(*RENDER_SCENE_ARGS, "--out", out2)
    assert res.exit_code == 0
    assert grad_before and torch.is_grad_enabled()
    for name in ("bev_weights.png", "camera_weights.png", "bias_heatmaps.png", "query_weights.png",
                 "render_methods.png", "summary.json"):
        assert (synthetic_out / name).read_bytes() == (out2 / name).read_bytes(), name


def test_batch_of_dumps_gets_subfolders_and_evolution(render_batch_run):
    """Two dumps and --checkpoint (the session's run, conftest.RENDER_BATCH_ARGS): a subfolder
    per dump, named after it, and the evolution over them."""
    res, out = render_batch_run
    assert res.exit_code == 0, res.stderr
    docs = json.loads(res.stdout)
    assert [x["source"]["iteration"] for x in docs] == [100, 200]
    assert (out / "weights_iter_100" / "bev_weights.png").exists()
    assert (out / "weights_iter_200_train" / "camera_weights.png").exists()
    assert [json.loads((out / d / "summary.json").read_text()) for d in
            ("weights_iter_100", "weights_iter_200_train")] == docs
    rows = json.loads((out / "evolution.json").read_text())
    assert [r["iteration"] for r in rows] == [100, 200]
    assert (out / "evolution.png").stat().st_size > 10_000


def test_run_folder_applies_its_checkpoint_and_evolves_dumps_in_iteration_order(tmp_path):
    """A folder with dumps and their checkpoint is one run: the checkpoint's settings (learned
    scale 3.17, not the config's 2.5) apply to the dumps, it is not rendered on a synthetic
    scene, and the evolution runs over the dumps by iteration, not by file name."""
    d = tmp_path / "run"
    d.mkdir()
    shutil.copy(DUMP_TRAIN, d / "weights_iter_1.pth")      # holds iteration 200
    shutil.copy(DUMP, d / "weights_iter_2.pth")            # holds iteration 100
    shutil.copy(CHECKPOINT, d / "epoch_6.pth")
    out = tmp_path / "out"
    res = invoke("render-weights", d, "--out", out, "--json")
    assert res.exit_code == 0, res.output
    docs = json.loads(res.stdout)
    assert [x["source"]["kind"] for x in docs] == ["dump", "dump"]
    assert all(x["bias"]["scale_effective"] == pytest.approx(3.17, abs=1e-5) for x in docs)
    assert all("epoch_6.pth" in x["caption"]["source"] for x in docs)
    assert all(any("not rendered on a synthetic scene" in n for n in x["source"]["notes"]) for x in docs)
    assert not (out / "epoch_6").exists()
    rows = json.loads((out / "evolution.json").read_text())
    assert [r["iteration"] for r in rows] == [100, 200]
    assert [r["name"] for r in rows] == ["weights_iter_2", "weights_iter_1"]


def test_two_checkpoints_with_dumps_say_why_none_applies(tmp_path):
    from aqr_cli.cli._sources import group_run_files

    class LF:
        def __init__(self, kind):
            self.kind = kind

    files = [(tmp_path / "a.pth", LF("debug_dump")), (tmp_path / "e1.pth", LF("checkpoint")),
             (tmp_path / "e2.pth", LF("checkpoint"))]
    keep, ck, notes = group_run_files(files, None)
    assert ck is None and len(keep) == 3 and "ambiguous" in notes[0]
    keep, ck, notes = group_run_files(files[:2], None)
    assert ck == str(tmp_path / "e1.pth") and [p.name for p, _ in keep] == ["a.pth"]


def _bad_dump(tmp_path, mutate):
    d = torch.load(DUMP, map_location="cpu", weights_only=False)
    mutate(d)
    path = tmp_path / "bad.pth"
    torch.save(d, path)
    return path


@pytest.mark.parametrize("mutate, needle", [
    (lambda d: d["lidar_weights"].__setitem__((0, 5), float("nan")), "NaN"),
    (lambda d: d.__setitem__("pts_bev", d["pts_bev"][:, :800]), "pts_bev"),
    # the BEV features go too: maps and features of different grids are refused at load already
    (lambda d: (d.__setitem__("weight_map_bev", torch.zeros(1, 180, 180)),
                d.pop("original_bev_features"), d.pop("modulated_bev_features")), "checkpoint config"),
    (lambda d: d["pts_bev"].__setitem__((0, 3, 0), 5000.0), "outside the grid"),
])
def test_bad_dumps_fail_cleanly(tmp_path, mutate, needle):
    path = _bad_dump(tmp_path, mutate)
    out = tmp_path / "out"
    res = invoke("render-weights", path, "--checkpoint", CHECKPOINT, "--out", out)
    assert res.exit_code == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aqr: error:") and needle in lines[0]
    assert "Traceback" not in res.output
    assert not out.exists()
    assert not any(p.name.startswith(".out") for p in tmp_path.iterdir())


def test_unwritable_out_fails_cleanly(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = invoke("render-weights", "--synthetic", "--out", blocker / "sub")
    assert res.exit_code == 1 and len(res.stderr.strip().splitlines()) == 1


def test_features_with_sliced_channels_is_a_clear_error(tmp_path):
    res = invoke("render-weights", "--features", DUMP, "--checkpoint", CHECKPOINT, "--out", tmp_path / "o")
    assert res.exit_code == 1
    assert "16 channels" in res.stderr and "expects 256" in res.stderr


@pytest.mark.parametrize("args", [
    ["--method", "fancy"], ["--weights", "scene"], [], ["--features", str(DUMP)],
])
def test_usage_errors_exit_2(tmp_path, args):
    res = runner.invoke(app, ["render-weights", *args, "--out", str(tmp_path / "o")])
    assert res.exit_code == 2


def test_figures_use_zero_centred_signed_scales():
    from matplotlib.colors import TwoSlopeNorm

    from aqr_cli.plots.weights import bias_heatmap_figure, bev_weight_figure

    bev = np.zeros((16, 16))
    bev[3, 4], bev[8, 8] = -1.2, 2.0
    fig = bias_heatmap_figure(bev, np.zeros((6, 4, 5)), [-54, -54, -5, 54, 54, 3], 2.5)
    ims = [im for ax in fig.axes for im in ax.get_images()]
    assert len(ims) == 7 and all(isinstance(im.norm, TwoSlopeNorm) for im in ims)
    # fixed range by default: the final clamp bound, whatever the data or the scale
    assert all(im.norm.vcenter == 0 and im.norm.vmax == pytest.approx(5.0) for im in ims)
    auto = bias_heatmap_figure(bev, np.zeros((6, 4, 5)), [-54, -54, -5, 54, 54, 3], 2.5,
                               range_mode="auto")
    assert all(im.norm.vmax == pytest.approx(2.0) for ax in auto.axes for im in ax.get_images())
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert any("attention bias (logits)" in lab for lab in labels)
    fig = bev_weight_figure(np.ones((16, 16)), np.linspace(-1, 1, 5), np.zeros((5, 2)),
                            [-54, -54, -5, 54, 54, 3])
    scatter = [c for ax in fig.axes for c in ax.collections if c.get_array() is not None]
    assert any(c.norm.vmin == -1 and c.norm.vmax == 1 for c in scatter)
