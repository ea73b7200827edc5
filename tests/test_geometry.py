"""CameraRig: loading, validation, img_metas, 1600x640 derivation and point projection."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from aqr_cli.core.configs import CAMERA_NAMES
from aqr_cli.core.errors import AQRInputError
from aqr_cli.core.geometry import CameraRig, camera_visibility, project_points_to_cameras
from aqr_cli.io.rig import default_rig, load_rig

from conftest import DUMP, RIG, ROOT


@pytest.fixture(scope="module")
def rig_json():
    return json.loads(RIG.read_text())


def test_load_rig_matches_golden(golden):
    rig = load_rig(RIG)
    assert rig.camera_names == CAMERA_NAMES
    assert rig.lidar2img.dtype == np.float64
    np.testing.assert_array_equal(rig.lidar2img, golden["lidar2img"])
    assert rig.img_shape == (320, 800) == tuple(golden["cfg_img_hw"])
    assert rig.pad_shape == (320, 800) and rig.ori_shape == (900, 1600)


def test_packaged_copies_are_the_fixture():
    fixture = RIG.read_bytes()
    assert (ROOT / "aqr_cli" / "data" / "camera_rig_800x320.json").read_bytes() == fixture
    assert (ROOT / "sample_data" / "camera_rig_800x320.json").read_bytes() == fixture
    np.testing.assert_array_equal(default_rig().lidar2img, load_rig(RIG).lidar2img)


def test_img_metas_upstream_layout():
    rig = default_rig()
    metas = rig.img_metas(batch_size=2)
    assert len(metas) == 2
    for meta in metas:
        assert len(meta["lidar2img"]) == 6
        assert all(m.shape == (4, 4) and m.dtype == np.float64 for m in meta["lidar2img"])
        assert meta["img_shape"] == [(320, 800, 3)] * 6
        assert meta["pad_shape"] == [(320, 800, 3)] * 6
        assert meta["ori_shape"] == (900, 1600, 3, 6)
    metas[0]["lidar2img"][0][0, 0] = 1e9  # samples and the rig are independent copies
    assert metas[1]["lidar2img"][0][0, 0] != 1e9 and rig.lidar2img[0, 0, 0] != 1e9


def test_from_img_metas_roundtrip_and_dump():
    rig = default_rig()
    back = CameraRig.from_img_metas(rig.img_metas()[0])
    np.testing.assert_array_equal(back.lidar2img, rig.lidar2img)
    assert (back.img_shape, back.pad_shape, back.ori_shape) == ((320, 800), (320, 800), (900, 1600))
    dump = torch.load(DUMP, map_location="cpu", weights_only=False)
    from_dump = CameraRig.from_img_metas(dump["img_metas"][0])
    np.testing.assert_array_equal(from_dump.lidar2img, rig.lidar2img)
    with pytest.raises(AQRInputError, match="one sample"):
        CameraRig.from_img_metas(rig.img_metas())


def test_scaled_to_reproduces_800x320_exactly():
    rig = default_rig()
    again = rig.scaled_to((320, 800))
    np.testing.assert_array_equal(again.lidar2img, rig.lidar2img)
    np.testing.assert_array_equal(again.intrinsics, rig.intrinsics)
    assert again.image_aug["crop_xyxy"] == rig.image_aug["crop_xyxy"] == [0, 130, 800, 450]


def test_scaled_to_1600x640(rig_json):
    rig = default_rig()
    big = rig.scaled_to((640, 1600))
    assert big.img_shape == big.pad_shape == (640, 1600)
    assert big.image_aug["resize"] == 1.0 and big.image_aug["crop_xyxy"] == [0, 260, 1600, 900]
    k0 = np.array(rig_json["cam_intrinsic_original_1600x900"])
    np.testing.assert_array_equal(big.intrinsics[:, 0], k0[:, 0])
    np.testing.assert_array_equal(big.intrinsics[:, 1, 2], k0[:, 1, 2] - 260)
    np.testing.assert_allclose(big.lidar2img, big.intrinsics @ np.array(rig_json["lidar2cam"]))
    # resize 0.5 + crop 130 vs resize 1 + crop 260: pixels scale by exactly 2
    pts = np.random.default_rng(0).uniform([-50, -50, -3], [50, 50, 3], size=(500, 3))
    vis_s, u_s, v_s = camera_visibility(pts, rig)
    vis_b, u_b, v_b = camera_visibility(pts, big)
    np.testing.assert_allclose(u_b, 2 * u_s, rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(v_b, 2 * v_s, rtol=1e-9, atol=1e-6)


def test_scaled_to_needs_calibration():
    rig = CameraRig.from_img_metas(default_rig().img_metas()[0])
    with pytest.raises(AQRInputError, match="lidar2cam"):
        rig.scaled_to((640, 1600))


def _naive_first_view(p, rig):
    h, w = rig.img_shape
    for v, m in enumerate(rig.lidar2img):
        x, y, z, _ = m @ np.append(p, 1.0)
        if z > 0 and 0 <= x / z < w and 0 <= y / z < h:
            return v, x / z, y / z
    return -1, np.nan, np.nan


def test_project_points_to_cameras():
    rig = default_rig()
    pts = np.array([[0.0, 20.0, 0.0],    # ahead -> CAM_FRONT
                    [0.0, -20.0, 0.0],   # behind -> CAM_BACK
                    [0.0, 0.0, 30.0],    # straight up -> nobody
                    [15.0, 15.0, 0.0]])  # front-right
    view, u, v = project_points_to_cameras(pts, rig)
    assert view[0] == 0 and view[1] == 3 and view[2] == -1 and view[3] == 1
    assert np.isnan(u[2]) and np.isnan(v[2])
    rnd = np.random.default_rng(1).uniform([-60, -60, -6], [60, 60, 4], size=(400, 3))
    view, u, v = project_points_to_cameras(rnd, rig)
    for i, p in enumerate(rnd):
        nv, nu, nvv = _naive_first_view(p, rig)
        assert view[i] == nv
        if nv >= 0:
            assert u[i] == pytest.approx(nu) and v[i] == pytest.approx(nvv)


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d.pop("lidar2img"), "lidar2img"),
    (lambda d: d.__setitem__("lidar2img", [m[:3] for m in d["lidar2img"]]), r"\[V, 4, 4\]"),
    (lambda d: d["lidar2img"][2][0].__setitem__(1, float("nan")), "NaN"),
    (lambda d: d.__setitem__("img_shape", [0, 800, 3]), "img_shape"),
    (lambda d: d.__setitem__("img_shape", [320.5, 800]), "img_shape"),
    (lambda d: d.__setitem__("camera_names", ["A", "B"]), "camera_names"),
    (lambda d: d["lidar2img"].__setitem__(0, [[0.0] * 4] * 4), "singular"),
    (lambda d: d.__setitem__("lidar2cam", d["lidar2cam"][:5]), "lidar2cam"),
])
def test_load_rig_faults(rig_json, mutate, match):
    data = copy.deepcopy(rig_json)
    mutate(data)
    with pytest.raises(AQRInputError, match=match):
        load_rig(data)


def test_load_rig_bad_file(tmp_path: Path):
    bad = tmp_path / "rig.json"
    bad.write_text("{not json")
    with pytest.raises(AQRInputError, match="cannot read"):
        load_rig(bad)
    with pytest.raises(AQRInputError, match=r"\[N, 3\]"):
        project_points_to_cameras(np.zeros((3, 2)), default_rig())
