"""The only functions a pickle may call: checked rebuilders of tensors, arrays and plain values.

:func:`rebuild_table` maps the global names that ``torch.save`` and numpy write to these wrappers;
:func:`unpickle_table` adds the inert stand-ins of :mod:`aqr_cli.io.placeholders` (the allow-list).
Each wrapper checks the types and sizes of its arguments before it calls torch or numpy, and
none of them calls anything it was given: a function or class that arrives as an argument is
compared by identity with aqr's own objects, never invoked.

A tensor view must not declare more elements than its storage holds beyond its offset: that
refuses stride-0 (expanded) and overlapping views, which would make a small file cost unbounded
memory and time once reduced or rendered.
"""

from __future__ import annotations

import collections
import re
from functools import lru_cache
from typing import Any

from aqr_cli.io.placeholders import (
    NDARRAY_TYPE,
    PARAMETER_TYPE,
    TENSOR_TYPE,
    InertRecord,
    MetaTensor,
    placeholder_by_name,
)


class RebuildError(TypeError):
    """A rebuild call with arguments ``torch.save``/numpy never write (one line, no file name)."""


def _ints(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or len(value) > 64 or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise RebuildError(f"tensor {what} must be a short tuple of integers")
    return tuple(value)


def _check_view(numel_storage: int, offset: int, size: tuple, stride: tuple) -> None:
    if len(size) != len(stride):
        raise RebuildError(f"tensor size {list(size)} and stride {list(stride)} differ in length")
    if offset < 0 or any(s < 0 for s in size) or any(s < 0 for s in stride):
        raise RebuildError("negative tensor size, stride or offset")
    numel = 1
    for s in size:
        numel *= s
    if numel == 0:
        return
    extent = offset + 1 + sum((n - 1) * st for n, st in zip(size, stride))
    if extent > numel_storage:
        raise RebuildError(f"a tensor of shape {list(size)} reaches element {extent} of a storage "
                           f"of {numel_storage}")
    if numel > numel_storage - offset:
        raise RebuildError(f"a tensor of shape {list(size)} (stride {list(stride)}) declares {numel} "
                           f"elements over a storage of {numel_storage - offset}: a stride-0 "
                           "(expanded) or overlapping view")


def rebuild_tensor_v2(storage: Any, storage_offset: Any, size: Any, stride: Any,
                      requires_grad: Any = False, backward_hooks: Any = None,
                      metadata: Any = None) -> Any:
    """``torch._utils._rebuild_tensor_v2`` for a dense CPU storage; hooks and grad are dropped."""
    import torch

    if not isinstance(storage, torch.storage.TypedStorage):
        raise RebuildError("tensor without a storage from the archive")
    if not isinstance(storage_offset, int) or isinstance(storage_offset, bool):
        raise RebuildError("tensor storage offset must be an integer")
    size, stride = _ints(size, "size"), _ints(stride, "stride")
    _check_view(storage.size(), storage_offset, size, stride)
    return torch._utils._rebuild_tensor(storage, storage_offset, size, stride)


def rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any) -> Any:
    return rebuild_tensor_v2(storage, storage_offset, size, stride)


def rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None,
                      state: Any = None) -> Any:
    """A plain tensor for ``torch.nn.Parameter`` (aqr never trains, so no Parameter is needed)."""
    import torch

    if not isinstance(data, torch.Tensor):
        raise RebuildError("a Parameter without tensor data")
    return data


def rebuild_from_type_v2(func: Any, new_type: Any, args: Any, state: Any) -> Any:
    """``torch._tensor._rebuild_from_type_v2`` for plain tensors; subclass state is dropped."""
    if func not in _TENSOR_REBUILDERS or not isinstance(args, tuple):
        raise RebuildError("tensor rebuilt by a function outside the allow-list")
    if new_type not in (TENSOR_TYPE, PARAMETER_TYPE) and not (
            isinstance(new_type, type) and issubclass(new_type, InertRecord)):
        raise RebuildError("tensor of an unexpected type")
    return func(*args)


def rebuild_meta_tensor(dtype: Any, size: Any, stride: Any = (), requires_grad: Any = False) -> Any:
    """A tensor saved from ``device='meta'``: no data, so an inert :class:`MetaTensor` record."""
    return MetaTensor(dtype, tuple(size) if isinstance(size, (tuple, list)) else size)


def ordered_dict(*args: Any) -> Any:
    if len(args) > 1:
        raise RebuildError("OrderedDict with more than one argument")
    return collections.OrderedDict(*args)


def plain_dict(*args: Any) -> dict:
    """``collections.defaultdict(factory)``: a plain dict (the factory is never kept or called)."""
    return {}


def latin1_encode(obj: Any, encoding: Any = "latin1") -> bytes:
    """``_codecs.encode(text, 'latin1')``: how protocol-2 pickles store ``bytes``."""
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1"):
        raise RebuildError("_codecs.encode other than str -> latin1 bytes")
    return obj.encode("latin1")


def make_set(items: Any = ()) -> set:
    return set(_sequence(items))


def make_frozenset(items: Any = ()) -> frozenset:
    return frozenset(_sequence(items))


def _sequence(items: Any) -> Any:
    if not isinstance(items, (list, tuple, set, frozenset, dict)):
        raise RebuildError("set() of a non-collection")
    return items


def make_complex(real: Any = 0.0, imag: Any = 0.0) -> complex:
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (real, imag)):
        raise RebuildError("complex() of non-numbers")
    return complex(real, imag)


def make_bytearray(data: Any = b"", encoding: Any = None) -> bytearray:
    if isinstance(data, (bytes, bytearray)) and encoding is None:
        return bytearray(data)
    if isinstance(data, str) and encoding in ("latin1", "latin-1"):
        return bytearray(data.encode("latin1"))
    raise RebuildError("bytearray() other than of bytes")


def make_slice(*args: Any) -> slice:
    if len(args) > 3 or not all(a is None or (isinstance(a, int) and not isinstance(a, bool))
                                for a in args):
        raise RebuildError("slice() of non-integers")
    return slice(*args)


def torch_size(dims: Any = ()) -> Any:
    import torch

    return torch.Size(_ints(dims, "size"))


def torch_device(spec: Any, index: Any = None) -> Any:
    import torch

    if not isinstance(spec, str) or len(spec) > 32 or not (index is None or isinstance(index, int)):
        raise RebuildError("torch.device() of an unexpected value")
    return torch.device(spec) if index is None else torch.device(spec, index)


_DTYPE_SPEC = re.compile(r"[<>|=]?[a-zA-Z?][0-9]{0,3}\Z")


def numpy_dtype(spec: Any, align: Any = False, copy: Any = False) -> Any:
    """``numpy.dtype('f8', False, True)`` as numpy pickles it; only simple type codes."""
    import numpy as np

    if not isinstance(spec, str) or not _DTYPE_SPEC.match(spec):
        raise RebuildError("numpy dtype other than a simple type code")
    try:
        return np.dtype(spec, align=bool(align), copy=bool(copy))
    except TypeError as e:
        raise RebuildError(f"numpy dtype {spec!r}: {e}") from None


def numpy_reconstruct(subtype: Any, shape: Any, typecode: Any) -> Any:
    """``numpy.core.multiarray._reconstruct(ndarray, (0,), b'b')``: an empty array that the
    following ``BUILD`` fills from the file's bytes (numpy's own ``__setstate__``, which checks
    the byte count against the shape)."""
    import numpy as np

    if subtype is not NDARRAY_TYPE or not isinstance(shape, tuple) or shape != (0,):
        raise RebuildError("numpy array reconstructed other than as numpy writes it")
    return np.ndarray.__new__(np.ndarray, (0,), np.dtype("b"))


def numpy_scalar(dtype: Any, data: Any = None) -> Any:
    import numpy as np

    if not isinstance(dtype, np.dtype):
        raise RebuildError("numpy scalar without a dtype")
    if dtype.hasobject:
        return data
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise RebuildError("numpy scalar whose bytes do not match its dtype")
    return np.frombuffer(data, dtype=dtype)[0].copy()


_TENSOR_REBUILDERS = (rebuild_tensor_v2, rebuild_tensor, rebuild_parameter)


def rebuild_table() -> dict[str, Any]:
    """Global name -> wrapper or value for everything ``torch.save`` and numpy write."""
    import numpy as np
    import torch

    table: dict[str, Any] = {
        "torch._utils._rebuild_tensor_v2": rebuild_tensor_v2,
        "torch._utils._rebuild_tensor": rebuild_tensor,
        "torch._utils._rebuild_parameter": rebuild_parameter,
        "torch._utils._rebuild_parameter_with_state": rebuild_parameter,
        "torch._tensor._rebuild_from_type_v2": rebuild_from_type_v2,
        "torch._utils._rebuild_meta_tensor_no_storage": rebuild_meta_tensor,
        "torch.Tensor": TENSOR_TYPE, "torch._tensor.Tensor": TENSOR_TYPE,
        "torch.nn.parameter.Parameter": PARAMETER_TYPE,
        "torch.Size": torch_size, "torch.device": torch_device,
        "collections.OrderedDict": ordered_dict, "collections.defaultdict": plain_dict,
        "_codecs.encode": latin1_encode,
        "builtins.set": make_set, "builtins.frozenset": make_frozenset,
        "builtins.complex": make_complex, "builtins.bytearray": make_bytearray,
        "builtins.slice": make_slice,
        "__builtin__.set": make_set, "__builtin__.frozenset": make_frozenset,
        "__builtin__.complex": make_complex, "__builtin__.bytearray": make_bytearray,
        "numpy.ndarray": NDARRAY_TYPE, "numpy.dtype": numpy_dtype,
    }
    for name, value in list(vars(torch).items()):  # no getattr: nothing lazy gets imported
        if isinstance(value, torch.dtype):
            table[f"torch.{name}"] = value
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        table[f"{module}._reconstruct"] = numpy_reconstruct
        table[f"{module}.scalar"] = numpy_scalar
    dtypes_mod = getattr(np, "dtypes", None)
    for attr in list(vars(dtypes_mod)) if dtypes_mod is not None else ():
        # DType classes are only ever referenced, never needed as callables
        if attr.endswith("DType"):
            table[f"numpy.dtypes.{attr}"] = NDARRAY_TYPE.__class__(f"numpy.dtypes.{attr}")
    return table


@lru_cache(maxsize=1)
def unpickle_table() -> dict[str, Any]:
    """``module.name`` -> the object the unpickler returns for it: the complete allow-list.

    Callables here are aqr's checked wrappers (above), inert classes, or
    tokens that cannot be called. Every other name becomes an :class:`InertRecord`.
    """
    table: dict[str, Any] = dict(placeholder_by_name())
    table.update(rebuild_table())
    return table


def allowed_global_names() -> list[str]:
    """Dotted names of every allow-listed global (for messages and docs)."""
    return sorted(unpickle_table())
