"""Config parsing without exec: the fixture's meta config, refused code, defaults, _base_ merging."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch

from aqr_cli.core.configs import HEAD_DEFAULTS, POINT_CLOUD_RANGE, reference_config
from aqr_cli.io import (
    ConfigParseError,
    aqr_config_from_file,
    aqr_config_from_text,
    extract_aqr_config,
    parse_config_file,
    parse_config_text,
)
from aqr_cli.io.config_parse import merge_a_into_b
from conftest import CHECKPOINT


@pytest.fixture(scope="module")
def meta_config_text() -> str:
    return torch.load(CHECKPOINT, map_location="cpu", weights_only=True)["meta"]["config"]


def _write(path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_fixture_meta_config(meta_config_text):
    parsed = parse_config_text(meta_config_text, label="<meta>")
    assert parsed.unparsed == {} and parsed.skipped == []
    assert parsed.get("gpu_ids") == list(range(8))  # `range(0, 8)` in pretty_text
    assert parsed.get(("optimizer", "paramwise_cfg", "custom_keys", "attention_bias_generator.bias_scale")) == {"lr_mult": 0.5}
    cfg = extract_aqr_config(parsed)
    assert cfg.point_cloud_range.value == POINT_CLOUD_RANGE and cfg.point_cloud_range.source == "file"
    assert cfg.voxel_size.value == [0.1, 0.1, 0.2]
    assert cfg.head_type.value == "CmtHead"
    assert cfg.head["enable_aqr"].value is True and cfg.head["enable_aqr"].source == "file"
    assert cfg.head["hidden_dim"].value == 256
    assert (cfg.head["num_query"].value, cfg.head["num_query"].source) == (900, "default")
    assert cfg.head["use_simple_modulation"].value is False
    assert cfg.aqr_config["window_sizes"].value == [8, 5]
    assert cfg.aqr_config["window_sizes"].source == "file"
    assert cfg.renderer_config["gaussian_sigma"].value == 1.0
    assert (cfg.renderer_config["max_weight_clamp"].value, cfg.renderer_config["max_weight_clamp"].source) == (1.5, "default")
    assert cfg.attention_bias_config["window_size"].value == 8
    assert cfg.attention_bias_config["use_gaussian_window"].value is False
    assert cfg.modulator_config["residual_weight"].value == 0.7
    assert cfg.encoder_attention.value == "PETRMultiheadFlashAttention"
    assert cfg.encoder_attention.source == "file"
    assert cfg.decoder_cross_attention.value == "PETRMultiheadFlashAttention"
    assert cfg.decoder_self_attention.value == "MultiheadAttention"
    # Q34: the HEAD 800x320 base trains on train + val
    assert cfg.val_in_train is True
    assert cfg.val_ann_files == ["data/nuscenes//nuscenes_infos_val.pkl"]
    assert cfg.model_assignments == ["<meta>:475"] and not cfg.model_assigned_twice
    # 'type' is dropped like CmtHead does; the rest matches the reference config exactly
    ref = reference_config("800x320")
    kw = cfg.kwargs("attention_bias_config")
    assert "type" not in kw
    assert kw == {**ref.attention_bias_config, "bev_feature_shape": (128, 128), "pers_feature_shape": (6, 20, 50)}
    assert cfg.kwargs("modulator_config") == ref.modulator_config
    json.dumps(cfg.to_dict(), allow_nan=False)


def test_code_in_config_is_never_run(tmp_path):
    marker = tmp_path / "ran"
    text = f"""
    import os
    from subprocess import call
    marker = {str(marker)!r}
    a = os.system('touch ' + marker)
    b = __import__('os').system('touch ' + marker)
    c = open(marker, 'w')
    d = call(['touch', marker])
    f = lambda: os.system('touch ' + marker)
    def g():
        return os.system('touch ' + marker)
    h = [x for x in range(3)]
    i = (1).__class__
    j = dict(x=eval('1'))
    k = g()
    if True:
        m = 1
    point_cloud_range = [-54, -54.0, -5, 54, 54, 3]
    n = dict(pc=point_cloud_range, s=-point_cloud_range[0] * 2, name='a' + 'b', r=range(2))
    """
    parsed = parse_config_text(textwrap.dedent(text), label="evil.py")
    assert not marker.exists()
    for name in "abcdfhijkm":
        assert name in parsed.unparsed, name
        assert name not in parsed.values
    assert "os.system()" in parsed.unparsed["a"] and "evil.py:" in parsed.unparsed["a"]
    assert "lambda" in parsed.unparsed["f"]
    assert "call" in parsed.unparsed["d"]
    assert any("import os" in s for s in parsed.skipped)
    assert any("def g" in s for s in parsed.skipped)
    assert parsed.values["marker"] == str(marker)
    assert parsed.values["n"] == {"pc": [-54, -54.0, -5, 54, 54, 3], "s": 108, "name": "ab", "r": [0, 1]}
    cfg = extract_aqr_config(parsed)
    assert cfg.point_cloud_range.value == [-54, -54.0, -5, 54, 54, 3]
    assert not marker.exists()


def test_unparsed_model_is_reported_not_defaulted():
    cfg = aqr_config_from_text("model = dict(pts_bbox_head=make_head())\n")
    assert "model" in cfg.unparsed
    assert cfg.renderer_config["gaussian_sigma"].source == "unparsed"
    assert cfg.head["enable_aqr"].source == "unparsed"


def test_missing_keys_get_head_defaults():
    text = """
    model = dict(pts_bbox_head=dict(
        type='CmtHead', hidden_dim=256, enable_aqr=True,
        renderer_config=dict(gaussian_sigma=1.0),
        attention_bias_config=dict(type='AttentionBiasGenerator', window_size=8),
        transformer=dict(decoder=dict(transformerlayers=dict(
            attn_cfgs=[dict(type='MultiheadAttention'), dict(type='PETRMultiheadAttention')],
            operation_order=('self_attn', 'norm', 'cross_attn', 'norm', 'ffn', 'norm'))))))
    """
    cfg = aqr_config_from_text(textwrap.dedent(text))
    r = cfg.renderer_config
    assert (r["gaussian_sigma"].value, r["gaussian_sigma"].source) == (1.0, "file")
    for key in ("render_method", "bev_feature_shape", "pers_feature_shape", "normalize_weights",
                "max_weight_clamp", "min_weight_threshold", "bilinear_radius", "distance_decay"):
        assert r[key].source == "default", key
        assert r[key].value == HEAD_DEFAULTS["renderer_config"][key], key
    b = cfg.attention_bias_config
    assert (b["window_size"].value, b["window_size"].source) == (8, "file")
    assert (b["bev_feature_shape"].value, b["bev_feature_shape"].source) == ((180, 180), "default")
    assert "type" not in b
    m = cfg.modulator_config  # absent from the file: every value is the CmtHead default (Q40)
    assert all(v.source == "default" for v in m.values())
    assert (m["residual_weight"].value, m["normalize_weights"].value) == (0.1, True)
    a = cfg.aqr_config
    assert (a["window_sizes"].value, a["window_sizes"].source) == ([15, 5], "default")
    assert cfg.encoder_attention.value == "MultiFheadFlashAttention"  # the default's typo (Q21)
    assert cfg.encoder_attention.source == "default"
    assert cfg.decoder_self_attention.value == "MultiheadAttention"
    assert cfg.decoder_cross_attention.value == "PETRMultiheadAttention"
    assert cfg.head["num_query"].source == "default"
    assert cfg.point_cloud_range.source == "missing"


def test_aqr_config_update_is_shallow():
    text = """
    model = dict(pts_bbox_head=dict(enable_aqr=True, aqr_config=dict(
        window_sizes=[8, 5],
        encoder_config=dict(type='PETRTransformerDecoder', num_layers=1, transformerlayers=dict(
            attn_cfgs=[dict(type='MultiheadAttention', embed_dims=128, num_heads=4)],
            operation_order=('cross_attn', 'norm', 'ffn', 'norm'))))))
    """
    cfg = aqr_config_from_text(textwrap.dedent(text))
    enc = cfg.aqr_config["encoder_config"]
    assert enc.source == "file"
    # the user's encoder replaces the default one wholesale: no ffn_cfgs merged in from it
    assert "ffn_cfgs" not in enc.value["transformerlayers"]
    assert "return_intermediate" not in enc.value
    assert cfg.encoder_attention.value == "MultiheadAttention" and cfg.encoder_attention.source == "file"
    # hidden_dim is not set: CmtHead's default 128 drives the default embed_dims
    assert (cfg.head["hidden_dim"].value, cfg.head["hidden_dim"].source) == (128, "default")
    assert (cfg.aqr_config["embed_dims"].value, cfg.aqr_config["embed_dims"].source) == (128, "default")
    assert not cfg.decoder_cross_attention.value and cfg.decoder_cross_attention.source == "missing"


def test_unknown_component_key_is_noted():
    cfg = aqr_config_from_text("model = dict(pts_bbox_head=dict(renderer_config=dict(sigma=1.0)))\n")
    assert cfg.renderer_config["sigma"].source == "file"
    assert any("renderer_config.sigma is not a constructor argument" in n for n in cfg.notes)


def test_base_merge_delete_and_double_model(tmp_path):
    _write(tmp_path / "_base_" / "base.py", """
        point_cloud_range = [-54.0, -54.0, -5.0, 54.0, 54.0, 3.0]
        voxel_size = [0.1, 0.1, 0.2]
        data_root = 'data/nuscenes/'
        data = dict(
            train=dict(type='CBGSDataset', dataset=dict(
                ann_file=[data_root + 'nuscenes_infos_train.pkl', data_root + 'nuscenes_infos_val.pkl'])),
            val=dict(ann_file=data_root + 'nuscenes_infos_val.pkl'))
        model = dict(
            img_backbone=dict(type='ResNet', depth=50, frozen_stages=-1),
            pts_voxel_layer=dict(voxel_size=voxel_size, point_cloud_range=point_cloud_range),
            pts_bbox_head=dict(
                type='CmtHead', hidden_dim=256, aqr_config=None,
                renderer_config=dict(render_method='gaussian', gaussian_sigma=2.0, bilinear_radius=2.0),
                modulator_config=dict(residual_weight=0.3, normalize_weights=False),
                bbox_coder=dict(pc_range=point_cloud_range)))
        """)
    child = _write(tmp_path / "configs" / "aqr.py", """
        _base_ = ['../_base_/base.py']
        model = dict(img_backbone=dict(frozen_stages=4))
        model = dict(
            pts_bbox_head=dict(
                _delete_=False,
                enable_aqr=True,
                aqr_config=dict(_delete_=True, window_sizes=[8, 5]),
                renderer_config=dict(gaussian_sigma=1.0),
                modulator_config=dict(_delete_=True, residual_weight=0.7)))
        pc = {{_base_.point_cloud_range}}
        """)
    parsed = parse_config_file(child)
    assert [p.endswith("base.py") for p in parsed.bases] == [True]
    assert parsed.unparsed == {} and parsed.complete
    # Q32: the first `model = ...` of the child is discarded
    assert len(parsed.duplicates["model"]) == 2
    assert parsed.get("model.img_backbone") == {"type": "ResNet", "depth": 50, "frozen_stages": -1}
    assert parsed.get("pc") == parsed.get("point_cloud_range")
    assert "_delete_" not in json.dumps(parsed.values)
    cfg = extract_aqr_config(parsed)
    assert cfg.model_assigned_twice
    assert len(cfg.model_assignments) == 3  # base once, child twice
    assert cfg.voxel_size.value == [0.1, 0.1, 0.2]
    assert cfg.head["pc_range"].value == [-54.0, -54.0, -5.0, 54.0, 54.0, 3.0]
    r = cfg.renderer_config  # merged recursively with the base
    assert (r["gaussian_sigma"].value, r["bilinear_radius"].value, r["render_method"].source) == (1.0, 2.0, "file")
    m = cfg.modulator_config  # _delete_=True: the base's keys are gone, CmtHead defaults return
    assert (m["residual_weight"].value, m["residual_weight"].source) == (0.7, "file")
    assert (m["normalize_weights"].value, m["normalize_weights"].source) == (True, "default")
    assert cfg.aqr_config["window_sizes"].value == [8, 5]
    assert cfg.aqr_config["pc_range"].value == [-54.0, -54.0, -5.0, 54.0, 54.0, 3.0]
    assert cfg.val_in_train is True
    assert cfg.train_ann_files == ["data/nuscenes/nuscenes_infos_train.pkl", "data/nuscenes/nuscenes_infos_val.pkl"]


def test_base_dict_over_none_without_delete_is_noted(tmp_path):
    _write(tmp_path / "base.py", "model = dict(pts_bbox_head=dict(aqr_config=None))\n")
    child = _write(tmp_path / "child.py", """
        _base_ = './base.py'
        model = dict(pts_bbox_head=dict(aqr_config=dict(window_sizes=[8, 5])))
        """)
    cfg = aqr_config_from_file(child)
    assert cfg.aqr_config["window_sizes"].value == [8, 5]
    assert any("mmcv refuses this" in n for n in cfg.notes)


def test_missing_base_makes_missing_keys_unparsed(tmp_path):
    child = _write(tmp_path / "child.py", """
        _base_ = ['./nowhere.py']
        model = dict(pts_bbox_head=dict(renderer_config=dict(gaussian_sigma=1.0)))
        """)
    parsed = parse_config_file(child)
    assert not parsed.complete and parsed.unresolved_bases
    cfg = extract_aqr_config(parsed)
    assert cfg.renderer_config["gaussian_sigma"].source == "file"
    assert cfg.renderer_config["render_method"].source == "unparsed"


def test_base_cycle_and_syntax_errors(tmp_path):
    a = _write(tmp_path / "a.py", "_base_ = './b.py'\nx = 1\n")
    _write(tmp_path / "b.py", "_base_ = './a.py'\ny = 2\n")
    with pytest.raises(ConfigParseError, match="cycle"):
        parse_config_file(a)
    bad = _write(tmp_path / "bad.py", "model = dict(\n")
    with pytest.raises(ConfigParseError) as e:
        parse_config_file(bad)
    assert "bad.py" in str(e.value) and "syntax error" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ConfigParseError, match="no such file"):
        parse_config_file(tmp_path / "absent.py")


def test_merge_semantics_direct():
    base = {"a": {"x": 1, "y": {"z": 2}}, "b": [1, 2]}
    child = {"a": {"y": {"w": 3}}, "b": [3]}
    assert merge_a_into_b(child, base) == {"a": {"x": 1, "y": {"z": 2, "w": 3}}, "b": [3]}
    assert merge_a_into_b({"a": {"_delete_": True, "q": 0}}, base)["a"] == {"q": 0}


def test_guards_against_huge_values():
    from aqr_cli.io.errors import ConfigBudgetError

    parsed = parse_config_text("b = 2 ** 10**6\nc = list(range(3))\n")
    assert set(parsed.unparsed) == {"b", "c"}
    for text in ("a = 'x' * 10**9\n", "d = range(10**12)\n"):
        with pytest.raises(ConfigBudgetError, match="more than 1000000 items"):
            parse_config_text(text)
