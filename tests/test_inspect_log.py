"""inspect-log library: parser and analysis on the real fixture log and on logs built here."""

from __future__ import annotations

import math
import re

import pytest

from aqr_cli.logs.analysis import Thinned, compare_runs, summarize_log
from aqr_cli.logs.parse import LogFormatError, LogParser
from aqr_cli.logs.records import DebugBlock, TrainRecord
from log_samples import (
    BASELINE_AP,
    FIXTURE_LOG,
    baseline_text_log,
    bias_monitor_block,
    head_bias_block,
    json_log,
    mmcv_line,
    mmengine_log,
    write,
)

SPEC_AP = {"car": 0.853, "truck": 0.602, "bus": 0.727, "trailer": 0.423,
           "construction_vehicle": 0.295, "pedestrian": 0.826, "motorcycle": 0.706,
           "bicycle": 0.609, "traffic_cone": 0.700, "barrier": 0.709}


@pytest.fixture(scope="module")
def fixture_run():
    return summarize_log(FIXTURE_LOG)


def test_fixture_last_record_as_printed(fixture_run):
    t = fixture_run.train
    assert fixture_run.format == "mmcv-text"
    assert t.records == 80 and t.iters_per_epoch == 4004
    L = t.last
    assert (L.epoch, L.iter) == (1, 4000)
    assert L.time == 1.840 and L.data_time == 0.035 and L.memory == 22962
    assert L.loss == 10.1469 and L.grad_norm == 41.7388 and L.lr == 1.466e-09
    assert L.losses["loss_cls"] == 0.0842 and L.losses["dn_loss_bbox"] == 0.5228
    assert L.losses["d4.dn_loss_bbox"] == 0.5254 and len(L.losses) == 24
    assert math.isnan(t.first.grad_norm) and t.first.iter == 50
    assert t.memory_peak == 22962
    # 79 records after the first: their median and mean time per iteration
    assert t.time_median == pytest.approx(1.861, abs=5e-4)
    assert 1.85 < t.time_mean < 1.90
    assert fixture_run.skipped["count"] == 0


def test_fixture_validation_and_per_class_ap(fixture_run):
    (v,) = fixture_run.val
    assert (v.epoch, v.iter) == (1, 753)
    m = v.metrics
    assert (m["mAP"], m["NDS"], m["mATE"], m["mASE"], m["mAOE"], m["mAVE"], m["mAAE"]) == \
        (0.6449, 0.6849, 0.3390, 0.2506, 0.3226, 0.2738, 0.1894)
    assert list(v.per_class_ap) == list(SPEC_AP)
    for cls, ap in SPEC_AP.items():
        assert v.per_class_ap[cls] == pytest.approx(ap, abs=6e-4), cls
    assert v.per_class_ap["car"] == pytest.approx((0.7507 + 0.8594 + 0.8915 + 0.9088) / 4)
    assert math.isnan(v.per_class["barrier"]["vel_err"])
    assert v.per_class["traffic_cone"]["trans_err"] == 0.2015


def test_fixture_debug_blocks(fixture_run):
    d = fixture_run.debug
    assert d.blocks == 32 and d.incomplete == 0
    assert d.counters == {"modulation": {1000: 8, 2000: 8, 3000: 8, 4000: 8}}
    first = d.kept[0]
    assert (first.counter, first.order) == (1000, 0)
    assert first.value("lidar_weights_stats", "mean") == 0.679115
    assert first.value("lidar_weights_stats", "std") == 0.178313
    assert first.value("camera_weights_stats", "mean") == 0.759535
    assert first.value("camera_weights_stats", "std") == 0.167935
    assert first.value("weight_map_pers_stats", "max") == 27.524223
    assert first.value("weight_map_bev_stats", "max") == 1.5
    assert first.value("modulation_effect_pers", "relative_change") == 0.291145
    assert [b.order for b in d.kept[:8]] == list(range(8))
    rows = d.per_forward("modulation")
    assert [r["counter"] for r in rows] == [1000, 2000, 3000, 4000]
    assert all(r["ranks"] == 8 for r in rows)


def test_fixture_header_config_and_quirks(fixture_run):
    h = fixture_run.header
    assert h["torch"] == "1.9.0+cu111" and h["mmcv"] == "1.6.0" and h["mmdet"] == "2.24.0"
    assert h["mmdet3d"] == "1.0.0rc5+" and h["cuda_runtime"] == "11.1"
    assert h["gpus"] == [{"ids": list(range(8)), "name": "NVIDIA A100-PCIE-40GB"}]
    assert h["seed"] == 0 and h["max_epochs"] == 1
    assert h["load_checkpoint"] == "ckpts/epoch_20.pth"
    assert h["work_dir"].endswith("cmt_aqr_voxel0100_r50_800x320_cbgs")
    assert h["exp_name"] == "cmt_aqr_voxel0100_r50_800x320_cbgs.py"
    cfg = fixture_run.config
    assert cfg.modulator_config["residual_weight"].value == 0.7
    assert cfg.renderer_config["max_weight_clamp"].value == 1.5
    ids = {f.id for f in fixture_run.config_findings}
    assert {"Q26", "Q27"} <= ids
    assert fixture_run.model_parts == ["aqr_weight_generator", "feature_modulator",
                                       "weight_renderer"]
    assert fixture_run.has_aqr is True


def test_fixture_readings(fixture_run):
    r = {x.id: x for x in fixture_run.debug.readings}
    clamp = r["camera_map_clamp"]
    assert clamp.severity == "warning" and clamp.value == pytest.approx(94.355911)
    assert "not clamped" in clamp.message and "1.5" in clamp.message
    assert r["lidar_weight_mean"].band == "relies on the modality"
    assert r["camera_weight_std"].band == "good discrimination"
    assert r["relative_change_bev"].band == "gentle"
    assert r["relative_change_camera"].band == "strong"
    assert r["camera_vs_bev"].value > 3
    ids = [f.id for f in fixture_run.findings]
    assert ids == ["LOG-NAN-GRAD"]  # only the first record's nan: no spike, no memory growth
    assert fixture_run.findings[0].severity == "info"


def test_json_log_detected_from_content(tmp_path):
    run = summarize_log(write(tmp_path, "run.txt", json_log()))
    assert run.format == "mmcv-json"
    assert run.train.records == 6 and run.train.last.iter == 300 and run.train.last.loss == 7.0
    assert math.isnan(run.train.first.grad_norm)
    assert run.header["torch"] == "1.9.0+cu111" and run.header["seed"] == 0
    v = run.last_val
    assert v.metrics["mAP"] == 0.6575 and v.per_class_ap["car"] == pytest.approx(0.859)
    assert math.isnan(v.per_class["barrier"]["vel_err"])
    assert run.config is not None and run.has_aqr is False


def test_mmengine_log(tmp_path):
    run = summarize_log(write(tmp_path, "mmengine.log", mmengine_log()))
    assert run.format == "mmengine-text"
    t = run.train
    assert t.records == 5 and t.iters_per_epoch == 4004 and t.last.iter == 250
    assert t.last.lr == 1.429e-06 and t.last.memory == 22551 and t.last.loss == 14.4
    assert t.last.losses == {"loss_cls": 0.1936, "loss_bbox": 1.0405}
    assert len(run.val) == 1  # the progress line carries no metrics
    assert run.last_val.metrics["NDS"] == 0.6908
    assert run.last_val.per_class_ap["pedestrian"] == pytest.approx(0.840)
    assert run.skipped["count"] == 0


def test_log_cut_at_start_has_no_header(tmp_path):
    lines = FIXTURE_LOG.read_bytes().split(b"\n")
    warning = (b"/data/miniconda/envs/torch/lib/python3.8/site-packages/mmcv/runner/hooks/"
               b"optimizer.py:55: FutureWarning: Non-finite norm encountered")
    assert b"Epoch [1][800/4004]" in lines[1709]
    run = summarize_log(write(tmp_path, "mid.log", b"\n".join([warning] + lines[1709:])))
    assert "torch" not in run.header and run.header["exp_name"].startswith("cmt_aqr")
    assert run.config is None and run.config_findings == [] and run.model_parts is None
    assert run.train.first.iter == 800 and run.train.records == 65
    assert run.train.last.iter == 4000 and run.train.last.loss == 10.1469
    assert any("starts mid-run" in n for n in run.notes)
    assert any("no config" in n for n in run.notes)
    assert run.debug.blocks == 32 and run.last_val.metrics["mAP"] == 0.6449
    assert run.has_aqr is True  # from the debug prints alone


def test_log_cut_at_end_mid_record(tmp_path):
    data = FIXTURE_LOG.read_bytes()
    cut = data.index(b"Epoch [1][4000/4004]") + 200
    run = summarize_log(write(tmp_path, "cut.log", data[:cut]))
    assert run.train.last.iter == 3950 and run.train.records == 79
    assert run.skipped["reasons"] == {"record cut at end of file": 1}
    assert run.val == [] and run.debug.blocks == 32
    assert "LOG-SKIPPED" in {f.id for f in run.findings}


def test_crlf_colour_codes_and_bad_bytes_read_alike(tmp_path, fixture_run):
    data = FIXTURE_LOG.read_bytes()
    data = data.replace(b" - mmdet - INFO - Epoch [", b" - mmdet - INFO - \x1b[32mEpoch [")
    data = data.replace(b"grad_norm: ", b"grad_norm: \x1b[0m")
    data = data.replace(b"projects.mmdet3d_plugin\n", b"projects.mmdet3d_plugin \xff\xfe\xfa\n")
    data = data.replace(b"\n", b"\r\n")
    run = summarize_log(write(tmp_path, "dirty.log", data))
    assert run.skipped["decode_errors"] > 0 and run.skipped["ansi_lines"] >= 80
    assert run.train.records == 80 and run.train.last.loss == 10.1469
    assert run.train.last.grad_norm == 41.7388 and run.last_val.metrics["NDS"] == 0.6849
    assert run.debug.blocks == 32 and run.debug.incomplete == 0
    assert run.header["torch"] == fixture_run.header["torch"]
    assert [f.id for f in run.config_findings] == [f.id for f in fixture_run.config_findings]


def test_baseline_without_aqr(tmp_path):
    run = summarize_log(write(tmp_path, "base.log", baseline_text_log()))
    assert run.has_aqr is False and run.model_parts == [] and run.debug.blocks == 0
    assert run.debug.readings == []
    assert run.train.time_median == 0.647 and run.train.memory_peak == 21587
    assert run.train.last.loss == pytest.approx(9.927)
    assert run.last_val.per_class_ap == pytest.approx(BASELINE_AP)


def test_new_scheme_bias_prints(tmp_path):
    text = "\n".join([
        mmcv_line("Epoch [1][50/100]\tlr: 1.0e-06, time: 1.0, data_time: 0.1, memory: 100, "
                  "loss: 5.0, grad_norm: 1.0"),
        bias_monitor_block(1000),
        # another rank's warning lands inside the next block; it must not end it
        bias_monitor_block(2000, scale=2.5, prefer_lidar=95.0).replace(
            "   \U0001f4ca Input Weights", "/x/y.py:1: UserWarning: noise\n   \U0001f4ca Input Weights"),
        head_bias_block(1000)])
    run = summarize_log(write(tmp_path, "bias.log", text + "\n"))
    d = run.debug
    assert d.by_kind == {"bias_monitor": 2, "head_bias": 1} and d.incomplete == 0
    b: DebugBlock = d.kept[0]
    assert b.kind == "bias_monitor" and b.counter == 1000
    assert b.sections["scale"] == {"learnable": True, "value": 2.5, "min": 0.5, "max": 5.0,
                                   "grad": 1.234e-05, "requires_grad": True}
    assert b.sections["bias"] == {"mean": 0.0012, "std": 0.0345, "min": -2.5, "max": 2.5}
    assert b.sections["bias_bev"] == {"mean": 0.001, "std": 0.03}
    assert b.sections["bias_camera"] == {"mean": 0.0015, "std": 0.04}
    assert b.sections["lidar"] == {"mean": 0.1234, "std": 0.4567, "min": -0.9, "max": 0.95}
    assert b.sections["camera"]["max"] == 0.9
    assert b.sections["ratios"] == pytest.approx({"positive": 0.006, "negative": 0.994,
                                                  "strong_positive": 0.001,
                                                  "strong_negative": 0.0005, "near_zero": 0.992})
    assert b.sections["preference"] == pytest.approx({"prefer_lidar": 0.45, "prefer_camera": 0.50,
                                                      "balanced": 0.30})
    assert d.kept[1].sections["lidar"]["mean"] == 0.1234  # read past the interleaved warning
    h = d.kept[2]
    assert h.kind == "head_bias" and h.sections["bias"]["max"] == 2.5
    r = {x.id: x for x in d.readings}
    assert r["bias_scale"].band == "normal" and "stuck" in r["bias_scale"].message
    assert r["modality_preference"].band == "single-modality collapse"
    assert r["modality_preference"].value == pytest.approx(0.95)
    assert r["bias_near_zero"].band == "by construction" and "Q11" in r["bias_near_zero"].message


def test_comparison_deltas(tmp_path, fixture_run):
    base = summarize_log(write(tmp_path, "base.log", baseline_text_log()))
    (c,) = compare_runs([base, fixture_run], base)
    assert c.path == str(FIXTURE_LOG)
    assert c.mAP_delta == pytest.approx(0.6449 - 0.6575)
    assert c.NDS_delta == pytest.approx(0.6849 - 0.6908)
    assert c.tp_deltas["mATE"] == pytest.approx(0.3390 - 0.3353)
    assert c.per_class_ap_delta["bicycle"] == pytest.approx(0.609325 - 0.641, abs=1e-9)
    assert c.time_per_iter_ratio == pytest.approx(1.861 / 0.647, rel=1e-3)
    assert c.memory_delta == 22962 - 21587
    assert c.loss_delta == pytest.approx(10.1469 - 9.927)
    assert compare_runs([base, fixture_run], None) == []


def test_findings_nan_spike_memory(tmp_path):
    lines = []
    for k in range(30):
        loss = 40.0 if k == 20 else 10.0 - 0.01 * k
        gn = "nan" if k in (0, 12) else "30.0"
        mem = 20000 + 100 * k
        lines.append(mmcv_line(f"Epoch [1][{(k + 1) * 10}/1000]\tlr: 1e-06, time: 1.0, "
                               f"data_time: 0.1, memory: {mem}, loss: {loss}, grad_norm: {gn}"))
    run = summarize_log(write(tmp_path, "bad.log", "\n".join(lines) + "\n"))
    f = {x.id: x for x in run.findings}
    assert f["LOG-NAN-GRAD"].severity == "warning" and f["LOG-NAN-GRAD"].detail["iters"] == [10, 130]
    assert f["LOG-LOSS-SPIKE"].detail["count"] == 1
    assert f["LOG-LOSS-SPIKE"].detail["spikes"][0]["iter"] == 210
    assert f["LOG-MEMORY-GROWTH"].detail["last_mb"] == 22900


@pytest.mark.parametrize("content,needle", [
    (b"", "empty"), (b"\n  \n", "empty"), (b"PK\x03\x04rest", "checkpoint"),
    (b"\x80\x02}q\x00.", "checkpoint"), (bytes(range(256)) * 10, "binary"),
])
def test_not_a_log(tmp_path, content, needle):
    with pytest.raises(LogFormatError, match=needle):
        summarize_log(write(tmp_path, "x.log", content))


def test_text_without_records(tmp_path):
    with pytest.raises(LogFormatError, match="no training records"):
        summarize_log(write(tmp_path, "notes.txt", "hello\nEpoch is a word\n" * 50))


def test_parser_counts_unreadable_records(tmp_path):
    text = "\n".join([mmcv_line("Epoch [1][50/100]\tlr: 1e-06, time: 1.0, loss: 2.0"),
                      mmcv_line("Epoch [1][100/100]\tlr: 1e-06, time: what, loss: 2.0"),
                      mmcv_line("Epoch [1][]broken"), ""])
    p = LogParser(write(tmp_path, "s.log", text))
    recs = [e for e in p.events() if isinstance(e, TrainRecord)]
    assert [r.iter for r in recs] == [50]
    assert sum(p.skipped.values()) == 2


def test_thinned_keeps_a_fixed_stride_and_bounded_size():
    t = Thinned(8)
    for i in range(1000):
        t.add(i)
    assert len(t.items) <= 8 and t.items == list(range(0, 1000, t.stride))


def test_ranks_printing_the_same_record_count_once(tmp_path):
    lines = []
    for k in range(4):
        rec = mmcv_line(f"Epoch [1][{(k + 1) * 50}/200]\tlr: 1e-06, time: 1.5, data_time: 0.1, "
                        f"memory: 100, loss: {3.0 - k}, grad_norm: 2.0")
        lines += [rec, "projects.mmdet3d_plugin" + rec]  # a second rank, glued to chatter
    run = summarize_log(write(tmp_path, "ranks.log", "\n".join(lines) + "\n"))
    assert run.train.records == 4 and run.train.duplicates == 4
    assert run.train.last.loss == 0.0 and run.train.time_median == 1.5


def test_bias_scale_near_its_bound_uses_the_bias_health_rules(tmp_path):
    text = "\n".join([bias_monitor_block(1000, scale=4.2), bias_monitor_block(2000, scale=4.7)])
    run = summarize_log(write(tmp_path, "scale.log", text + "\n"))
    f = {x.id: x for x in run.findings}
    assert f["BIAS_SCALE_NEAR_MAX"].severity == "warning"
    assert f["BIAS_SCALE_RANGE"].severity == "warning"  # 4.7 > the notes' alarm 4.5
    r = {x.id: x for x in run.debug.readings}
    assert r["bias_scale"].value == 4.7 and r["bias_scale"].band == "alarm"
    assert "stuck" not in r["bias_scale"].message


def test_json_log_over_two_epochs_continues_the_iteration_axis(tmp_path):
    import json

    rows = [json.dumps({"mode": "train", "epoch": e, "iter": i, "time": 1.0, "loss": 1.0})
            for e in (1, 2) for i in (50, 100)]
    run = summarize_log(write(tmp_path, "two.log.json", "\n".join(rows) + "\n"))
    assert [p["x"] for p in run.train.series] == [50, 100, 150, 200]
    assert run.train.epochs == [1, 2]


def test_clamp_inferred_from_bev_maps_without_config(tmp_path):
    """A 2.5+0.6-style log cut before its config: camera maps at 2.5 are within the clamp."""
    data = FIXTURE_LOG.read_text(encoding="utf-8")
    start = data.index("Epoch [1][800/4004]")
    start = data.rindex("\n", 0, start) + 1
    text = data[start:].replace("max: 1.500000", "max: 2.500000")
    text = re.sub(r"(weight_map_pers_stats:\n(?:.*\n){3}\s+max: )[\d.]+", r"\g<1>2.500000", text)
    run = summarize_log(write(tmp_path, "cut25.log", text))
    r = {x.id: x for x in run.debug.readings}["camera_map_clamp"]
    assert run.config is None and r.detail["clamp"] == 2.5 and "BEV map maxima" in r.detail["clamp_source"]
    assert r.band == "within the clamp" and r.value == 2.5 and r.severity == "info"
    mid = summarize_log(write(tmp_path, "cut15.log", data[start:]))
    r = {x.id: x for x in mid.debug.readings}["camera_map_clamp"]
    assert r.detail["clamp"] == 1.5 and r.band == "above the clamp"
