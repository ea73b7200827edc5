"""Load ``torch.save`` files and ``.safetensors`` without running anything a file names.

How a pickle is read, and why no file can run code:

- ``torch.load(path, weights_only=False, pickle_module=<restricted>)`` does the archive work
  (zip records, memory mapping, byte order, legacy layout). Its unpickler is a subclass of our
  :class:`_RestrictedUnpickler` (``pickle.Unpickler``); torch's own ``find_class`` only turns
  ``*Storage`` names into its inert ``StorageType`` dtype holder and renames ``torch.tensor``,
  then defers to ours.
- Our ``find_class`` never imports, looks up or calls anything: the name is a key into the
  fixed table of :func:`aqr_cli.io.rebuild.unpickle_table` (checked tensor/array rebuilders
  of :mod:`aqr_cli.io.rebuild`, inert stand-ins, dtypes, tokens that cannot be called). Every
  other name, however it is spelt (``GLOBAL``, ``STACK_GLOBAL``, dotted ``os.path.x`` names,
  extension codes), becomes an :class:`~aqr_cli.io.placeholders.InertRecord` class whose
  construction and state only store the arguments. ``pickle`` calls only what ``find_class``
  returned (or what those calls return: tensors, arrays, dicts, records), so the set of code a
  file can reach is exactly the table.
- ``persistent_load`` is guarded: a storage may not declare more bytes than the file holds, and
  legacy ``module`` records are returned as they are (torch's source check, which can write a
  patch file, is never run).
- Before torch sees a zip, :func:`_check_zip` refuses TorchScript archives (``torch.load`` would
  hand them to ``torch.jit.load``), compressed entries (deflate bombs: ``torch.save`` never
  compresses) and entries that declare more bytes than the file has.
- After loading, :func:`check_structure` bounds nesting depth, expanded size and cycles, so
  later recursive code (JSON, key trees) cannot blow the stack or the clock.

``torch.load(weights_only=True)`` is not used because it refuses unknown globals outright,
where aqr wants to keep them as inert records (foreign objects in ``meta`` or ``img_metas``).
``--trust-checkpoint`` is gone: no flag enables more than this.

Zip-format files of ``MMAP_MIN_BYTES`` or more are memory-mapped. Every failure is a
:class:`aqr_cli.io.errors.LoadError` whose message starts with the file name.
"""

from __future__ import annotations

import os
import pickle
import types
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from aqr_cli.io.errors import LoadError, one_line
from aqr_cli.io.limits import MAX_NESTING, MAX_NODES
from aqr_cli.io.placeholders import InertRecord, Placeholder, is_record_class, record_class
from aqr_cli.io.rebuild import RebuildError, unpickle_table

MMAP_MIN_BYTES = 64 * 2**20
"""Zip-format files at least this large are memory-mapped when ``mmap=None`` (auto)."""

_ZIP_MAGIC = b"PK\x03\x04"
# torch's legacy (pre-1.6, non-zip) format starts with the pickled magic number 0x1950a86a20f9469cfc6c.
_LEGACY_MAGIC = b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")


@dataclass
class RawLoad:
    """What :func:`safe_torch_load` read: the unpickled object and how it was read."""

    obj: Any
    container: str  # 'zip' | 'legacy' | 'safetensors'
    mmapped: bool = False
    records: list[str] = field(default_factory=list)  # globals kept as inert records
    metadata: dict[str, str] = field(default_factory=dict)  # safetensors header metadata


def check_readable_file(path: str | os.PathLike) -> tuple[Path, int]:
    """``(Path, size in bytes)`` of an existing, non-empty, readable regular file, else LoadError."""
    import stat

    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise LoadError(path, "no such file") from None
    except PermissionError:
        raise LoadError(path, "cannot access the file: permission denied") from None
    except OSError as e:
        raise LoadError(path, f"cannot access the file: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise LoadError(path, "is a directory, not a checkpoint file")
    if not stat.S_ISREG(st.st_mode):
        raise LoadError(path, "is not a regular file (a pipe, socket or device?)")
    if st.st_size == 0:
        raise LoadError(path, "empty file (0 bytes)")
    if not os.access(p, os.R_OK):
        raise LoadError(path, "cannot read the file: permission denied")
    return p, st.st_size


def sniff(path: Path, size: int) -> str:
    """Container kind from the first bytes: 'zip', 'legacy', 'safetensors', 'pickle' or 'unknown'."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as e:
        raise LoadError(path, f"cannot read the file: {e.strerror or e}") from None
    if head.startswith(_ZIP_MAGIC):
        return "zip"
    if head[:1] == b"\x80" and head[2:14] == _LEGACY_MAGIC:
        return "legacy"
    if len(head) >= 9:
        header_len = int.from_bytes(head[:8], "little")
        if 0 < header_len <= size - 8 and head[8:9] == b"{":
            return "safetensors"
    if head[:1] == b"\x80":
        return "pickle"
    return "unknown"


class _RestrictedUnpickler(pickle.Unpickler):
    """``find_class`` from the fixed table, inert records for the rest; guarded persistent ids."""

    max_storage_bytes = 0
    seen_records: set[str] = set()

    def __init__(self, *args: Any, **kwargs: Any):
        self._torch_persistent_load = None
        super().__init__(*args, **kwargs)

    def find_class(self, module: str, name: str) -> Any:
        full = f"{module}.{name}"
        found = unpickle_table().get(full)
        if found is not None:
            return found
        self.seen_records.add(full[:300])
        return record_class(str(module)[:200], str(name)[:200])

    # torch assigns ``unpickler.persistent_load = fn``: the property keeps fn and hands pickle
    # the guard instead (the C unpickler reads this attribute once, at construction).
    @property
    def persistent_load(self) -> Callable[[Any], Any]:
        return self._guarded_persistent_load

    @persistent_load.setter
    def persistent_load(self, fn) -> None:
        self._torch_persistent_load = fn

    def _guarded_persistent_load(self, pid: Any) -> Any:
        if self._torch_persistent_load is None or not isinstance(pid, tuple) or not pid:
            raise pickle.UnpicklingError("unexpected persistent id")
        kind = pid[0].decode("ascii", "replace") if isinstance(pid[0], bytes) else pid[0]
        if kind == "module" and len(pid) >= 2 and is_record_class(pid[1]):
            return pid[1]  # a legacy pickled nn.Module class: kept inert, its source never read
        if kind != "storage" or len(pid) not in (5, 6):
            raise pickle.UnpicklingError("unexpected persistent id")
        _check_storage_id(pid, self.max_storage_bytes)
        return self._torch_persistent_load(pid)


def _check_storage_id(pid: tuple, max_storage_bytes: int) -> None:
    """UnpicklingError unless the storage id ``('storage', type, key, location, numel[, view])``
    names a known storage type, a sane element count within ``max_storage_bytes`` and a view
    inside the storage."""
    import torch

    storage_type, numel = pid[1], pid[4]
    if not isinstance(storage_type, torch.serialization.StorageType):
        raise pickle.UnpicklingError("a storage of an unknown type")
    if not isinstance(numel, int) or isinstance(numel, bool) or numel < 0:
        raise pickle.UnpicklingError("a storage with a bad element count")
    nbytes = numel * torch._utils._element_size(storage_type.dtype)
    if nbytes > max_storage_bytes:
        raise pickle.UnpicklingError(f"a storage declares {nbytes} bytes, more than the "
                                     f"{max_storage_bytes}-byte file holds")
    if len(pid) == 6 and pid[5] is not None:
        view = pid[5]
        if not (isinstance(view, tuple) and len(view) == 3 and all(
                isinstance(v, int) and v >= 0 for v in view[1:]) and view[1] + view[2] <= numel):
            raise pickle.UnpicklingError("a storage view outside its storage")


class _PickleModule(types.ModuleType):
    """The interface ``torch.load`` takes as ``pickle_module``."""

    Unpickler: type[pickle.Unpickler]
    load: Callable[..., Any]
    UnpicklingError: type[Exception]


def _pickle_module(max_storage_bytes: int, seen: set[str]) -> _PickleModule:
    """A module with ``Unpickler`` and ``load``, the interface ``torch.load`` takes."""
    cls = type("_RestrictedUnpickler", (_RestrictedUnpickler,),
               {"max_storage_bytes": max_storage_bytes, "seen_records": seen})
    mod = _PickleModule("aqr_restricted_pickle")
    mod.Unpickler = cls
    mod.load = lambda f, **kw: cls(f, **kw).load()
    mod.UnpicklingError = pickle.UnpicklingError
    return mod


def _check_zip(path: Path, size: int) -> None:
    """LoadError unless ``path`` is a plain ``torch.save`` zip (see the module docstring)."""
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise LoadError(path, f"truncated or corrupt zip archive ({one_line(e)[:200]})") from None
    names = [i.filename for i in infos]
    if not any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
        raise LoadError(path, "a zip archive, but not one written by torch.save (no data.pkl)")
    if any(n.rsplit("/", 1)[-1] == "constants.pkl" for n in names):
        raise LoadError(path, "a TorchScript archive (torch.jit.save), not a checkpoint; "
                              "TorchScript is never loaded")
    for info in infos:
        if info.compress_type != zipfile.ZIP_STORED:
            raise LoadError(path, f"zip entry {info.filename[:80]!r} is compressed; torch.save "
                                  "never compresses (refusing a possible decompression bomb)")
        if info.file_size > size:
            raise LoadError(path, f"zip entry {info.filename[:80]!r} declares {info.file_size} "
                                  f"bytes, more than the {size}-byte file holds")


def _corrupt_reason(e: BaseException, container: str) -> str:
    text = one_line(str(e)) or type(e).__name__
    if container == "zip" and ("central directory" in text or "zip archive" in text):
        return f"truncated or corrupt zip archive ({text[:200]})"
    if "data.pkl" in text and "not found" in text:
        return "a zip archive, but not one written by torch.save (no data.pkl)"
    if isinstance(e, EOFError):
        return "truncated file (unexpected end of data)"
    return f"not a readable PyTorch file ({type(e).__name__}: {text[:200]})"


def children_of(value: Any) -> list | None:
    """Values directly inside ``value`` (keys included), or None for a leaf."""
    if isinstance(value, dict):
        return [*value.keys(), *value.values()]
    if isinstance(value, (list, tuple, set, frozenset)):
        return list(value)
    if isinstance(value, InertRecord):
        return [v for _, v in value.children()]
    if isinstance(value, Placeholder):
        return list(vars(value).values())
    if type(value).__name__ == "ndarray" and getattr(value, "dtype", None) is not None \
            and value.dtype.hasobject:
        return list(value.reshape(-1))
    return None


_CONTAINERS = (dict, list, tuple, set, frozenset, InertRecord, Placeholder)


def _sub_containers(kids: list) -> list:
    out = [c for c in kids if isinstance(c, _CONTAINERS)]
    out += [c for c in kids if type(c).__name__ == "ndarray" and getattr(c, "dtype", None) is not None
            and c.dtype.hasobject]
    return out


def check_structure(path: str | os.PathLike, obj: Any, *, max_depth: int = MAX_NESTING,
                    max_nodes: int = MAX_NODES) -> None:
    """LoadError for cycles, nesting deeper than ``max_depth``, or more than ``max_nodes`` values
    once shared references are expanded (the work any recursive reader would do).

    Iterative, and linear in the number of distinct containers and their entries.
    """
    if children_of(obj) is None:
        return
    expanded: dict[int, int] = {}
    on_stack: set[int] = set()
    # frames: (container, its entries, its sub-containers, index of the next sub-container)
    stack: list[list] = []

    def enter(value: Any) -> None:
        if len(stack) >= max_depth:
            raise LoadError(path, f"the file nests containers more than {max_depth} levels deep")
        kids = children_of(value) or []
        on_stack.add(id(value))
        stack.append([value, kids, _sub_containers(kids), 0])

    enter(obj)
    while stack:
        frame = stack[-1]
        value, kids, subs, i = frame
        if i < len(subs):
            frame[3] = i + 1
            child = subs[i]
            if id(child) in on_stack:
                raise LoadError(path, "the file holds a container that contains itself")
            if id(child) not in expanded:
                enter(child)
            continue
        stack.pop()
        on_stack.discard(id(value))
        total = 1 + len(kids) - len(subs) + sum(expanded[id(c)] for c in subs)
        if total > max_nodes:
            raise LoadError(path, f"the file expands to more than {max_nodes} values "
                                  "(shared references counted each time they are reached)")
        expanded[id(value)] = total


def _torch_load(path: Path, size: int, use_mmap: bool, seen: set[str]) -> Any:
    import torch

    with warnings.catch_warnings():
        # e.g. "TypedStorage is deprecated" from legacy files: noise for a user, not a finding
        warnings.simplefilter("ignore")
        return torch.load(str(path), map_location="cpu", weights_only=False, mmap=use_mmap,
                          pickle_module=_pickle_module(size, seen))


def safe_torch_load(path: str | os.PathLike, *, mmap: bool | None = None,
                    trust: bool | None = None) -> RawLoad:
    """Unpickle a ``torch.save`` file with the restricted unpickler, or read a ``.safetensors`` file.

    ``mmap``: None = memory-map zip files of ``MMAP_MIN_BYTES`` or more; True/False force it
    (legacy non-zip files are never mapped). ``trust`` is accepted for compatibility and ignored.
    """
    p, size = check_readable_file(path)
    container = sniff(p, size)
    if container == "safetensors" or (p.suffix == ".safetensors" and container == "unknown"):
        return load_safetensors(p)
    if container == "pickle":
        raise LoadError(path, "a plain Python pickle, not a torch.save file; refusing to unpickle it")
    if container == "unknown":
        raise LoadError(path, "not a PyTorch checkpoint: neither a torch.save zip archive, "
                              "a legacy torch.save file nor safetensors (random or foreign bytes?)")
    if container == "zip":
        _check_zip(p, size)
    use_mmap = container == "zip" and (size >= MMAP_MIN_BYTES if mmap is None else bool(mmap))
    seen: set[str] = set()
    try:
        obj = _torch_load(p, size, use_mmap, seen)
    except LoadError:
        raise
    except RebuildError as e:
        raise LoadError(path, f"refused: {e} (nothing was executed)") from None
    except RecursionError:
        raise LoadError(path, "the pickle nests too deeply to read") from None
    except MemoryError:
        raise LoadError(path, "not enough memory to read the file") from None
    except pickle.UnpicklingError as e:
        raise LoadError(path, f"refused: {one_line(e)[:200]} (nothing was executed)") from None
    except Exception as e:  # noqa: BLE001 - any failure of a damaged file becomes one line
        raise LoadError(path, _corrupt_reason(e, container)) from None
    check_structure(path, obj)
    return RawLoad(obj=obj, container=container, mmapped=use_mmap, records=sorted(seen))


def load_safetensors(path: str | os.PathLike) -> RawLoad:
    """Tensors and header metadata of a ``.safetensors`` file (needs the ``safetensors`` package)."""
    p, _ = check_readable_file(path)
    try:
        from safetensors import safe_open
    except ImportError:
        raise LoadError(path, "reading .safetensors files needs the 'safetensors' package",
                        hint="pip install safetensors") from None
    try:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # noqa: BLE001 - SafetensorError and friends
        raise LoadError(path, f"not a readable safetensors file ({one_line(e)[:200]})") from None
    return RawLoad(obj=tensors, container="safetensors", metadata=metadata)
