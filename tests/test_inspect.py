"""``aqr inspect-checkpoint``: the fixture checkpoint and dumps, the quirk lint, bad input, docs."""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import aqr_cli.cli.commands  # noqa: F401  (registers the commands)
from aqr_cli.analysis.findings import NOT_CHECKED, RULES, readme_table, rule_ids
from aqr_cli.analysis.inspection.checkpoint import inspect_checkpoint
from aqr_cli.analysis.inspection.dump import inspect_dump
from aqr_cli.analysis.inspection.epochs import epoch_series
from aqr_cli.analysis.inspection.reports import CheckpointReport, DumpReport
from aqr_cli.analysis.inspection.tree import key_tree
from aqr_cli.cli.app import app
from aqr_cli.core.configs import reference_config
from aqr_cli.io import LoadError, load_file
from conftest import CHECKPOINT, DUMP, DUMP_TRAIN, RIG, ROOT

PRE = "pts_bbox_head."
BIAS = PRE + "attention_bias_generator."
DOCS = ROOT / "README.md"


def run(*args: str, columns: int = 200):
    return CliRunner().invoke(app, ["inspect-checkpoint", *map(str, args)],
                              env={"COLUMNS": str(columns)})


def run_json(*args: str):
    result = run(*args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def ids(doc) -> dict[str, str]:
    return {f["id"]: f["severity"] for f in doc["findings"]}


@pytest.fixture(scope="module")
def ckpt():
    return torch.load(CHECKPOINT, map_location="cpu", weights_only=True)


def save_variant(path: Path, ckpt, *, meta=None, drop_meta_config=False, **tensors) -> Path:
    """The fixture checkpoint with some state_dict entries replaced (None removes them)."""
    sd = OrderedDict(ckpt["state_dict"])
    for key, value in tensors.items():
        key = key.replace("__", ".")
        if value is None:
            sd.pop(key, None)
        else:
            sd[key] = value
    m = dict(ckpt["meta"], **(meta or {}))
    if drop_meta_config:
        m.pop("config")
    torch.save({"meta": m, "state_dict": sd}, path)
    return path


def config_text(*, cross="PETRMultiheadFlashAttention", self_attn="MultiheadAttention",
                encoder="PETRMultiheadFlashAttention", window_size=8, sigma=1.0,
                custom_keys=None, model_twice=False, debug_mode=False, learnable=True,
                samples_per_gpu=4) -> str:
    """A small but complete mmcv config in the 800x320 shape, written as literals."""
    ref = reference_config("800x320")
    aqr = dict(ref.aqr_config)
    aqr["encoder_config"]["transformerlayers"]["attn_cfgs"][0]["type"] = encoder
    bias = dict(ref.attention_bias_config, window_size=window_size, learnable_scale=learnable)
    renderer = dict(ref.renderer_config, gaussian_sigma=sigma)
    decoder = dict(type="PETRTransformerDecoder", num_layers=6, transformerlayers=dict(
        type="PETRTransformerDecoderLayer",
        attn_cfgs=[dict(type=self_attn, embed_dims=256, num_heads=8),
                   dict(type=cross, embed_dims=256, num_heads=8)],
        operation_order=("self_attn", "norm", "cross_attn", "norm", "ffn", "norm")))
    head = dict(type="CmtHead", hidden_dim=256, enable_aqr=True, debug_mode=debug_mode,
                use_simple_modulation=False, aqr_config=aqr, renderer_config=renderer,
                modulator_config=ref.modulator_config, attention_bias_config=bias,
                transformer=dict(type="CmtTransformer", decoder=decoder))
    lines = ["point_cloud_range = [-54.0, -54.0, -5.0, 54.0, 54.0, 3.0]",
             "voxel_size = [0.1, 0.1, 0.2]"]
    if model_twice:
        lines.append("model = dict(img_backbone=dict(frozen_stages=4))")
    lines.append(f"model = dict(type='CmtDetector', pts_bbox_head=dict({head!r}, "
                 "bbox_coder=dict(pc_range=point_cloud_range)))")
    lines.append(f"data = dict(samples_per_gpu={samples_per_gpu}, "
                 "train=dict(ann_file='infos_train.pkl'), val=dict(ann_file='infos_val.pkl'))")
    if custom_keys is not None:
        lines.append(f"optimizer = dict(type='AdamW', lr=1e-4, paramwise_cfg=dict(custom_keys={custom_keys!r}))")
    return "\n".join(lines) + "\n"


def write_config(tmp_path: Path, name: str = "cfg.py", **kw) -> Path:
    p = tmp_path / name
    p.write_text(config_text(**kw))
    return p


# ---------------------------------------------------------------- the fixture checkpoint


def test_fixture_checkpoint_json():
    doc = run_json(CHECKPOINT)
    assert doc["format"] == "mmcv1-runner" and doc["kind"] == "checkpoint"
    assert doc["size_bytes"] == 5851013
    meta = doc["meta"]
    assert (meta["epoch"], meta["iter"]) == (6, 28128)
    assert meta["versions"] == {"mmcv": "1.7.2", "mmdet": "2.28.2", "mmdet3d": "1.0.0rc6",
                                "mmseg": "0.30.0"}
    assert meta["config_name"] == "cmt_aqr_voxel0100_r50_800x320_cbgs.py"
    assert doc["config_source"]["kind"] == "meta"

    comps = doc["components"]
    assert set(comps) == {"aqr_weight_generator", "weight_renderer", "feature_modulator",
                          "attention_bias_generator"}
    assert all(c["present"] for c in comps.values())
    gen = comps["aqr_weight_generator"]
    assert len(gen["keys"]) == 18 and gen["params"] == 791298 and not gen["legacy"]
    assert comps["weight_renderer"]["legacy"] and comps["weight_renderer"]["buffers"] == 49
    assert comps["feature_modulator"]["evidence"] == "config" and comps["feature_modulator"]["legacy"]
    abg = comps["attention_bias_generator"]
    assert (abg["params"], abg["buffers"], len(abg["keys"])) == (1, 4 * 64 + 64, 6)

    cfg = doc["config"]
    assert cfg["aqr_config"]["window_sizes"] == {"value": [8, 5], "source": "file"}
    assert cfg["renderer_config"]["max_weight_clamp"] == {"value": 1.5, "source": "default"}
    assert cfg["attention"]["decoder_cross"]["value"] == "PETRMultiheadFlashAttention"

    b = doc["bias_scale"]
    assert b["raw"] == pytest.approx(3.17) and b["effective"] == pytest.approx(3.17)
    assert (b["init"], b["min"], b["max"], b["learnable"]) == (2.5, 0.5, 5.0, True)
    assert b["distance_to_min"] == pytest.approx(2.67) and b["distance_to_max"] == pytest.approx(1.83)
    assert b["equals_init"] is False and b["shape"] == [1]

    s = doc["shapes"]
    assert (s["bev"], s["pers"], s["aqr_window_sizes"], s["bias_window"]) == (
        [128, 128], [6, 20, 50], [8, 5], 8)
    assert s["state_dict"]["bias_offsets"] == 64
    assert s["state_dict"]["bias_axis_offsets"] == list(range(-3, 5))
    assert s["state_dict"]["renderer_kernel"] == [7, 7]
    assert (s["state_dict"]["bev_width"], s["state_dict"]["pers_width"]) == (128, 50)
    assert all(c["status"] == "ok" for c in doc["checks"])

    head = doc["weight_head"]
    assert head["bias_raw"] == pytest.approx([0.9137, 0.3462])
    assert head["bias_tanh"] == pytest.approx([math.tanh(0.9137), math.tanh(0.3462)])

    refs = doc["reference_points"]
    assert refs["count"] == 900 and refs["outside_unit_count"] == 0
    assert refs["unseen_count"] == 16 and refs["unseen_share"] == pytest.approx(16 / 900)
    assert refs["bev_outside_grid"] == 0 and sum(refs["per_view"].values()) == 900 - 16
    assert doc["nonfinite"] == {"scanned": 30, "bad": []}

    found = ids(doc)
    assert found["Q15"] == "error"  # PETRMultiheadFlashAttention as decoder cross-attention
    assert found["Q16"] == "warning"  # ... and as AQR encoder attention
    assert found["Q3"] == "warning" and found["Q9"] == "warning" and found["Q34"] == "warning"
    assert {"Q22", "Q23", "Q11", "Q40"} <= set(found)
    assert not {"Q1", "Q2", "Q12", "Q13", "Q14", "Q17", "Q20", "Q21", "NONFINITE"} & set(found)
    assert not {"Q24", "Q25", "Q26", "Q27"} & set(found)  # the renderer is legacy at HEAD
    assert "moved from 2.5 to 3.1700" in next(f["message"] for f in doc["findings"] if f["id"] == "Q15")
    assert [f["severity"] for f in doc["findings"]] == sorted(
        (f["severity"] for f in doc["findings"]), key=["error", "warning", "info"].index)


def test_fixture_checkpoint_human_output():
    result = run(CHECKPOINT)
    assert result.exit_code == 0 and result.stderr == ""
    out = result.stdout
    for text in ("cmt_aqr_800x320_head.pth", "mmcv1-runner, 5.85 MB", "epoch 6, iter 28128",
                 "mmcv 1.7.2", "cmt_aqr_voxel0100_r50_800x320_cbgs.py from meta['config']",
                 "BEV 128x128, camera 6x20x50", "14 ok",
                 "raw 3.1700, effective 3.1700 (learnable, clamp [0.5, 5]); init 2.5",
                 "bias LiDAR 0.9137 (tanh 0.7229), camera 0.3462 (tanh 0.3330)",
                 "16 (1.8%) seen by no camera (default rig)", "attention_bias_generator",
                 "legacy: unused at HEAD", "Q15", "Q16"):
        assert text in out, text
    assert not any(line != line.rstrip() for line in out.splitlines()[:17])


def test_library_api_returns_report_dataclass():
    rep = inspect_checkpoint(CHECKPOINT)
    assert isinstance(rep, CheckpointReport)
    assert rep.bias_scale.effective == pytest.approx(3.17)
    assert rep.to_dict()["shapes"]["bev"] == [128, 128]
    with pytest.raises(LoadError, match="expected a checkpoint"):
        inspect_checkpoint(DUMP)
    with pytest.raises(LoadError, match="expected an AQR debug dump"):
        inspect_dump(CHECKPOINT)


def test_rig_option_matches_default(tmp_path):
    doc = run_json(CHECKPOINT, "--rig", RIG)
    assert doc["reference_points"]["unseen_count"] == 16
    assert doc["reference_points"]["rig"] == str(RIG)
    bad = tmp_path / "rig.json"
    bad.write_text("{not json")
    result = run(CHECKPOINT, "--rig", bad)
    assert result.exit_code == 1 and len(result.stderr.splitlines()) == 1
    assert "rig.json" in result.stderr


# ---------------------------------------------------------------- the fixture dumps


@pytest.mark.parametrize("path, iteration, gt", [(DUMP, 100, 0), (DUMP_TRAIN, 200, 7)])
def test_fixture_dumps_json(path, iteration, gt):
    doc = run_json(path)
    assert doc["kind"] == "debug_dump" and doc["format"] == "debug-dump"
    assert doc["iteration"] == iteration and doc["meta"]["iter"] == iteration
    q = doc["queries"]
    assert (q["num_queries"], q["num_dn"], q["dn_share"], q["num_matching"]) == (900, 0, 0.0, 900)
    assert doc["batch_size"] == 1
    assert doc["shapes"]["bev"] == [128, 128] and doc["shapes"]["pers"] == [6, 20, 50]
    assert doc["gt_boxes"]["count"] == gt
    keys = [c["key"] for c in doc["contents"]]
    assert keys[:6] == ["iteration", "weight_map_bev", "weight_map_pers", "lidar_weights",
                        "camera_weights", "pts_bev"] and keys[-1] == "img_metas"
    lw = next(c for c in doc["contents"] if c["key"] == "lidar_weights")
    assert lw["shape"] == [1, 900] and lw["dtype"] == "float32"
    found = ids(doc)
    assert found["Q1"] == "warning" and "Q19" not in found and "Q3" not in found
    assert {"Q28", "Q38", "Q29"} <= set(found)
    assert doc["weights"]["lidar"]["min"] == 0.0 and doc["weights"]["camera"]["min"] < 0
    assert doc["sentinel"]["decidable"] is False and doc["sentinel"]["cell_value"][0] > 0
    if gt:
        assert doc["gt_boxes"]["labels"] == [[0, 1, 8, 0, 3, 5, 9]]
        assert doc["gt_boxes"]["in_data_container"] and found["Q29"] == "warning"


def test_dump_human_output():
    result = run(DUMP_TRAIN)
    assert result.exit_code == 0 and result.stderr == ""
    for text in ("weights_iter_200_train.pth  debug dump", "iteration       200",
                 "900 per sample, batch 1; DN 0 (0.0%)", "7 (car, truck, pedestrian",
                 "count undecidable", "Q1", "lidar_weights"):
        assert text in result.stdout, text


def test_dump_with_checkpoint_counts_sentinel_queries():
    doc = run_json(DUMP, "--checkpoint", CHECKPOINT)
    s = doc["sentinel"]
    assert s["decidable"] and s["count"] == 16 and s["total"] == 900 and s["matches_dump"] is True
    assert ids(doc)["Q3"] == "warning"
    assert doc["config_source"]["label"].startswith("cmt_aqr_800x320_head.pth")
    assert doc["shapes"]["aqr_window_sizes"] == [8, 5]


def test_dump_with_dn_queries(tmp_path):
    obj = torch.load(DUMP_TRAIN.parent / "weights_iter_100.pth", weights_only=False)
    pad = 370
    for key in ("lidar_weights", "camera_weights"):
        obj[key] = torch.cat([torch.full((1, pad), 0.5), obj[key]], dim=1)
    obj["pts_bev"] = torch.cat([torch.zeros(1, pad, 2), obj["pts_bev"]], dim=1)
    p = tmp_path / "weights_iter_300.pth"
    torch.save(obj, p)
    doc = run_json(p)
    assert doc["queries"]["num_queries"] == 1270 and doc["queries"]["num_dn"] == 370
    assert doc["queries"]["dn_share"] == pytest.approx(370 / 1270)
    assert ids(doc)["Q19"] == "warning"
    with_ck = run_json(p, "--checkpoint", CHECKPOINT)
    assert with_ck["sentinel"]["count"] == 16 and with_ck["sentinel"]["matches_dump"] is True


def test_dump_shapes_disagree_with_config(tmp_path):
    cfg = write_config(tmp_path)
    cfg.write_text(cfg.read_text().replace("(128, 128)", "(180, 180)"))
    result = run(DUMP, "--config", cfg)
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "weights_iter_100.pth" in result.stderr
    assert "shapes disagree with the config" in result.stderr


# ---------------------------------------------------------------- several paths, --out, --keys


def test_several_paths_json_list_in_argument_order():
    docs = run_json(DUMP_TRAIN, CHECKPOINT, DUMP)
    assert [d["name"] for d in docs] == ["weights_iter_200_train.pth", "cmt_aqr_800x320_head.pth",
                                         "weights_iter_100.pth"]
    assert [d["kind"] for d in docs] == ["debug_dump", "checkpoint", "debug_dump"]


def _epochs(tmp_path, ckpt) -> list[Path]:
    paths = []
    for e in (1, 2, 10):
        paths.append(save_variant(
            tmp_path / f"epoch_{e}.pth", ckpt, meta={"epoch": e, "iter": 4688 * e},
            **{BIAS + "bias_scale": torch.tensor([2.5 + 0.6 * e]),
               PRE + "aqr_weight_generator.weight_predictor.bias": torch.tensor([1.5 - 0.1 * e, 1.0])}))
    return paths


def test_several_checkpoints_table_and_png(tmp_path, ckpt):
    paths = _epochs(tmp_path, ckpt)
    out = tmp_path / "report"
    result = run(*paths, DUMP, "--out", out)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    rows = [line for line in lines if re.match(r"\s*(epoch_\d+|weights_iter)", line)]
    assert [r.split()[0] for r in rows] == ["epoch_1.pth", "epoch_2.pth", "epoch_10.pth",
                                           "weights_iter_100.pth"]  # natural order
    assert "3.100 / 3.100" in rows[0] and "8.500 / 5.000" in rows[2]  # clamped at max_scale
    assert "Q13" in rows[2] and "900 (0)" in rows[3]
    png, js = out / "inspect_epochs.png", out / "inspect.json"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(json.loads(js.read_text())) == 4
    first = png.read_bytes()
    again = run(*paths, DUMP, "--out", out)  # same input -> byte-identical PNG
    assert again.exit_code == 0 and png.read_bytes() == first
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == [".aqr-manifest.json"]


def test_epoch_figure_structure(tmp_path, ckpt):
    from aqr_cli.plots.epochs import epoch_evolution_figure

    reports = [inspect_checkpoint(p) for p in reversed(_epochs(tmp_path, ckpt))]
    series = epoch_series(reports)
    assert series["x"].tolist() == [1.0, 2.0, 10.0] and series["x_label"] == "epoch"
    assert series["bias_raw"].tolist() == pytest.approx([3.1, 3.7, 8.5])
    assert series["bias_effective"].tolist() == pytest.approx([3.1, 3.7, 5.0])
    assert (series["bias_init"], series["bias_min"], series["bias_max"]) == (2.5, 0.5, 5.0)
    fig = epoch_evolution_figure(series)
    axes = fig.get_axes()
    assert len(axes) == 3
    assert axes[0].get_ylabel().startswith("bias_scale")
    assert [line.get_label() for line in axes[0].get_lines()][:2] == ["raw", "effective (clamped)"]
    assert {line.get_label() for line in axes[0].get_lines()} >= {"max_scale", "min_scale", "init"}
    assert len(axes[1].get_lines()) == 6 and len(axes[2].get_lines()) == 2


def test_out_with_only_dumps_writes_json_and_warns(tmp_path):
    result = run(DUMP, "--out", tmp_path / "o")
    assert result.exit_code == 0
    assert (tmp_path / "o" / "inspect.json").exists()
    assert not (tmp_path / "o" / "inspect_epochs.png").exists()
    assert "not written" in result.stderr


def test_keys_tree_human_and_json():
    result = run(CHECKPOINT, "--keys")
    assert result.exit_code == 0
    assert re.search(r"weight\s+\[900, 3\] float32", result.stdout)
    assert "bias_scale  [1] float32" in result.stdout and "y_offsets  [64] int64" in result.stdout
    assert "1,451,520 elements" in result.stdout
    doc = run_json(DUMP_TRAIN, "--keys")
    names = {c["key"] for c in doc["tree"]["children"]}
    assert {"iteration", "lidar_weights", "img_metas"} <= names
    text = json.dumps(doc)
    assert "mmcv.parallel.data_container.DataContainer" in text and '"shape": [7, 9]' in text


def test_key_tree_of_state_dict_is_nested(ckpt):
    tree = key_tree(load_file(CHECKPOINT))
    sd = next(c for c in tree["children"] if c["key"] == "state_dict")
    head = sd["children"][0]
    assert head["key"] == "pts_bbox_head" and head["numel"] == sum(
        t.numel() for t in ckpt["state_dict"].values())


# ---------------------------------------------------------------- the quirk lint


def test_config_override_changes_attention_findings(tmp_path):
    cfg = write_config(tmp_path, cross="PETRMultiheadAttention", self_attn="PETRMultiheadFlashAttention",
                       encoder="MultiheadAttention")
    doc = run_json(CHECKPOINT, "--config", cfg)
    assert doc["config_source"] == {"kind": "file", "label": str(cfg)}
    found = ids(doc)
    assert "Q15" not in found  # PETRMultiheadAttention applies the bias
    assert found["Q16"] == "error"  # flash self-attention drops the DN mask
    assert found["Q17"] == "error"  # fp16 bias into nn.MultiheadAttention on torch 2.13
    assert "Q34" not in found and "Q6" not in found  # other ann_files, debug_mode False
    assert any("overrides" in n for n in doc["notes"])


def test_bias_scale_unchanged_in_trained_checkpoint(tmp_path, ckpt):
    p = save_variant(tmp_path / "epoch_6.pth", ckpt, **{BIAS + "bias_scale": torch.tensor([2.5])})
    doc = run_json(p)
    assert doc["bias_scale"]["equals_init"] is True
    q15 = next(f for f in doc["findings"] if f["id"] == "Q15")
    assert q15["severity"] == "error" and "still exactly 2.5" in q15["message"]
    # without a config only the value speaks
    bare = save_variant(tmp_path / "bare.pth", ckpt, drop_meta_config=True,
                        **{BIAS + "bias_scale": torch.tensor([2.5])})
    doc = run_json(bare)
    assert doc["config"] is None and ids(doc)["Q15"] == "warning"


def test_no_config_infers_shapes_from_tensors(tmp_path, ckpt):
    p = tmp_path / "bare_state_dict.pth"
    torch.save(OrderedDict(ckpt["state_dict"]), p)
    doc = run_json(p)
    assert doc["format"] == "bare-state-dict" and doc["config"] is None
    s = doc["shapes"]
    assert s["source"] == "state_dict" and s["bias_window"] == 8
    assert s["bev"] == [None, 128] and s["pers"] == [None, None, 50]
    assert s["state_dict"]["bias_window_parity"] == "head"
    assert doc["bias_scale"]["settings_source"].startswith("upstream defaults")
    assert doc["bias_scale"]["effective"] == pytest.approx(3.17)
    assert {"Q9", "Q3", "Q22"} <= set(ids(doc)) and "Q15" not in ids(doc)


def test_bias_scale_outside_range_q13(tmp_path, ckpt):
    p = save_variant(tmp_path / "big.pth", ckpt, **{BIAS + "bias_scale": torch.tensor([7.3])})
    doc = run_json(p)
    assert doc["bias_scale"]["raw"] == pytest.approx(7.3)
    assert doc["bias_scale"]["effective"] == 5.0 and doc["bias_scale"]["outside_range"]
    assert ids(doc)["Q13"] == "warning"


def test_old_generation_buffers_q14(tmp_path, ckpt):
    ax = torch.arange(-4, 5)
    y, x = (t.reshape(-1) for t in torch.meshgrid(ax, ax, indexing="ij"))
    p = save_variant(tmp_path / "old.pth", ckpt, **{
        BIAS + "bias_scale": torch.tensor(2.8), BIAS + "gaussian_weights": None,
        BIAS + "y_offsets": y, BIAS + "x_offsets": x, BIAS + "window_offsets_bev": y * 128 + x,
        BIAS + "window_offsets_pers": y * 50 + x})
    doc = run_json(p)
    assert doc["bias_scale"]["shape"] == [] and doc["bias_scale"]["raw"] == pytest.approx(2.8)
    assert doc["shapes"]["state_dict"]["bias_window_parity"] == "symmetric"
    found = ids(doc)
    assert found["Q14"] == "warning" and "Q9" not in found  # symmetric 9x9 = the LAM's 9x9


def test_reference_points_outside_unit_q2_q20(tmp_path, ckpt):
    ref = ckpt["state_dict"][PRE + "reference_points.weight"].clone()
    ref[:5, 0] = 1.02
    ref[5:8, 1] = -0.01
    ref[8, 0] = 1.0
    p = save_variant(tmp_path / "drift.pth", ckpt, **{PRE + "reference_points.weight": ref})
    doc = run_json(p)
    refs = doc["reference_points"]
    assert refs["outside_unit_count"] == 9 and refs["outside_closed_count"] == 8
    assert refs["bev_outside_grid"] == 9
    found = ids(doc)
    assert found["Q2"] == "warning" and found["Q20"] == "warning"


def test_nonfinite_is_an_error_finding(tmp_path, ckpt):
    # outside the AQR tensors, NaN/Inf is a finding; inside them every command refuses the file
    w = torch.zeros(4, 4)
    w[0, 0] = float("nan")
    w[1, 1] = float("inf")
    p = save_variant(tmp_path / "nan.pth", ckpt, **{"img_backbone.conv1.weight": w})
    result = run(p, "--json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["nonfinite"]["bad"] == [{"key": "img_backbone.conv1.weight", "nan": 1, "inf": 1}]
    assert ids(doc)["NONFINITE"] == "error"
    emb = ckpt["state_dict"][PRE + "bev_embedding.0.weight"].clone()
    emb[0, 0] = float("nan")
    q = save_variant(tmp_path / "nan_emb.pth", ckpt, **{PRE + "bev_embedding.0.weight": emb})
    result = run(q, "--json")
    assert result.exit_code == 1
    assert "bev_embedding.0.weight holds 1 NaN and 0 Inf values" in result.stderr


def test_optimizer_key_shadowing_q33_and_config_overwrite_q32(tmp_path):
    cfg = write_config(tmp_path, custom_keys={"attention_bias_generator": {"lr_mult": 1.0},
                                              "bias_scale": {"lr_mult": 2.0},
                                              "aqr_weight_generator": {"lr_mult": 1.0}},
                       model_twice=True)
    doc = run_json(CHECKPOINT, "--config", cfg)
    found = ids(doc)
    assert found["Q33"] == "warning"
    q33 = next(f for f in doc["findings"] if f["id"] == "Q33")
    assert "'bias_scale' (lr_mult 2.0) never applies" in q33["message"]
    assert found["Q32"] == "warning"
    # the 800x320 keys: the longer 'attention_bias_generator.bias_scale' refines the shorter one
    ok = write_config(tmp_path, "ok.py", custom_keys={
        "attention_bias_generator": {"lr_mult": 1.0},
        "attention_bias_generator.bias_scale": {"lr_mult": 0.5}})
    assert "Q33" not in ids(run_json(CHECKPOINT, "--config", ok))


def test_fixed_scale_debug_print_q12(tmp_path):
    cfg = write_config(tmp_path, learnable=False, debug_mode=True)
    doc = run_json(CHECKPOINT, "--config", cfg)
    found = ids(doc)
    assert found["Q12"] == "error" and "Q11" not in found
    assert doc["bias_scale"]["learnable"] is False and doc["bias_scale"]["effective"] == pytest.approx(3.17)
    assert {"Q6", "Q7", "Q8"} <= set(found)


# ---------------------------------------------------------------- bad input


class _Payload:
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _bad_file(tmp_path: Path, case: str, ckpt) -> Path:
    p = tmp_path / f"bad_{case}.pth"
    if case == "missing":
        pass
    elif case == "directory":
        p.mkdir()
    elif case == "empty":
        p.write_bytes(b"")
    elif case == "truncated":
        data = CHECKPOINT.read_bytes()
        p.write_bytes(data[: len(data) // 3])
    elif case == "random":
        p.write_bytes(b"\x13" + os.urandom(4095))
    elif case == "plain-pickle":
        p.write_bytes(pickle.dumps({"state_dict": {}}))
    elif case == "not-a-checkpoint":
        torch.save({"learning_rate": 0.1, "notes": "hi"}, p)
    elif case == "list":
        torch.save([1, 2, 3], p)
    elif case == "offsets-vs-config":
        ax = torch.arange(-7, 8)
        y, x = (t.reshape(-1) for t in torch.meshgrid(ax, ax, indexing="ij"))
        save_variant(p, ckpt, **{BIAS + "y_offsets": y, BIAS + "x_offsets": x,
                                 BIAS + "window_offsets_bev": y * 128 + x,
                                 BIAS + "window_offsets_pers": y * 50 + x,
                                 BIAS + "gaussian_weights": torch.ones(225)})
    elif case == "bev-width-vs-config":
        y = ckpt["state_dict"][BIAS + "y_offsets"]
        x = ckpt["state_dict"][BIAS + "x_offsets"]
        save_variant(p, ckpt, **{BIAS + "window_offsets_bev": y * 180 + x})
    elif case == "queries-vs-config":
        save_variant(p, ckpt, **{PRE + "reference_points.weight": torch.rand(600, 3)})
    elif case == "predictor-vs-config":
        save_variant(p, ckpt, **{PRE + "aqr_weight_generator.weight_predictor.weight": torch.rand(2, 128)})
    elif case == "dump-inconsistent":
        obj = torch.load(DUMP, weights_only=False)
        obj["camera_weights"] = obj["camera_weights"][:, :800]
        torch.save(obj, p)
    return p


BAD_CASES = {
    "missing": "no such file",
    "directory": "folder holds no .pth or .safetensors file",
    "empty": "empty file",
    "truncated": "truncated or corrupt",
    "random": "not a PyTorch checkpoint",
    "plain-pickle": "plain Python pickle",
    "not-a-checkpoint": "not a checkpoint or AQR debug dump",
    "list": "holds a list",
    "offsets-vs-config": "offset buffers hold 225 entries, but window_size=8",
    "bev-width-vs-config": "window_offsets_bev encodes width 180",
    "queries-vs-config": "reference_points.weight is [600, 3]; num_query=900",
    "predictor-vs-config": "[2, 128] and embed_dims=256",
    "dump-inconsistent": "must both be [B, Nq]",
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_one_line_exit_1(tmp_path, ckpt, case):
    p = _bad_file(tmp_path, case, ckpt)
    for extra in ((), ("--json",)):
        result = run(p, *extra)
        assert result.exit_code == 1, (case, result.stdout, result.stderr)
        assert result.stdout == ""
        lines = result.stderr.splitlines()
        assert len(lines) == 1, lines
        assert lines[0].startswith("aqr: error: ") and p.name in lines[0]
        assert BAD_CASES[case] in lines[0]
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize("trust", [False, True])
def test_hostile_pickle_never_runs(tmp_path, trust):
    marker = tmp_path / "pwned"
    p = tmp_path / "hostile.pth"
    torch.save({"state_dict": {"w": torch.ones(2)},
                "meta": {"x": _Payload(os.system, f"touch {marker}")}}, p)
    result = run(p, "--json", *(["--trust-checkpoint"] if trust else []))
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    system = f"{os.system.__module__}.system"
    assert doc["inert_records"] == [system]
    assert any("inert records" in n and system in n for n in doc["notes"])
    lines = result.stderr.splitlines()
    assert lines == (["aqr: warning: --trust-checkpoint is deprecated and has no effect; "
                      "no file ever runs code"] if trust else [])
    assert not marker.exists()


def test_bad_config_file(tmp_path):
    bad = tmp_path / "broken.py"
    bad.write_text("model = dict(\n")
    result = run(CHECKPOINT, "--config", bad)
    assert result.exit_code == 1 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and "broken.py" in result.stderr
    result = run(CHECKPOINT, "--config", tmp_path / "nope.py")
    assert result.exit_code == 1 and len(result.stderr.splitlines()) == 1


def test_config_is_never_executed(tmp_path):
    marker = tmp_path / "ran"
    cfg = write_config(tmp_path)
    cfg.write_text(f"import os\nos.system('touch {marker}')\n" + cfg.read_text())
    assert run(CHECKPOINT, "--config", cfg).exit_code == 0
    assert not marker.exists()


def test_kernel_vs_sigma_mismatch(tmp_path):
    cfg = write_config(tmp_path, sigma=2.0)
    result = run(CHECKPOINT, "--config", cfg)
    assert result.exit_code == 1 and result.stdout == ""
    assert "gaussian_kernel is 7x7; gaussian_sigma=2.0 (file) needs 13x13" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_one_bad_path_among_several(tmp_path):
    result = run(CHECKPOINT, tmp_path / "gone.pth", DUMP)
    assert result.exit_code == 1
    assert "cmt_aqr_800x320_head.pth" in result.stdout and "weights_iter_100.pth" in result.stdout
    assert result.stderr.splitlines() == [f"aqr: error: {tmp_path / 'gone.pth'}: no such file"]
    docs = json.loads(run(CHECKPOINT, tmp_path / "gone.pth", "--json").stdout)
    assert docs[1] == {"path": str(tmp_path / "gone.pth"),
                       "error": f"{tmp_path / 'gone.pth'}: no such file"}


def test_trust_flag_is_a_deprecated_no_op():
    result = run(CHECKPOINT, "--trust-checkpoint", "--json")
    assert result.exit_code == 0
    assert result.stderr == ("aqr: warning: --trust-checkpoint is deprecated and has no effect; "
                             "no file ever runs code\n")
    assert json.loads(result.stdout)["trusted"] is False


@pytest.mark.parametrize("args", [[], ["--bogus"], [str(CHECKPOINT), "--keys", "--out", "x"],
                                  [str(CHECKPOINT), "--rig"]])
def test_usage_errors_exit_2(args):
    result = CliRunner().invoke(app, ["inspect-checkpoint", *args])
    assert result.exit_code == 2


# ---------------------------------------------------------------- docs and import cost


def test_help_does_not_import_torch_or_matplotlib():
    code = ("import sys\nfrom aqr_cli.cli.app import main\nsys.argv = ['aqr', '--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "sys.stderr.write(repr(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stderr.strip().endswith("[]"), out.stderr
    assert "inspect-checkpoint" in out.stdout


def test_command_has_help_and_example():
    from aqr_cli.cli import inspect_cmd

    doc = inspect_cmd.inspect_checkpoint_command.__doc__.strip()
    assert doc.splitlines()[-1].strip().startswith("Example: aqr inspect-checkpoint ")
    result = CliRunner().invoke(app, ["inspect-checkpoint", "--help"])
    assert result.exit_code == 0 and "--trust-checkpoint" not in result.stdout  # deprecated, hidden


def test_docs_list_every_checked_quirk_and_the_json_keys():
    text = DOCS.read_text()
    assert "aqr inspect-checkpoint" in text
    for rule in RULES:
        assert re.search(rf"\|\s*{rule.id}\s*\|", text), rule.id
    for qid in NOT_CHECKED:
        assert qid in text
    for key in ("format", "meta", "components", "config", "bias_scale", "shapes", "findings",
                "aqr_window_sizes", "bias_window", "effective", "learnable"):
        assert f"`{key}`" in text, key


def test_readme_holds_the_generated_quirk_table():
    assert readme_table() in DOCS.read_text(encoding="utf-8")


def test_a_rule_is_registered_once_per_input_kind():
    from aqr_cli.analysis.findings.registry import quirk_rule

    n = len(RULES)
    with pytest.raises(ValueError, match="registered twice"):
        quirk_rule("Q13", "checkpoint", inputs="x", fires="y")(lambda ctx: None)
    with pytest.raises(ValueError, match="dump rules"):
        quirk_rule("Q99", ("dump", "config"), inputs="x", fires="y")
    assert len(RULES) == n
    assert {r.id for r in RULES if "config" in r.applies_to} == set(rule_ids("config"))


def test_rules_cover_every_quirk_once():
    checked = {r.id for r in RULES if r.id.startswith("Q")}
    assert checked.isdisjoint(NOT_CHECKED)
    assert checked | set(NOT_CHECKED) == {f"Q{i}" for i in range(1, 42)}
    assert set(rule_ids("dump")) >= {"Q1", "Q19", "Q28", "Q29", "Q38"}
