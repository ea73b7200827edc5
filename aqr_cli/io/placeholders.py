"""Inert stand-ins for the mmcv / mmdet3d / mmengine classes found in checkpoints and debug dumps,
and the fixed allow-list of pickle globals that :mod:`aqr_cli.io.safe_load` accepts.

The stand-ins only hold the attributes the pickle stream sets (``BUILD`` fills ``__dict__``);
they import nothing and run nothing. Their tensors stay reachable: ``DataContainer.data``,
``LiDARInstance3DBoxes.tensor``. Nothing named in a file is ever imported: the unpickler maps the
names below to these classes and refuses every other name.
"""

from __future__ import annotations

import enum
from functools import lru_cache
from typing import Any, Callable


class _Placeholder:
    """Base of the stand-ins: attributes come only from the pickle's ``BUILD`` state."""

    upstream_names: tuple[str, ...] = ()

    @classmethod
    def upstream_name(cls) -> str:
        return cls.upstream_names[0] if cls.upstream_names else cls.__name__


class DataContainer(_Placeholder):
    """Stand-in for ``mmcv.parallel.data_container.DataContainer`` (mmcv 1.x).

    State as pickled by mmcv: ``_data``, ``_cpu_only``, ``_stack``, ``_padding_value``, ``_pad_dims``.
    """

    upstream_names = ("mmcv.parallel.data_container.DataContainer",)

    @property
    def data(self) -> Any:
        return self.__dict__.get("_data")

    @property
    def cpu_only(self) -> bool | None:
        return self.__dict__.get("_cpu_only")

    @property
    def stack(self) -> bool | None:
        return self.__dict__.get("_stack")

    @property
    def padding_value(self) -> Any:
        return self.__dict__.get("_padding_value")

    @property
    def pad_dims(self) -> Any:
        return self.__dict__.get("_pad_dims")

    def __repr__(self) -> str:
        return f"DataContainer({self.data!r})"


class _Boxes3D(_Placeholder):
    """Stand-in for mmdet3d ``BaseInstance3DBoxes``: ``tensor`` [N, box_dim], ``box_dim``, ``with_yaw``."""

    @property
    def tensor(self) -> Any:
        return self.__dict__.get("tensor")

    @property
    def box_dim(self) -> int | None:
        return self.__dict__.get("box_dim")

    @property
    def with_yaw(self) -> bool | None:
        return self.__dict__.get("with_yaw")

    def __len__(self) -> int:
        t = self.tensor
        return 0 if t is None else int(t.shape[0])

    def __repr__(self) -> str:
        shape = None if self.tensor is None else list(self.tensor.shape)
        return f"{type(self).__name__}(tensor shape {shape})"


class LiDARInstance3DBoxes(_Boxes3D):
    """LiDAR-frame boxes: columns x, y, z_bottom, dx, dy, dz, yaw[, vx, vy] (metres, rad, m/s)."""

    upstream_names = ("mmdet3d.core.bbox.structures.lidar_box3d.LiDARInstance3DBoxes",
                      "mmdet3d.structures.bbox_3d.lidar_box3d.LiDARInstance3DBoxes")

    @property
    def gravity_center(self) -> Any:
        """Box centres [N, 3] with z at half height (z_bottom + dz / 2), as mmdet3d computes them."""
        t = self.tensor
        centre = t[:, :3].clone()
        centre[:, 2] = t[:, 2] + t[:, 5] * 0.5
        return centre


class CameraInstance3DBoxes(_Boxes3D):
    upstream_names = ("mmdet3d.core.bbox.structures.cam_box3d.CameraInstance3DBoxes",
                      "mmdet3d.structures.bbox_3d.cam_box3d.CameraInstance3DBoxes")


class DepthInstance3DBoxes(_Boxes3D):
    upstream_names = ("mmdet3d.core.bbox.structures.depth_box3d.DepthInstance3DBoxes",
                      "mmdet3d.structures.bbox_3d.depth_box3d.DepthInstance3DBoxes")


class Box3DMode(enum.IntEnum):
    """Stand-in for mmdet3d ``Box3DMode`` (pickled as ``Box3DMode(value)``)."""

    LIDAR = 0
    CAM = 1
    DEPTH = 2


BOX3DMODE_NAMES = ("mmdet3d.core.bbox.structures.box_3d_mode.Box3DMode",
                   "mmdet3d.structures.bbox_3d.box_3d_mode.Box3DMode")


class HistoryBuffer(_Placeholder):
    """Stand-in for ``mmengine.logging.history_buffer.HistoryBuffer`` (inside ``message_hub``)."""

    upstream_names = ("mmengine.logging.history_buffer.HistoryBuffer",)

    @property
    def data(self) -> tuple[Any, Any]:
        return self.__dict__.get("_log_history"), self.__dict__.get("_count_history")


PLACEHOLDER_CLASSES: tuple[type, ...] = (DataContainer, LiDARInstance3DBoxes, CameraInstance3DBoxes,
                                         DepthInstance3DBoxes, HistoryBuffer)
BOX_CLASSES: tuple[type, ...] = (LiDARInstance3DBoxes, CameraInstance3DBoxes, DepthInstance3DBoxes)


@lru_cache(maxsize=1)
def placeholder_by_name() -> dict[str, Any]:
    """Upstream global name -> stand-in, for every mmcv/mmdet3d/mmengine name on the allow-list."""
    table: dict[str, Any] = {}
    for cls in PLACEHOLDER_CLASSES:
        for name in cls.upstream_names:
            table[name] = cls
    for name in BOX3DMODE_NAMES:
        table[name] = Box3DMode
    return table


def _numpy_globals() -> list[tuple[Callable, str] | Callable]:
    import numpy as np

    # Taken from reduce tuples so that numpy 2 never has to import the deprecated numpy.core.
    reconstruct = np.zeros(1).__reduce__()[0]
    scalar = np.float64(0).__reduce__()[0]
    entries: list[Any] = [np.ndarray, np.dtype]
    for fn, leaf in ((reconstruct, "_reconstruct"), (scalar, "scalar")):
        for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            entries.append((fn, f"{module}.{leaf}"))
    dtype_classes: dict[int, type] = {}
    dtypes_mod = getattr(np, "dtypes", None)
    if dtypes_mod is not None:
        for attr in dir(dtypes_mod):
            obj = getattr(dtypes_mod, attr)
            if attr.endswith("DType") and isinstance(obj, type):
                dtype_classes[id(obj)] = obj
    for code in np.typecodes["All"]:
        try:
            cls = type(np.dtype(code))
        except TypeError:
            continue
        dtype_classes.setdefault(id(cls), cls)
    entries.extend(dtype_classes.values())
    return entries


@lru_cache(maxsize=1)
def allowed_globals() -> tuple:
    """The fixed allow-list, in the form ``torch.serialization.safe_globals`` takes.

    numpy scalars, ``ndarray``, ``dtype`` and its ``numpy.dtypes.*DType`` classes, ``_reconstruct``
    and ``scalar`` under both the numpy 1.x (``numpy.core``) and 2.x (``numpy._core``) names (torch
    matches by the given name, so the numpy-1 spelling must be passed explicitly under numpy 2),
    and the inert stand-ins above under every upstream module path they are known by.
    """
    entries = list(_numpy_globals())
    entries.extend((obj, name) for name, obj in placeholder_by_name().items())
    return tuple(entries)


def allowed_global_names() -> list[str]:
    """Dotted names of every allow-listed global (for messages and docs)."""
    names = []
    for entry in allowed_globals():
        if isinstance(entry, tuple):
            names.append(entry[1])
        else:
            names.append(f"{entry.__module__}.{entry.__qualname__}")
    return sorted(set(names))
