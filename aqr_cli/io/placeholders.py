"""Inert stand-ins for the classes found in checkpoints and debug dumps, inert records for every
other global a file names. The fixed table of pickle globals :mod:`aqr_cli.io.safe_load` maps
to real objects is :func:`aqr_cli.io.rebuild.unpickle_table`.

The stand-ins (mmcv ``DataContainer``, mmdet3d boxes and ``Box3DMode``, mmengine
``HistoryBuffer``) only hold the attributes the pickle's ``BUILD`` state gives them; their tensors
stay reachable (``DataContainer.data``, ``LiDARInstance3DBoxes.tensor``). Any other global becomes
an :class:`InertRecord` subclass that keeps the name, the arguments and the state for display and
does nothing else. Nothing named in a file is ever imported, looked up or called: the table below
is built from aqr's own imports, and a file's names are only used as keys into it.
"""

from __future__ import annotations

import enum
from functools import lru_cache
from typing import Any, TypeGuard


class Placeholder:
    """Base of the stand-ins: attributes come only from the pickle's ``BUILD`` state."""

    upstream_names: tuple[str, ...] = ()

    @classmethod
    def upstream_name(cls) -> str:
        return cls.upstream_names[0] if cls.upstream_names else cls.__name__

    def __setstate__(self, state: Any) -> None:
        # Only a dict of str keys is taken (into __dict__). mmcv never pickles slot state; taking
        # it would mean setattr() with names chosen by the file.
        if isinstance(state, tuple) and len(state) == 2 and state[1] is None:
            state = state[0]
        if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
            raise TypeError(f"unexpected pickled state for {self.upstream_name()}")
        self.__dict__.update(state)


class DataContainer(Placeholder):
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


class _Boxes3D(Placeholder):
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


class HistoryBuffer(Placeholder):
    """Stand-in for ``mmengine.logging.history_buffer.HistoryBuffer`` (inside ``message_hub``)."""

    upstream_names = ("mmengine.logging.history_buffer.HistoryBuffer",)

    @property
    def data(self) -> tuple[Any, Any]:
        return self.__dict__.get("_log_history"), self.__dict__.get("_count_history")


PLACEHOLDER_CLASSES: tuple[type[Placeholder], ...] = (DataContainer, LiDARInstance3DBoxes, CameraInstance3DBoxes,
                                         DepthInstance3DBoxes, HistoryBuffer)
BOX_CLASSES: tuple[type[_Boxes3D], ...] = (LiDARInstance3DBoxes, CameraInstance3DBoxes, DepthInstance3DBoxes)


class InertRecord:
    """A global a file names that is not in the fixed table, kept as data and never resolved.

    One subclass per ``module.name`` (see :func:`record_class`), so that the pickle opcodes that
    build objects (``REDUCE``, ``NEWOBJ``, ``BUILD``, ``APPEND(S)``, ``SETITEM(S)``) all land in
    the methods below, which only store their arguments. Calling an instance (a gadget chain
    such as ``resolve_name('os:system')('sh')``) gives another record naming the call.
    """

    __slots__ = ("args", "kwargs", "state", "items", "setitems")
    global_name = "?"
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    state: Any
    items: list[Any]
    setitems: list[tuple[Any, Any]]

    def __new__(cls, *args: Any, **kwargs: Any) -> "InertRecord":
        obj = object.__new__(cls)
        obj.args, obj.kwargs, obj.state, obj.items, obj.setitems = args, kwargs, None, [], []
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def append(self, item: Any) -> None:
        self.items.append(item)

    def extend(self, items: Any) -> None:
        self.items.extend(list(items))

    def __setitem__(self, key: Any, value: Any) -> None:
        self.setitems.append((key, value))

    def __call__(self, *args: Any, **kwargs: Any) -> "InertRecord":
        return record_class(self.global_name, "__call__")(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<inert {self.global_name}>"

    def children(self) -> list[tuple[str, Any]]:
        """What the record holds, as (label, value) pairs for display and traversal."""
        out: list[tuple[str, Any]] = [(f"args[{i}]", a) for i, a in enumerate(self.args)]
        out += [(f"kwargs[{k!r}]", v) for k, v in self.kwargs.items()]
        if self.state is not None:
            out.append(("state", self.state))
        out += [(f"items[{i}]", v) for i, v in enumerate(self.items)]
        out += [(f"[{k!r}]", v) for k, v in self.setitems]
        return out


_RECORD_CLASSES: dict[str, type[InertRecord]] = {}
_MAX_RECORD_CLASSES = 10_000


def record_class(module: str, name: str) -> type[InertRecord]:
    """The :class:`InertRecord` subclass standing for ``module.name`` (created once per name)."""
    full = f"{module}.{name}"
    cls = _RECORD_CLASSES.get(full)
    if cls is None:
        if len(_RECORD_CLASSES) >= _MAX_RECORD_CLASSES:
            _RECORD_CLASSES.clear()
        cls = type("InertRecord", (InertRecord,), {"__slots__": (), "global_name": full})
        _RECORD_CLASSES[full] = cls
    return cls


def is_record_class(value: Any) -> TypeGuard[type[InertRecord]]:
    return isinstance(value, type) and issubclass(value, InertRecord)


class MetaTensor(InertRecord):
    """A tensor stored without data (``device='meta'``): shape and dtype only."""

    __slots__ = ()
    global_name = "torch._utils._rebuild_meta_tensor_no_storage"

    @property
    def shape(self) -> list[int]:
        size = self.args[1] if len(self.args) > 1 else ()
        return [int(s) for s in size] if isinstance(size, (tuple, list)) else []

    @property
    def dtype(self) -> str:
        return str(self.args[0]).replace("torch.", "") if self.args else "?"


class _Token:
    """A class name a file may mention but must never call (``torch.Tensor``, ``numpy.ndarray``)."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


TENSOR_TYPE = _Token("torch.Tensor")
PARAMETER_TYPE = _Token("torch.nn.Parameter")
NDARRAY_TYPE = _Token("numpy.ndarray")


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
