"""``aqr inspect-checkpoint CONFIG.py``: lint an mmcv config without a checkpoint.

On the real upstream fixture configs and on configs the tests write: ``{{ }}`` templates,
``_base_`` chains, ``_delete_=True``, a second ``model`` assignment, ``custom_keys`` shadowing,
AQR fully off, windows that do not fit the maps (Q9/Q10), val infos in the train set (Q34).
"""

from __future__ import annotations

import json
import re
import shutil
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

import aqr_cli.cli.commands  # noqa: F401  (registers the commands)
from aqr_cli.analysis.config_lint import (
    CONFIG_RULE_IDS,
    NOT_RUN,
    diff_configs,
    lint_config,
    looks_like_config,
)
from aqr_cli.analysis.findings import RULES
from aqr_cli.analysis.inspection.checkpoint import inspect_checkpoint
from aqr_cli.cli.app import app
from aqr_cli.io import ConfigParseError
from conftest import CHECKPOINT, FIXTURES, ROOT

CONFIGS = FIXTURES / "configs"
AQR_CFG = CONFIGS / "cmt_aqr_voxel0100_r50_800x320_cbgs.py"
BASE_CFG = CONFIGS / "cmt_voxel0100_r50_800x320_cbgs.py"
NEEDS_CHECKPOINT = {"Q3", "Q5", "Q13", "Q14", "Q20", "Q22", "NONFINITE"}


def run(*args):
    return CliRunner().invoke(app, ["inspect-checkpoint", *map(str, args)])


def run_json(*args):
    result = run(*args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def line_of(path: Path, needle: str, nth: int = 1) -> int:
    """1-based line of the ``nth`` line of ``path`` that contains ``needle``."""
    hits = [i for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
            if needle in line]
    return hits[nth - 1]


def ids(report) -> dict[str, str]:
    return {f.id: f.severity for f in report.findings}


# A small detector config in the upstream layout: AQR off by default, as the upstream base.
BASE = """
point_cloud_range = [-54.0, -54.0, -5.0, 54.0, 54.0, 3.0]
voxel_size = [0.1, 0.1, 0.2]
out_size_factor = 8
ida_aug_conf = dict(final_dim=(320, 800))
data = dict(
    samples_per_gpu=2,
    train=dict(ann_file='data/infos_train.pkl'),
    val=dict(ann_file='data/infos_val.pkl'))
model = dict(
    type='CmtDetector',
    pts_bbox_head=dict(
        type='CmtHead',
        hidden_dim=256,
        enable_aqr=False,
        aqr_config=None,
        attention_bias_config=None,
        bbox_coder=dict(pc_range=point_cloud_range),
        transformer=dict(decoder=dict(transformerlayers=dict(
            attn_cfgs=[dict(type='MultiheadAttention', num_heads=8),
                       dict(type='PETRMultiheadAttention', num_heads=8)],
            operation_order=('self_attn', 'norm', 'cross_attn', 'norm', 'ffn', 'norm'))))),
    train_cfg=dict(pts=dict(grid_size=[1024, 1024, 40], out_size_factor=out_size_factor)))
"""


def head_block(cam: int = 9, ws: int = 9, enc: str = "MultiheadAttention",
               pers: str = "(6, 20, 50)", bev: str = "(128, 128)") -> str:
    """A ``model = dict(pts_bbox_head=...)`` that turns AQR on with every setting explicit."""
    return f"""
model = dict(
    pts_bbox_head=dict(
        enable_aqr=True,
        aqr_config=dict(
            _delete_=True,
            embed_dims=256,
            window_sizes=[{cam}, 5],
            bev_feature_shape={bev},
            pers_feature_shape={pers},
            encoder_config=dict(
                type='PETRTransformerDecoder',
                num_layers=1,
                transformerlayers=dict(
                    type='PETRTransformerDecoderLayer',
                    attn_cfgs=[dict(type='{enc}', embed_dims=256, num_heads=4)],
                    ffn_cfgs=dict(embed_dims=256, feedforward_channels=1024),
                    operation_order=('cross_attn', 'norm', 'ffn', 'norm')))),
        renderer_config=dict(_delete_=True, gaussian_sigma=1.0, max_weight_clamp=1.5,
                             bev_feature_shape={bev}, pers_feature_shape={pers}),
        modulator_config=dict(_delete_=True, residual_weight=0.7, normalize_weights=False),
        attention_bias_config=dict(
            _delete_=True,
            bev_feature_shape={bev},
            pers_feature_shape={pers},
            window_size={ws},
            gaussian_sigma=2.0,
            debug_print=False,
            fp16=False)))
"""


def child(tmp_path: Path, body: str, name: str = "child.py", base: str = BASE) -> Path:
    write(tmp_path / "base.py", base)
    return write(tmp_path / name, "_base_ = ['./base.py']\n" + textwrap.dedent(body))


# ---------------------------------------------------------------- the real upstream configs


def test_fixture_aqr_config_settings_and_origins():
    r = lint_config(AQR_CFG)
    assert r.kind == "config" and r.files == [str(AQR_CFG), str(BASE_CFG.resolve())]
    assert (r.aqr.state, r.aqr.ok) == ("on", True)
    s = r.setting("head.enable_aqr")
    assert (s.value, s.source, s.file, s.line) == (True, "file", str(AQR_CFG), 95)
    s = r.setting("aqr_config.window_sizes")
    assert (s.value, s.source, s.line) == ([8, 5], "file", line_of(AQR_CFG, "window_sizes=[8, 5],"))
    s = r.setting("head.hidden_dim")
    assert (s.value, s.source, s.file) == (256, "base", str(BASE_CFG.resolve()))
    assert s.line == line_of(BASE_CFG, "hidden_dim=256")
    assert (r.setting("head.num_query").source, r.setting("head.num_query").value) == ("default", 900)
    clamp = r.setting("renderer_config.max_weight_clamp")
    assert (clamp.source, clamp.value, clamp.file) == ("default", 1.5, None)
    cross = r.setting("attention.decoder_cross")
    assert (cross.value, cross.source) == ("PETRMultiheadFlashAttention", "base")
    assert r.setting("attention.encoder").value == "PETRMultiheadFlashAttention"
    assert r.shapes.bev == [128, 128] and r.shapes.pers == [6, 20, 50]
    assert r.shapes.aqr_window_sizes == [8, 5] and r.shapes.bias_window == 8
    assert r.detector_shapes["bev"] == [128, 128] and r.detector_shapes["pers"] == [6, 20, 50]
    assert all(c.status == "ok" for c in r.checks) and len(r.checks) == 4
    assert r.config.train_ann_files == ["data/nuscenes//nuscenes_infos_train.pkl",
                                        "data/nuscenes//nuscenes_infos_val.pkl"]


def test_fixture_findings_match_the_checkpoint_lint():
    """Same ids and severities as the checkpoint lint with --config, minus what needs tensors."""
    r = lint_config(AQR_CFG)
    ck = inspect_checkpoint(CHECKPOINT, config_path=AQR_CFG)
    from_ckpt = {f.id: f.severity for f in ck.findings if f.id not in NEEDS_CHECKPOINT}
    assert ids(r) == from_ckpt
    assert ids(r) == {"Q15": "error", "Q9": "warning", "Q16": "warning", "Q32": "warning",
                      "Q34": "warning", "Q6": "info", "Q7": "info", "Q8": "info", "Q11": "info",
                      "Q18": "info", "Q23": "info", "Q40": "info"}
    q32 = next(f for f in r.findings if f.id == "Q32")
    # the first model = dict(...) (backbone freezing, line 68) is lost to the one at line 90
    assert "cmt_aqr_voxel0100_r50_800x320_cbgs.py:68" in q32.message
    assert "img_backbone.frozen_stages" in q32.message and "pts_bbox_head" not in q32.message


def test_fixture_base_config_is_a_baseline():
    r = lint_config(BASE_CFG)
    assert (r.aqr.state, r.aqr.ok) == ("off", True)
    assert f"{BASE_CFG.name}:{line_of(BASE_CFG, 'enable_aqr=False')}" in r.aqr.message
    assert ids(r) == {"Q34": "warning"}
    assert not any(c.present for c in r.components.values())


def test_cli_json_schema_and_not_run():
    doc = run_json(AQR_CFG)
    assert doc["kind"] == "config" and doc["config_source"] == {"kind": "file", "label": str(AQR_CFG)}
    for f in doc["findings"]:
        assert set(f) == {"id", "severity", "message", "detail"}
    assert {f["id"] for f in doc["findings"]}.isdisjoint(NEEDS_CHECKPOINT)
    not_run = {n["id"]: n["scope"] for n in doc["not_run"]}
    assert NEEDS_CHECKPOINT <= set(not_run) and all(not_run[q] == "all" for q in NEEDS_CHECKPOINT)
    assert not_run["Q15"] == "part"
    assert doc["config"]["head"]["enable_aqr"] == {"value": True, "source": "file"}
    assert doc["bias_scale"] is None and doc["reference_points"] is None
    assert doc["aqr"]["state"] == "on"
    by_name = {s["setting"]: s for s in doc["settings"]}
    assert by_name["aqr_config.window_sizes"]["line"] == line_of(AQR_CFG, "window_sizes=[8, 5],")
    assert doc["discarded"]["replaced"][0]["line"] == 68


def test_cli_human_output_fits_80_columns():
    result = run(AQR_CFG)
    assert result.exit_code == 0 and result.stderr == ""
    out = result.stdout
    for text in ("cmt_aqr_voxel0100_r50_800x320_cbgs.py  config", "enable_aqr              True  "
                 "(line 95)", "hidden_dim              256  (cmt_voxel0100_r50_800x320_cbgs.py:262)",
                 "Not checked without a checkpoint", "NONFINITE", "Q15   error:"):
        assert text in out, text
    for line in out.splitlines():
        # longer only for one unbreakable word (a path), never a cut value
        assert len(line) <= 80 or len(line.split()) == 1 or len(line.split()[-1]) > 40, line


def test_every_rule_is_run_or_listed():
    from aqr_cli.analysis.config_lint.lint import _RULES_BY_ID

    assert set(CONFIG_RULE_IDS) - {"Q33"} <= set(_RULES_BY_ID)
    run_ids = set(CONFIG_RULE_IDS)
    for rule in RULES:
        assert rule.id in run_ids or rule.id in NOT_RUN, rule.id
        if rule.id in run_ids and rule.id in NOT_RUN:
            assert NOT_RUN[rule.id][0] == "part", rule.id


# ---------------------------------------------------------------- configs the tests write


def test_second_model_assignment_drops_the_aqr_head(tmp_path):
    """The CMTTEST/bias order: AQR head first, backbone freezing second."""
    cfg = child(tmp_path, head_block() + """
model = dict(img_backbone=dict(frozen_stages=4, norm_eval=True))
""")
    r = lint_config(cfg)
    first, second = line_of(cfg, "model = dict("), line_of(cfg, "model = dict(", 2)
    assert (r.aqr.state, r.aqr.ok) == ("off", False)
    assert "AQR is OFF" in r.aqr.message
    assert f"child.py:{first}" in r.aqr.message and f"child.py:{second}" in r.aqr.message
    assert f"child.py:{line_of(cfg, 'enable_aqr=True')}: enable_aqr=True (discarded)" in r.aqr.lines
    assert f"base.py:{line_of(tmp_path / 'base.py', 'enable_aqr=False')}: enable_aqr=False" in r.aqr.lines
    assert r.setting("head.enable_aqr").source == "base"
    assert "Q32" in ids(r) and "pts_bbox_head.enable_aqr" in next(
        f.message for f in r.findings if f.id == "Q32")
    out = run(cfg).stdout
    assert "off (PROBLEM)" in out and "enable_aqr=True (discarded)" in out


def test_template_strings_from_base(tmp_path):
    base = BASE + "cam_window = 9\n"
    cfg = child(tmp_path, head_block(cam="{{_base_.cam_window}}", ws="{{_base_.cam_window}}"),
                base=base)
    r = lint_config(cfg)
    s = r.setting("aqr_config.window_sizes")
    assert s.value == [9, 5] and (s.source, s.line) == ("file", line_of(cfg, "window_sizes="))
    assert r.shapes.bias_window == 9 and (r.aqr.state, r.aqr.ok) == ("on", True)
    assert "Q9" not in ids(r)  # 9 is odd and the same size as the LAM window


def test_base_chain_two_levels_and_a_list_of_bases(tmp_path):
    write(tmp_path / "cfgs/grand.py", BASE)
    write(tmp_path / "cfgs/mid.py", "_base_ = './grand.py'\n"
          "model = dict(pts_bbox_head=dict(hidden_dim=256, num_query=600))\n")
    write(tmp_path / "cfgs/data.py", "data = dict(train=dict(ann_file='data/t2.pkl'))\n")
    cfg = write(tmp_path / "cfgs/exp.py", "_base_ = ['./mid.py', './data.py']\n" + head_block())
    r = lint_config(cfg)
    grand, mid, data = (str((tmp_path / "cfgs" / n).resolve()) for n in ("grand.py", "mid.py", "data.py"))
    assert r.files == [str(cfg), mid, grand, data]
    assert (r.setting("head.num_query").value, r.setting("head.num_query").file) == (600, mid)
    assert r.setting("head.num_query").line == 2
    assert r.setting("point_cloud_range").file == grand and r.setting("point_cloud_range").line == 1
    assert r.setting("head.enable_aqr").file == str(cfg)
    # data.py replaces the whole `data` of grand.py? No: a _base_ list merges key by key only
    # across the child; two bases defining `data` would be refused by mmcv. Here only data.py
    # and grand.py (through mid.py) define it, so the later base's dict is used.
    assert r.config.train_ann_files == ["data/t2.pkl"]
    assert (r.aqr.state, r.aqr.ok) == ("on", True)


def test_delete_true_drops_aqr_settings_of_the_base(tmp_path):
    base = BASE.replace("enable_aqr=False,", "enable_aqr=True,")
    write(tmp_path / "aqr_base.py", "_base_ = './base.py'\n" + head_block())
    write(tmp_path / "base.py", base)
    cfg = write(tmp_path / "exp.py", """
        _base_ = './aqr_base.py'
        model = dict(
            pts_bbox_head=dict(
                _delete_=True,
                type='CmtHead',
                hidden_dim=256))
        """)
    r = lint_config(cfg)
    assert (r.aqr.state, r.aqr.ok) == ("off", False)
    assert f"exp.py:{line_of(cfg, 'pts_bbox_head=dict(')}" in r.aqr.message
    assert "_delete_=True" in r.aqr.message and "enable_aqr" in r.aqr.message
    assert any(line.endswith("model.pts_bbox_head with _delete_=True") for line in r.aqr.lines)
    assert r.setting("head.enable_aqr").source == "default"
    assert r.deleted and r.deleted[0].path == "model.pts_bbox_head"
    assert "model.pts_bbox_head.aqr_config.window_sizes" in r.deleted[0].lost


def test_delete_true_that_sets_everything_again_loses_nothing(tmp_path):
    cfg = child(tmp_path, head_block())
    r = lint_config(cfg)
    assert r.deleted == [] and (r.aqr.state, r.aqr.ok) == ("on", True)


@pytest.mark.parametrize("keys,shadowed", [
    ("{'attention_bias_generator': dict(lr_mult=1.0), 'bias_scale': dict(lr_mult=2.0)}",
     "bias_scale"),
    ("{'attention_bias_generator': dict(lr_mult=1.0), "
     "'attention_bias_generator.bias_scale': dict(lr_mult=0.5)}", None),
])
def test_custom_keys_shadowing(tmp_path, keys, shadowed):
    cfg = child(tmp_path, head_block() + f"optimizer = dict(paramwise_cfg=dict(custom_keys={keys}))\n")
    r = lint_config(cfg)
    q33 = next((f for f in r.findings if f.id == "Q33"), None)
    if shadowed is None:
        assert q33 is None
        return
    assert q33.severity == "warning" and list(q33.detail["shadowed"]) == [shadowed]
    assert q33.detail["shadowed"][shadowed][0] == "attention_bias_generator"
    assert q33.detail["unmatched"] == []  # needs a full checkpoint


def test_aqr_fully_off(tmp_path):
    cfg = write(tmp_path / "plain.py", BASE.replace("        enable_aqr=False,\n", "")
                .replace("        aqr_config=None,\n", "")
                .replace("        attention_bias_config=None,\n", ""))
    r = lint_config(cfg)
    assert (r.aqr.state, r.aqr.ok) == ("off", True)
    assert "enable_aqr not set (CmtHead default False)" in r.aqr.message
    assert r.setting("head.enable_aqr").source == "default"
    assert ids(r) == {}  # no AQR rule fires on a baseline, and train/val are apart


def test_aqr_settings_without_enable_are_ignored(tmp_path):
    cfg = child(tmp_path, head_block().replace("enable_aqr=True,", ""))
    r = lint_config(cfg)
    assert (r.aqr.state, r.aqr.ok) == ("off", False)
    assert "CmtHead builds no AQR component" in r.aqr.message
    assert any(line.endswith("aqr_config (ignored)") for line in r.aqr.lines)


def test_half_configured(tmp_path):
    cfg = child(tmp_path, "model = dict(pts_bbox_head=dict(enable_aqr=True))\n")
    r = lint_config(cfg)
    assert (r.aqr.state, r.aqr.ok) == ("half", False)
    assert "aqr_config and attention_bias_config are not set" in r.aqr.message
    assert "child.py:2" in r.aqr.message
    assert ids(r)["Q21"] == "error" and ids(r)["Q40"] == "warning"
    # CmtHead's 180x180 / 6x40x100 defaults do not fit this detector's 128x128 / 6x20x50 maps
    bad = {c.name for c in r.checks if c.status == "mismatch"}
    assert bad == {"bev_feature_shape vs detector", "pers_feature_shape vs detector"}


def test_windows_that_do_not_fit_the_maps(tmp_path):
    # Q10: a 21-wide camera window spans 21 rows of a 20-row map; Q9: even bias window 8 vs LAM 9x9
    r = lint_config(child(tmp_path, head_block(cam=21, ws=8)))
    assert ids(r)["Q10"] == "warning" and ids(r)["Q9"] == "warning"
    q10 = next(f for f in r.findings if f.id == "Q10")
    assert q10.detail == {"camera_window": 21, "pers_h": 20}
    # with flash attention in the encoder the LAM is dropped anyway (Q16), so Q10 is only info
    r = lint_config(child(tmp_path, head_block(cam=21, ws=21, enc="PETRMultiheadFlashAttention"),
                          name="flash.py"))
    assert ids(r)["Q10"] == "info" and ids(r)["Q16"] == "warning" and "Q9" not in ids(r)
    r = lint_config(child(tmp_path, head_block(), name="fits.py"))
    assert "Q9" not in ids(r) and "Q10" not in ids(r)


def test_1600x640_shapes_against_an_800x320_detector(tmp_path):
    r = lint_config(child(tmp_path, head_block(cam=15, ws=15, pers="(6, 40, 100)",
                                               bev="(180, 180)")))
    checks = {c.name: c for c in r.checks}
    assert checks["pers_feature_shape vs detector"].status == "mismatch"
    assert "6x20x50" in checks["pers_feature_shape vs detector"].message
    assert checks["bev_feature_shape vs detector"].status == "mismatch"
    assert "checks" in run(r.path).stdout and "mismatch: aqr_config.pers_feature_shape" in run(r.path).stdout


def test_json_stays_valid_with_infinite_values(tmp_path):
    cfg = write(tmp_path / "inf.py", BASE.replace("54.0, 54.0, 3.0]", "54.0, 54.0, 1e999]"))
    doc = run_json(cfg)  # fails on NaN/Infinity tokens
    assert doc["config"]["point_cloud_range"]["value"][-1] is None
    assert ids(lint_config(cfg)) == {}


def test_data_only_config_is_not_a_problem(tmp_path):
    r = lint_config(write(tmp_path / "data_only.py", "data = dict(samples_per_gpu=2)\n"))
    assert (r.aqr.state, r.aqr.ok) == ("unknown", True) and r.findings == []


def test_val_infos_in_the_training_set(tmp_path):
    leaky = BASE.replace("train=dict(ann_file='data/infos_train.pkl')",
                         "train=dict(ann_file=['data/infos_train.pkl', 'data/infos_val.pkl'])")
    r = lint_config(write(tmp_path / "leaky.py", leaky))
    assert ids(r)["Q34"] == "warning"
    assert lint_config(write(tmp_path / "clean.py", BASE)).findings == []


# ---------------------------------------------------------------- routing and several configs


def test_detection_by_content(tmp_path):
    shutil.copy(BASE_CFG, tmp_path / "experiment.cfg")
    assert looks_like_config(tmp_path / "experiment.cfg")
    assert looks_like_config(AQR_CFG)
    assert not looks_like_config(CHECKPOINT)
    write(tmp_path / "notes.pth", "just some words\n")
    assert not looks_like_config(tmp_path / "notes.pth")
    (tmp_path / "weights.py").write_bytes(CHECKPOINT.read_bytes()[:4096])
    assert not looks_like_config(tmp_path / "weights.py")
    result = run(tmp_path / "experiment.cfg")
    assert result.exit_code == 0 and "experiment.cfg  config" in result.stdout
    assert run_json(CHECKPOINT)["kind"] == "checkpoint"


@pytest.mark.parametrize("text,reason", [
    ("import os\nprint('hello')\n", "not an mmcv config"),
    ("model = dict(\n", "syntax error at line"),
])
def test_python_that_is_not_a_config(tmp_path, text, reason):
    path = write(tmp_path / "script.py", text)
    result = run(path)
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith(f"aqr: error: {path}") and reason in result.stderr
    assert len(result.stderr.splitlines()) == 1
    with pytest.raises(ConfigParseError):
        lint_config(path)


def test_config_is_never_executed(tmp_path):
    marker = tmp_path / "ran"
    cfg = child(tmp_path, f"import os\nos.system('touch {marker}')\n" + head_block())
    assert run(cfg).exit_code == 0 and not marker.exists()


def test_several_configs_one_block_each_and_diff(tmp_path):
    a = child(tmp_path, head_block(), name="a.py")
    b = child(tmp_path, head_block(cam=15, ws=15), name="b.py")
    result = run(a, b)
    assert result.exit_code == 0
    assert result.stdout.count("  config\n") == 2 and "findings" in result.stdout
    diff = run(a, b, "--diff")
    assert diff.exit_code == 0
    out = diff.stdout
    assert "aqr_config.window_sizes\n  [1]  [9, 5]" in out and "[2]  [15, 5]" in out
    assert "attention_bias_config.window_size\n" in out
    assert "head.enable_aqr" not in out and "hidden_dim" not in out
    doc = run_json(a, b, "--diff")
    assert [d["setting"] for d in doc["differences"]] == ["aqr_config.window_sizes",
                                                          "attention_bias_config.window_size"]
    assert doc["differences"][0]["values"][1]["line"] == line_of(b, "window_sizes=")
    assert run(a, "--diff").exit_code == 2


def test_diff_against_a_checkpoint_config():
    d = diff_configs([lint_config(AQR_CFG), inspect_checkpoint(CHECKPOINT)])
    # meta['config'] is the same merged config: nothing differs
    assert d.settings == [] and d.same > 50


def test_config_and_checkpoint_together():
    result = run(AQR_CFG, CHECKPOINT)
    assert result.exit_code == 0
    assert "cmt_aqr_voxel0100_r50_800x320_cbgs.py  config" in result.stdout
    assert "cmt_aqr_800x320_head.pth" in result.stdout
    docs = run_json(AQR_CFG, CHECKPOINT)
    assert [d["kind"] for d in docs] == ["config", "checkpoint"]


def test_keys_on_a_config_is_one_error_line():
    result = run(AQR_CFG, "--keys")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f"aqr: error: {AQR_CFG}: an mmcv config has no key "
                                          "tree (--keys is for checkpoints and dumps)"]


def test_readme_documents_the_config_lint():
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Linting a config"):]
    assert "aqr inspect-checkpoint projects/configs/fusion/cmt_aqr_voxel0100_r50_800x320_cbgs.py" in section
    assert "--diff" in section and "not_run" in section
    assert re.search(r"enable_aqr\s+True\s+\(line 95\)", section)


def test_missing_base_leaves_the_state_unknown(tmp_path):
    cfg = write(tmp_path / "m.py", "_base_ = ['./nope.py']\n"
                "model = dict(pts_bbox_head=dict(type='CmtHead'))\n")
    r = lint_config(cfg)
    assert (r.aqr.state, r.aqr.ok) == ("unknown", False)
    assert any("nope.py" in n and "not found" in n for n in r.notes)
    out = run(cfg).stdout
    assert "unknown (PROBLEM)" in out and "not built while AQR is off" not in out


def test_half_configured_by_a_replaced_block(tmp_path):
    """AQR settings in a first `model =` and only enable_aqr in the second."""
    cfg = child(tmp_path, head_block() + "model = dict(pts_bbox_head=dict(enable_aqr=True))\n")
    r = lint_config(cfg)
    assert (r.aqr.state, r.aqr.ok) == ("half", False)
    second = line_of(cfg, "model = dict(", 2)
    assert f"child.py:{second}" in r.aqr.message and "aqr_config" in r.aqr.message
    assert f"child.py:{line_of(cfg, 'aqr_config=dict(')}: aqr_config (discarded)" in r.aqr.lines
