"""Safe loading of checkpoints and debug dumps: fixtures, every format variant, every bad input."""

from __future__ import annotations

import argparse
import builtins
import importlib.util
import os
import pickle
import random
import sys
import types
import zipfile
from collections import OrderedDict

import numpy as np
import pytest
import torch

from aqr_cli.core.configs import CLASS_NAMES
from aqr_cli.io import LoadError, load_checkpoint, load_dump, load_file
from aqr_cli.io.placeholders import (
    Box3DMode,
    DataContainer,
    InertRecord,
    LiDARInstance3DBoxes,
)
from aqr_cli.io.rebuild import allowed_global_names
from aqr_cli.io.safe_load import safe_torch_load
from conftest import CHECKPOINT, DUMP, DUMP_TRAIN


def _sd(prefix: str = "") -> OrderedDict:
    return OrderedDict([(f"{prefix}head.weight", torch.arange(6.0).reshape(2, 3)),
                        (f"{prefix}head.bias", torch.tensor([0.5, -0.5]))])


def _assert_one_line_error(exc_info, path) -> str:
    msg = str(exc_info.value)
    assert os.path.basename(str(path)) in msg
    assert "\n" not in msg
    return msg


@pytest.fixture
def fake_modules(monkeypatch):
    """Register throwaway classes under upstream module paths, for pickling only."""
    def make(full_name: str, base: type = object, **attrs):
        module_name, _, cls_name = full_name.rpartition(".")
        parts = module_name.split(".")
        for i in range(1, len(parts) + 1):
            name = ".".join(parts[:i])
            if name not in sys.modules:
                monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
        cls = type(cls_name, (base,), dict(attrs, __module__=module_name, __qualname__=cls_name))
        setattr(sys.modules[module_name], cls_name, cls)
        return cls

    return make


# ---------------------------------------------------------------- the fixture files


def test_fixture_checkpoint_loads_with_weights_only():
    lf = load_file(CHECKPOINT)
    assert (lf.kind, lf.format, lf.container) == ("checkpoint", "mmcv1-runner", "zip")
    assert not lf.trusted
    assert lf.size_bytes == 5851013
    assert lf.meta.epoch == 6 and lf.meta.iter == 28128
    assert lf.meta.versions == {"mmcv": "1.7.2", "mmdet": "2.28.2", "mmdet3d": "1.0.0rc6",
                                "mmseg": "0.30.0"}
    assert lf.meta.config_name == "cmt_aqr_voxel0100_r50_800x320_cbgs.py"
    assert lf.meta.classes == list(CLASS_NAMES)  # stored as a tuple, normalised to a list
    assert lf.meta.seed == 20240917
    assert lf.meta.time == "Tue Nov 24 04:11:30 2026"
    assert len(lf.meta.config_text) == 28381
    assert lf.has_optimizer is False
    # The fixture README's state_dict table lists 34 entries (27 parameters of the head, the
    # renderer kernel and 6 bias-generator tensors).
    assert len(lf.state_dict) == 34
    assert all(k.startswith("pts_bbox_head.") for k in lf.state_dict)
    assert lf.state_dict["pts_bbox_head.attention_bias_generator.bias_scale"].shape == (1,)
    plain = torch.load(CHECKPOINT, map_location="cpu", weights_only=True)["state_dict"]
    assert list(lf.state_dict) == list(plain)
    assert all(torch.equal(lf.state_dict[k], plain[k]) for k in plain)
    assert lf.notes == []


def test_fixture_checkpoint_memory_mapped():
    lf = load_file(CHECKPOINT, mmap=True)
    assert lf.mmapped
    ref = load_file(CHECKPOINT, mmap=False)
    assert not ref.mmapped
    assert all(torch.equal(lf.state_dict[k], ref.state_dict[k]) for k in ref.state_dict)


def test_fixture_dump_numpy2_names():
    lf = load_file(DUMP)
    assert (lf.kind, lf.format) == ("debug_dump", "debug-dump")
    d = lf.dump
    assert d.iteration == 100 and lf.meta.iter == 100
    assert list(d.tensors) == ["weight_map_bev", "weight_map_pers", "lidar_weights", "camera_weights",
                               "pts_bev", "modulated_bev_features", "modulated_pers_features",
                               "original_bev_features", "original_pers_features"]
    assert d.tensors["weight_map_bev"].shape == (1, 128, 128)
    assert d.batch_size == 1 and d.num_queries == 900
    assert d.missing_keys == [] and d.extra_keys == []
    meta = d.img_metas[0]
    assert len(meta["lidar2img"]) == 6
    assert all(isinstance(m, np.ndarray) and m.dtype == np.float64 and m.shape == (4, 4)
               for m in meta["lidar2img"])
    assert meta["img_norm_cfg"]["mean"].dtype == np.float32
    assert d.gt_boxes == [None] and d.gt_labels == [None] and d.box_mode == [None]
    assert lf.state_dict == {}


def test_fixture_train_dump_without_mmcv_or_mmdet3d():
    for mod in ("mmcv", "mmdet3d"):
        assert importlib.util.find_spec(mod) is None, f"{mod} must not be installed for this test"
    lf = load_file(DUMP_TRAIN)
    assert "mmcv" not in sys.modules and "mmdet3d" not in sys.modules
    assert not lf.trusted
    d = lf.dump
    assert d.iteration == 200
    boxes, labels = d.gt_boxes[0], d.gt_labels[0]
    assert boxes.shape == (7, 9) and boxes.dtype == torch.float32
    assert labels.dtype == torch.int64 and labels.tolist() == [0, 1, 8, 0, 3, 5, 9]
    assert torch.allclose(boxes[0, :3], torch.tensor([1.6, 14.2, -1.76]))
    assert d.box_mode[0] == 0 and d.box_mode[0].name == "LIDAR"
    meta = d.img_metas[0]
    assert meta["box_type_3d"] == "LiDARInstance3DBoxes"
    assert int(meta["box_mode_3d"]) == 0
    assert meta["gt_bboxes_3d"]["box_dim"] == 9 and meta["gt_bboxes_3d"]["with_yaw"] is True
    assert torch.equal(meta["gt_labels_3d"], labels)
    # the stand-ins themselves stay reachable in the raw object
    raw_meta = lf.raw["img_metas"][0]
    dc = raw_meta["gt_bboxes_3d"]
    assert isinstance(dc, DataContainer) and dc.cpu_only is True and dc.pad_dims == 2
    assert isinstance(dc.data, LiDARInstance3DBoxes) and len(dc.data) == 7
    assert torch.allclose(dc.data.gravity_center[:, 2], boxes[:, 2] + boxes[:, 5] / 2)
    assert raw_meta["box_mode_3d"] is Box3DMode.LIDAR
    assert raw_meta["box_type_3d"] is LiDARInstance3DBoxes


def test_train_dump_tensors_equal_the_eval_dump():
    train, ref = load_file(DUMP_TRAIN).dump, load_file(DUMP).dump
    assert list(train.tensors) == list(ref.tensors)
    for name, t in ref.tensors.items():
        u = train.tensors[name]
        assert torch.equal(u, t), name
        assert (u.dtype, u.shape, u.stride(), u.storage_offset()) == (t.dtype, t.shape, t.stride(), t.storage_offset())
    lw, cw = train.tensors["lidar_weights"], train.tensors["camera_weights"]
    assert lw.untyped_storage().data_ptr() == cw.untyped_storage().data_ptr()
    m_train, m_ref = train.img_metas[0], ref.img_metas[0]
    for key in ("filename", "ori_shape", "img_shape", "pad_shape", "scale_factor", "sample_idx",
                "pts_filename", "transformation_3d_flow", "pcd_scale_factor"):
        assert m_train[key] == m_ref[key], key
    assert all(np.array_equal(a, b) for a, b in zip(m_train["lidar2img"], m_ref["lidar2img"]))
    assert np.array_equal(m_train["pcd_trans"], m_ref["pcd_trans"])
    assert torch.equal(m_train["pcd_rotation"], m_ref["pcd_rotation"])
    assert "flip" not in m_train and "rot_degree" not in m_train


def test_expect_kind():
    with pytest.raises(LoadError, match="expected a checkpoint"):
        load_checkpoint(DUMP)
    with pytest.raises(LoadError, match="expected an AQR debug dump"):
        load_dump(CHECKPOINT)
    assert load_dump(DUMP_TRAIN).kind == "debug_dump"


def test_allow_list_names_both_numpy_spellings():
    names = allowed_global_names()
    for n in ("numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
              "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar", "numpy.ndarray",
              "numpy.dtype", "numpy.dtypes.Float64DType", "numpy.dtypes.Float32DType",
              "mmcv.parallel.data_container.DataContainer",
              "mmdet3d.core.bbox.structures.lidar_box3d.LiDARInstance3DBoxes",
              "mmdet3d.core.bbox.structures.box_3d_mode.Box3DMode",
              "mmdet3d.structures.bbox_3d.lidar_box3d.LiDARInstance3DBoxes",
              "mmdet3d.structures.bbox_3d.box_3d_mode.Box3DMode"):
        assert n in names, n


# ---------------------------------------------------------------- format variants


def test_bare_state_dict(tmp_path):
    p = tmp_path / "bare.pth"
    torch.save(_sd(), p)
    lf = load_file(p)
    assert (lf.kind, lf.format) == ("checkpoint", "bare-state-dict")
    assert list(lf.state_dict) == ["head.weight", "head.bias"]
    assert lf.meta.epoch is None and lf.notes == []


def test_module_prefix_stripped(tmp_path):
    p = tmp_path / "ddp.pth"
    torch.save({"state_dict": _sd("module."), "meta": {"epoch": 1}}, p)
    lf = load_file(p)
    assert lf.format == "mmcv1-runner"
    assert list(lf.state_dict) == ["head.weight", "head.bias"]
    assert any("stripped 'module.' prefix" in n for n in lf.notes)


def test_model_wrapper(tmp_path):
    p = tmp_path / "model.pth"
    torch.save({"model": _sd("module."), "epoch": 3, "optimizer": {"state": {}, "param_groups": []}}, p)
    lf = load_file(p)
    assert lf.format == "model-wrapper"
    assert lf.meta.epoch == 3 and lf.has_optimizer
    assert list(lf.state_dict) == ["head.weight", "head.bias"]


def test_state_dict_wrapper(tmp_path):
    p = tmp_path / "sdw.pth"
    torch.save({"state_dict": _sd()}, p)
    lf = load_file(p)
    assert lf.format == "state-dict-wrapper" and not lf.has_optimizer


def test_mmengine_checkpoint(tmp_path, fake_modules):
    hist_cls = fake_modules("mmengine.logging.history_buffer.HistoryBuffer")
    buf = hist_cls()
    buf.__dict__.update(max_length=2, _log_history=np.array([0.5, 0.25]), _count_history=np.array([1, 1]))
    ckpt = {
        "meta": {"epoch": 2, "iter": 100, "cfg": "model = dict(type='CmtDetector')\n",
                 "experiment_name": "cmt_aqr_20240101_000000", "mmengine_version": "0.10.3",
                 "dataset_meta": {"classes": ("car", "truck")}, "seed": 7, "time": "20240101_000000"},
        "state_dict": _sd("module."),
        "message_hub": {"log_scalars": {"train/loss": buf}, "runtime_info": {"epoch": 2, "iter": 100}},
        "optimizer": {"state": {0: {"step": torch.tensor(3.0)}}, "param_groups": [{"lr": 1e-4}]},
        "param_schedulers": [],
    }
    p = tmp_path / "mmengine.pth"
    torch.save(ckpt, p)
    for name in [n for n in sys.modules if n == "mmengine" or n.startswith("mmengine.")]:
        del sys.modules[name]  # the loader must not find (or need) the class
    lf = load_file(p)
    assert lf.format == "mmengine"
    assert (lf.meta.epoch, lf.meta.iter, lf.meta.seed) == (2, 100, 7)
    assert lf.meta.versions == {"mmengine": "0.10.3"}
    assert lf.meta.classes == ["car", "truck"]
    assert lf.meta.config_name == "cmt_aqr_20240101_000000"
    assert lf.meta.config_text.startswith("model = dict(")
    assert lf.has_optimizer
    assert list(lf.state_dict) == ["head.weight", "head.bias"]
    hub = lf.raw["message_hub"]["log_scalars"]["train/loss"]
    assert np.array_equal(hub.data[0], [0.5, 0.25])


def test_mmdet3d_1x_names_and_numpy1_scalar(tmp_path, fake_modules):
    boxes_cls = fake_modules("mmdet3d.structures.bbox_3d.lidar_box3d.LiDARInstance3DBoxes")
    boxes = boxes_cls()
    boxes.__dict__.update(tensor=torch.zeros(2, 7), box_dim=7, with_yaw=True)
    dump = {k: torch.zeros(1, 4) for k in ("lidar_weights", "camera_weights")}
    dump.update(weight_map_bev=torch.zeros(1, 8, 8), weight_map_pers=torch.zeros(1, 6, 4, 5),
                pts_bev=torch.zeros(1, 4, 2))
    dump["iteration"] = 5
    dump["img_metas"] = [{"gt_bboxes_3d": boxes, "scale": np.float64(0.5)}]
    p = tmp_path / "dump_np2.pth"
    torch.save(dump, p)
    for name in [n for n in sys.modules if n == "mmdet3d" or n.startswith("mmdet3d.")]:
        del sys.modules[name]
    # rewrite the numpy-2 scalar global into its numpy-1 spelling, as an old dump has it
    q = tmp_path / "dump_np1.pth"
    with zipfile.ZipFile(p) as src, zipfile.ZipFile(q, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith("data.pkl"):
                assert b"numpy._core.multiarray\nscalar" in data
                data = data.replace(b"numpy._core.multiarray\nscalar", b"numpy.core.multiarray\nscalar")
            dst.writestr(info.filename, data)
    for path in (p, q):
        lf = load_file(path)
        assert lf.kind == "debug_dump" and lf.dump.iteration == 5
        assert lf.dump.gt_boxes[0].shape == (2, 7)
        assert lf.dump.img_metas[0]["scale"] == 0.5
        assert "debug dump lacks" in " ".join(lf.notes)


def test_safetensors(tmp_path):
    from safetensors.torch import save_file

    p = tmp_path / "weights.safetensors"
    save_file(dict(_sd("module.")), str(p), metadata={"epoch": "4", "iter": "400"})
    lf = load_file(p)
    assert (lf.format, lf.container) == ("safetensors", "safetensors")
    assert (lf.meta.epoch, lf.meta.iter) == (4, 400)
    assert sorted(lf.state_dict) == ["head.bias", "head.weight"]  # safetensors keeps no order
    assert torch.equal(lf.state_dict["head.weight"], _sd()["head.weight"])


def test_safetensors_without_package(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    p = tmp_path / "weights.safetensors"
    save_file(dict(_sd()), str(p))
    monkeypatch.setitem(sys.modules, "safetensors", None)
    with pytest.raises(LoadError, match="needs the 'safetensors' package") as e:
        load_file(p)
    _assert_one_line_error(e, p)


def test_legacy_torch_format_loads(tmp_path):
    p = tmp_path / "legacy.pth"
    torch.save({"state_dict": _sd(), "meta": {"epoch": 9}}, p, _use_new_zipfile_serialization=False)
    lf = load_file(p, mmap=True)
    assert lf.container == "legacy" and not lf.mmapped
    assert lf.meta.epoch == 9 and list(lf.state_dict) == ["head.weight", "head.bias"]


# ---------------------------------------------------------------- bad input


class _Payload:
    """Unpickling this runs ``fn(*args)``."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _touch_command(marker) -> str:
    return f"touch {marker}"


@pytest.mark.parametrize("container", ["zip", "legacy", "plain-pickle"])
def test_hostile_pickle_is_kept_inert_and_not_run(tmp_path, container):
    marker = tmp_path / "pwned"
    obj = {"state_dict": _sd(), "meta": {"x": _Payload(os.system, _touch_command(marker))}}
    p = tmp_path / f"hostile_{container}.pth"
    if container == "plain-pickle":
        p.write_bytes(pickle.dumps(obj, protocol=4))
        with pytest.raises(LoadError, match="plain Python pickle") as e:
            load_file(p)
        _assert_one_line_error(e, p)
    else:
        torch.save(obj, p, _use_new_zipfile_serialization=(container == "zip"))
        lf = load_file(p)
        rec = lf.raw["meta"]["x"]
        assert isinstance(rec, InertRecord) and rec.global_name == f"{os.system.__module__}.system"
        assert rec.args == (_touch_command(marker),)
        assert lf.records == [f"{os.system.__module__}.system"]
        assert any("inert records" in n for n in lf.notes)
        assert lf.meta.raw["x"] == {"inert_global": rec.global_name, "args": [_touch_command(marker)]}
    assert not marker.exists()


def test_hostile_eval_is_kept_inert(tmp_path):
    marker = tmp_path / "pwned"
    code = f"__import__('os').system({_touch_command(marker)!r})"
    p = tmp_path / "eval.pth"
    torch.save({"state_dict": _sd(), "x": _Payload(builtins.eval, code)}, p)
    lf = load_file(p, trust=True)  # the old flag changes nothing
    # protocol 2 spells builtins as Python 2's __builtin__
    assert lf.raw["x"].global_name in ("builtins.eval", "__builtin__.eval")
    assert lf.raw["x"].args == (code,)
    assert not marker.exists()


def test_harmless_foreign_class_is_an_inert_record(tmp_path):
    p = tmp_path / "namespace.pth"
    torch.save({"state_dict": _sd(), "meta": {"epoch": 2}, "args": argparse.Namespace(lr=0.1)}, p)
    lf = load_file(p)
    assert lf.format == "mmcv1-runner" and lf.meta.epoch == 2 and not lf.trusted
    rec = lf.raw["args"]
    assert rec.global_name == "argparse.Namespace" and rec.state == {"lr": 0.1}
    assert lf.records == ["argparse.Namespace"]


def _random_bytes(n: int = 4096) -> bytes:
    rng = random.Random(1234)
    data = bytes(rng.getrandbits(8) for _ in range(n))
    return b"\x13" + data[1:]  # not a pickle / zip / safetensors start


@pytest.mark.parametrize("case, expected", [
    ("missing", "no such file"),
    ("directory", "is a directory"),
    ("empty", "empty file"),
    ("truncated", "truncated or corrupt zip"),
    ("truncated-head", "not a PyTorch checkpoint"),
    ("random", "not a PyTorch checkpoint"),
    ("plain-pickle", "plain Python pickle"),
    ("foreign-zip", "not one written by torch.save"),
    ("list", "holds a list"),
    ("not-a-checkpoint", "not a checkpoint or AQR debug dump"),
    ("bad-safetensors", "not a readable safetensors file"),
])
def test_bad_input_raises_load_error(tmp_path, case, expected):
    p = tmp_path / f"bad_{case.replace('-', '_')}.pth"
    if case == "directory":
        p.mkdir()
    elif case == "empty":
        p.write_bytes(b"")
    elif case == "truncated":
        data = CHECKPOINT.read_bytes()
        p.write_bytes(data[: len(data) // 2])
    elif case == "truncated-head":
        p.write_bytes(CHECKPOINT.read_bytes()[:3])
    elif case == "random":
        p.write_bytes(_random_bytes())
    elif case == "plain-pickle":
        p.write_bytes(pickle.dumps({"state_dict": {}}))
    elif case == "foreign-zip":
        with zipfile.ZipFile(p, "w") as z:
            z.writestr("readme.txt", "hello")
    elif case == "list":
        torch.save([1, 2, 3], p)
    elif case == "not-a-checkpoint":
        torch.save({"learning_rate": 0.1, "notes": "hi"}, p)
    elif case == "bad-safetensors":
        p = tmp_path / "bad.safetensors"
        p.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    with pytest.raises(LoadError) as e:
        load_file(p)
    msg = _assert_one_line_error(e, p)
    assert expected in msg
    assert msg.startswith(str(p))


def test_safe_torch_load_returns_raw_object(tmp_path):
    p = tmp_path / "list.pth"
    torch.save([torch.ones(1)], p)
    raw = safe_torch_load(p)
    assert isinstance(raw.obj, list) and raw.container == "zip" and raw.records == []


def test_auto_mmap_for_large_zip_files(monkeypatch):
    import aqr_cli.io.safe_load as safe_load

    assert not load_file(CHECKPOINT).mmapped  # 5.9 MB: below the threshold
    monkeypatch.setattr(safe_load, "MMAP_MIN_BYTES", 1024)
    assert load_file(CHECKPOINT).mmapped


def test_importing_io_stays_light():
    import subprocess

    code = ("import sys, aqr_cli.io; "
            "print(sorted(m for m in ('torch', 'numpy', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
