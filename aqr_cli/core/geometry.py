"""Camera rig: ``lidar2img`` matrices, image shapes, upstream-style ``img_metas`` and projections.

A :class:`CameraRig` holds what the AQR path reads from ``img_metas`` (spec 6.1): one float64
4x4 ``lidar2img`` per view (LiDAR metres, homogeneous -> pixel homogeneous of the resized and
cropped network input), the network input shape and, optionally, the calibration it was built
from. Views are kept in data order (spec 8.3): FRONT, FRONT_RIGHT, FRONT_LEFT, BACK, BACK_LEFT,
BACK_RIGHT.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Sequence, cast, overload

import numpy as np

from .configs import CAMERA_NAMES
from .errors import AQRInputError

RAW_IMAGE_HW = (900, 1600)
"""nuScenes raw camera image (H, W) in pixels (``ida_aug_conf`` H, W)."""


def _matrices(name: str, value, num: int | None = None) -> np.ndarray:
    """Return ``value`` as a finite float64 ``[V, 4, 4]`` array, else raise."""
    try:
        arr = np.array([np.asarray(m, dtype=np.float64) for m in value], dtype=np.float64)
    except (TypeError, ValueError):
        raise AQRInputError(f"{name}: expected a list of 4x4 numeric matrices") from None
    if arr.ndim != 3 or arr.shape[1:] != (4, 4) or arr.shape[0] == 0:
        raise AQRInputError(f"{name}: expected shape [V, 4, 4], got {list(arr.shape)}")
    if num is not None and arr.shape[0] != num:
        raise AQRInputError(f"{name}: expected {num} matrices (one per camera), got {arr.shape[0]}")
    if not np.isfinite(arr).all():
        raise AQRInputError(f"{name}: contains NaN or Inf")
    return arr


@overload
def _hw(name: str, value: Any, required: Literal[True] = True) -> tuple[int, int]:
    ...


@overload
def _hw(name: str, value: Any, required: bool) -> tuple[int, int] | None:
    ...


def _hw(name: str, value: Any, required: bool = True) -> tuple[int, int] | None:
    """Parse ``(H, W)`` or ``(H, W, C, ...)`` into positive ``(H, W)`` ints."""
    if value is None:
        if required:
            raise AQRInputError(f"{name}: missing; expected (H, W) in pixels")
        return None
    try:
        h, w = (float(v) for v in list(value)[:2])
    except (TypeError, ValueError):
        raise AQRInputError(f"{name}: expected (H, W) positive integers, got {value!r}") from None
    if not (h > 0 and w > 0 and h == int(h) and w == int(w)):
        raise AQRInputError(f"{name}: expected (H, W) positive integers, got {value!r}")
    return int(h), int(w)


@dataclass
class CameraRig:
    """A multi-camera rig in data order.

    ``lidar2img`` [V, 4, 4] float64 maps LiDAR points (x right, y forward, z up, metres,
    homogeneous) to homogeneous pixels of the network input image of shape ``img_shape``
    (H, W). ``pad_shape`` defaults to ``img_shape``; ``ori_shape`` is the raw image (H, W).
    ``intrinsics`` [V, 4, 4] (after resize/crop), ``intrinsics_original`` [V, 4, 4] (raw image)
    and ``lidar2cam`` [V, 4, 4] are optional; :meth:`scaled_to` needs the last two.
    """

    camera_names: tuple[str, ...]
    lidar2img: np.ndarray
    img_shape: tuple[int, int]
    pad_shape: tuple[int, int] | None = None
    ori_shape: tuple[int, int] | None = None
    intrinsics: np.ndarray | None = None
    intrinsics_original: np.ndarray | None = None
    lidar2cam: np.ndarray | None = None
    image_aug: dict | None = field(default=None, repr=False)

    def __post_init__(self):
        self.lidar2img = _matrices("lidar2img", self.lidar2img)
        v = self.lidar2img.shape[0]
        names = tuple(self.camera_names)
        if len(names) != v or not all(isinstance(n, str) for n in names):
            raise AQRInputError(
                f"camera_names: expected {v} names (one per lidar2img matrix), got {list(names)}")
        self.camera_names = names
        if np.any(np.abs(np.linalg.det(self.lidar2img)) < 1e-12):
            raise AQRInputError(
                "lidar2img: a matrix is singular; its inverse (img2lidar) is needed")
        self.img_shape = _hw("img_shape", self.img_shape)
        self.pad_shape = _hw("pad_shape", self.pad_shape, required=False) or self.img_shape
        self.ori_shape = _hw("ori_shape", self.ori_shape, required=False)
        for key in ("intrinsics", "intrinsics_original", "lidar2cam"):
            if getattr(self, key) is not None:
                setattr(self, key, _matrices(key, getattr(self, key), v))

    @property
    def num_views(self) -> int:
        """Number of cameras V."""
        return int(self.lidar2img.shape[0])

    def img_metas(self, batch_size: int = 1) -> list[dict]:
        """Upstream-style ``img_metas``: ``batch_size`` independent dicts, one per sample.

        Each dict holds ``lidar2img`` (list of V float64 4x4 arrays), ``img_shape`` and
        ``pad_shape`` (lists of V ``(H, W, 3)`` tuples) and, when known, ``ori_shape``
        ``(H, W, 3, V)`` (the stacked raw shape the multi-view loader writes).
        """
        if int(batch_size) != batch_size or batch_size < 1:
            raise AQRInputError(f"batch_size: expected a positive integer, got {batch_size!r}")
        v = self.num_views
        pad_shape = self.pad_shape or self.img_shape  # __post_init__ already defaulted it
        meta: dict[str, Any] = {
            "lidar2img": [m.copy() for m in self.lidar2img],
            "img_shape": [(*self.img_shape, 3)] * v,
            "pad_shape": [(*pad_shape, 3)] * v,
        }
        if self.ori_shape is not None:
            meta["ori_shape"] = (*self.ori_shape, 3, v)
        return [copy.deepcopy(meta) for _ in range(int(batch_size))]

    @classmethod
    def from_img_metas(cls, meta: Mapping[str, Any],
                       camera_names: Sequence[str] | None = None) -> "CameraRig":
        """Rig of one sample's ``img_metas`` dict (``img_metas[b]``, not the list)."""
        if not isinstance(meta, Mapping):
            raise AQRInputError(
                f"meta: expected one sample's img_metas dict, got {type(meta).__name__}")
        if "lidar2img" not in meta:
            raise AQRInputError("meta: missing 'lidar2img' (list of V 4x4 matrices)")
        mats = _matrices("meta['lidar2img']", meta["lidar2img"])
        img = _first_hw("meta['img_shape']", meta.get("img_shape"))
        pad = _first_hw("meta['pad_shape']", meta.get("pad_shape"), required=False)
        ori = meta.get("ori_shape")
        if camera_names is None:
            v = mats.shape[0]
            camera_names = CAMERA_NAMES if v == len(CAMERA_NAMES) else [f"cam{i}" for i in range(v)]
        return cls(tuple(camera_names), mats, img, pad, _hw("meta['ori_shape']", ori, False))

    def scaled_to(self, img_hw: Sequence[int]) -> "CameraRig":
        """The same cameras seen through the test-time resize + bottom crop to ``img_hw`` (H, W).

        CMT ``ResizeCropFlipImage`` in test mode (spec 8.1): ``resize = max(fH/H, fW/W)`` of the
        raw (H, W) = ``ori_shape`` (default 900x1600), resized to ``(int(W*r), int(H*r))``, crop
        the bottom ``fH`` rows, horizontally centred; intrinsic ``K[:3, :3] <- ida @ K[:3, :3]``
        with ``ida = [[r, 0, -crop_w], [0, r, -crop_h], [0, 0, 1]]`` and
        ``lidar2img = K @ lidar2cam``. For 1600x640: r = 1.0, rows 260..899 kept (spec 8.2).
        Computed in float64 from ``intrinsics_original`` and ``lidar2cam`` (upstream builds
        ``ida`` in float32; differences are below 1e-4 px).
        """
        if self.intrinsics_original is None or self.lidar2cam is None:
            raise AQRInputError(
                "scaled_to: the rig needs 'cam_intrinsic_original_1600x900' and 'lidar2cam' "
                "to derive another resolution")
        f_h, f_w = _hw("img_hw", img_hw)
        raw_h, raw_w = self.ori_shape or RAW_IMAGE_HW
        r = max(f_h / raw_h, f_w / raw_w)
        new_w, new_h = int(raw_w * r), int(raw_h * r)
        crop_h = new_h - f_h
        crop_w = int(max(0, new_w - f_w) / 2)
        if crop_h < 0:
            raise AQRInputError(f"img_hw: {f_h}x{f_w} cannot be cropped from {new_h}x{new_w}")
        ida = np.array([[r, 0.0, -crop_w], [0.0, r, -crop_h], [0.0, 0.0, 1.0]])
        k = self.intrinsics_original.copy()
        k[:, :3, :3] = ida @ k[:, :3, :3]
        aug = dict(resize=r, resize_dims_wh=[new_w, new_h],
                   crop_xyxy=[crop_w, crop_h, crop_w + f_w, crop_h + f_h], flip=False, rotate=0.0)
        return CameraRig(self.camera_names, k @ self.lidar2cam, (f_h, f_w), (f_h, f_w),
                         (raw_h, raw_w), k, self.intrinsics_original.copy(),
                         self.lidar2cam.copy(), aug)


@overload
def _first_hw(name: str, value: Any, required: Literal[True] = True) -> tuple[int, int]:
    ...


@overload
def _first_hw(name: str, value: Any, required: bool) -> tuple[int, int] | None:
    ...


def _first_hw(name: str, value: Any, required: bool = True) -> tuple[int, int] | None:
    """``img_shape`` as upstream stores it (list of V tuples) or as one ``(H, W, ...)`` tuple."""
    if value is not None and len(value) and isinstance(value[0], (list, tuple, np.ndarray)):
        return _hw(f"{name}[0]", value[0], required)
    return _hw(name, value, required)


def rig_from_mapping(data: Mapping[str, Any]) -> CameraRig:
    """Validate a parsed rig json (see ``camera_rig_800x320.json``) into a :class:`CameraRig`.

    Required keys: ``lidar2img`` (V x 4x4) and ``img_shape`` ((H, W) or (H, W, 3)). Optional:
    ``camera_names`` (default: the six nuScenes names), ``pad_shape``, ``ori_shape``,
    ``cam_intrinsic``, ``cam_intrinsic_original_1600x900``, ``lidar2cam``, ``image_aug``.
    Reading a rig file is ``aqr_cli.io.rig.load_rig``'s job.
    """
    if "lidar2img" not in data:
        raise AQRInputError("rig: missing 'lidar2img' (list of V 4x4 matrices)")
    mats = _matrices("lidar2img", data["lidar2img"])
    names = data.get("camera_names")
    if names is None:
        names = CAMERA_NAMES if mats.shape[0] == len(CAMERA_NAMES) else [
            f"cam{i}" for i in range(mats.shape[0])]
    return CameraRig(
        # the shapes are validated and normalised by CameraRig.__post_init__
        camera_names=tuple(names), lidar2img=mats,
        img_shape=cast("tuple[int, int]", data.get("img_shape")),
        pad_shape=data.get("pad_shape"), ori_shape=data.get("ori_shape"),
        intrinsics=data.get("cam_intrinsic"),
        intrinsics_original=data.get("cam_intrinsic_original_1600x900"),
        lidar2cam=data.get("lidar2cam"), image_aug=copy.deepcopy(data.get("image_aug")))


def camera_visibility(xyz, rig: CameraRig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-view visibility and pixels of LiDAR points: ``(visible [V, N], u [V, N], v [V, N])``.

    ``xyz`` [N, 3] in metres. Visible = depth > 0 and ``0 <= u < W``, ``0 <= v < H`` of
    ``rig.img_shape``; ``u`` (column) and ``v`` (row) are pixels, NaN where depth <= 0.
    """
    pts = np.asarray(xyz, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise AQRInputError(f"xyz: expected shape [N, 3] (metres), got {list(pts.shape)}")
    if not np.isfinite(pts).all():
        raise AQRInputError("xyz: contains NaN or Inf")
    hom = np.concatenate([pts, np.ones((len(pts), 1))], axis=1)
    q = np.einsum("vij,nj->vni", rig.lidar2img, hom)
    z = q[..., 2]
    front = z > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.where(front, q[..., 0] / z, np.nan)
        v = np.where(front, q[..., 1] / z, np.nan)
    h, w = rig.img_shape
    visible = front & (u >= 0) & (u < w) & (v >= 0) & (v < h)
    return visible, u, v


def project_points_to_cameras(xyz, rig: CameraRig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First camera that sees each point: ``(view [N] int64, -1 if none; u [N]; v [N])``.

    ``xyz`` [N, 3] LiDAR metres; ``u``/``v`` are pixel column/row in that view (NaN when
    ``view == -1``). Uses a true depth test (z > 0), unlike AQR's projection (spec Q4).
    """
    visible, u, v = camera_visibility(xyz, rig)
    any_view = visible.any(axis=0)
    view = np.where(any_view, visible.argmax(axis=0), -1).astype(np.int64)
    cols = np.arange(visible.shape[1])
    safe = np.maximum(view, 0)
    u_sel = np.where(any_view, u[safe, cols], np.nan)
    v_sel = np.where(any_view, v[safe, cols], np.nan)
    return view, u_sel, v_sel


def bev_cell_centres(rows, cols, bev_hw: Sequence[int], pc_range: Sequence[float]):
    """(x, y) metres of BEV cell centres for (row, col) cells (numpy arrays or tensors alike).

    Row 0 is y = pc_range[1], column 0 is x = pc_range[0]; a cell spans
    (pc_range[3] - pc_range[0]) / W metres in x and (pc_range[4] - pc_range[1]) / H in y.
    """
    h, w = bev_hw
    x = (cols + 0.5) * (pc_range[3] - pc_range[0]) / w + pc_range[0]
    y = (rows + 0.5) * (pc_range[4] - pc_range[1]) / h + pc_range[1]
    return x, y


def boxes_array(boxes) -> np.ndarray:
    """LiDAR boxes ``[N, >=7]`` (a tensor or array) as float64 numpy; ``[0, 9]`` when empty."""
    b = np.asarray(boxes.detach().cpu().numpy() if hasattr(boxes, "detach") else boxes,
                   dtype=np.float64)
    if b.size == 0:
        return np.zeros((0, 9))
    if b.ndim != 2 or b.shape[1] < 7:
        raise AQRInputError(f"boxes: expected shape [N, >=7] (x, y, z, dx, dy, dz, yaw, ...), "
                            f"got {list(b.shape)}")
    return b


def box_corners_3d(boxes) -> np.ndarray:
    """The 8 corners ``[N, 8, 3]`` (metres) of LiDAR boxes (x, y, z_bottom, dx, dy, dz, yaw)."""
    b = boxes_array(boxes)
    sx = np.array([1, 1, -1, -1, 1, 1, -1, -1]) / 2.0
    sy = np.array([1, -1, -1, 1, 1, -1, -1, 1]) / 2.0
    sz = np.array([0, 0, 0, 0, 1, 1, 1, 1], dtype=float)
    lx, ly = sx[None] * b[:, 3:4], sy[None] * b[:, 4:5]
    cos, sin = np.cos(b[:, 6:7]), np.sin(b[:, 6:7])
    x = b[:, 0:1] + lx * cos - ly * sin
    y = b[:, 1:2] + lx * sin + ly * cos
    z = b[:, 2:3] + sz[None] * b[:, 5:6]
    return np.stack([x, y, z], axis=-1)
