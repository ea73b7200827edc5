"""Load ``torch.save`` files and ``.safetensors`` without running code a file names.

Every pickle goes through ``torch.load(weights_only=True)`` inside
``torch.serialization.safe_globals`` with the fixed allow-list of
:func:`aqr_cli.io.placeholders.allowed_globals`. A file naming anything else is refused with
one line that lists the refused globals. Full unpickling happens only with ``trust=True``,
after a :class:`TrustedLoadWarning`, and even then never for files that name process, shell or
import machinery (``os.system``, ``subprocess``, ``builtins.eval`` ...). Zip-format files of
``MMAP_MIN_BYTES`` or more are memory-mapped.

Every failure is a :class:`aqr_cli.io.errors.LoadError` whose message starts with the file name.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import re
import types
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from aqr_cli.io.errors import LoadError, TrustedLoadWarning, one_line
from aqr_cli.io.placeholders import allowed_globals, placeholder_by_name

MMAP_MIN_BYTES = 64 * 2**20
"""Zip-format files at least this large are memory-mapped when ``mmap=None`` (auto)."""

_ZIP_MAGIC = b"PK\x03\x04"
# torch's legacy (pre-1.6, non-zip) format starts with the pickled magic number 0x1950a86a20f9469cfc6c.
_LEGACY_MAGIC = b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")

# Names refused even with trust=True: nothing that loads weights has a reason to name them.
_DENY_MODULES = frozenset({
    "os", "posix", "nt", "sys", "subprocess", "socket", "shutil", "pty", "importlib", "runpy",
    "ctypes", "code", "codeop", "webbrowser", "multiprocessing", "signal", "pickle", "_pickle",
    "marshal", "tempfile", "pathlib", "io", "_io", "threading", "asyncio", "urllib", "http",
})
_DENY_BUILTINS = frozenset({
    "eval", "exec", "compile", "__import__", "getattr", "setattr", "delattr", "open", "input",
    "breakpoint", "globals", "locals", "vars", "exit", "quit", "help", "memoryview",
})


@dataclass
class RawLoad:
    """What :func:`safe_torch_load` read: the unpickled object and how it was read."""

    obj: Any
    container: str  # 'zip' | 'legacy' | 'safetensors'
    mmapped: bool = False
    trusted: bool = False  # True when full unpickling (trust=True) was needed
    refused_globals: list[str] = field(default_factory=list)  # what trust=True let through
    metadata: dict[str, str] = field(default_factory=dict)  # safetensors header metadata


def check_readable_file(path: str | os.PathLike) -> tuple[Path, int]:
    """``(Path, size in bytes)`` of an existing, non-empty, readable regular file, else LoadError."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise LoadError(path, "no such file") from None
    except PermissionError:
        raise LoadError(path, "cannot access the file: permission denied") from None
    except OSError as e:
        raise LoadError(path, f"cannot access the file: {e.strerror or e}") from None
    if p.is_dir():
        raise LoadError(path, "is a directory, not a checkpoint file")
    if not p.is_file():
        raise LoadError(path, "is not a regular file")
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


def _wo_reason(message: str) -> str:
    """The useful sentence of torch's 'Weights only load failed' message."""
    m = re.search(r"WeightsUnpickler error:\s*(.*)", message)
    text = m.group(1) if m else message
    text = re.split(r"(?<=\.) Please use|\n", text, maxsplit=1)[0]
    return one_line(text)[:300]


def _globals_from_message(message: str) -> list[str]:
    return sorted(set(re.findall(r"GLOBAL ([\w.]+)", message)))


def _data_pkl_from_zip(path: Path) -> bytes | None:
    try:
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            return z.read(names[0]) if names else None
    except (zipfile.BadZipFile, OSError, KeyError, ValueError):
        return None


def scan_pickle_globals(data: BinaryIO, max_pickles: int = 1) -> list[str]:
    """Every global (``module.name``) named by the first ``max_pickles`` pickles of a stream.

    Static (``pickletools.genops``; nothing is unpickled). ``STACK_GLOBAL`` names are recovered
    from the preceding string pushes, memo included, which covers what ``pickle`` writes.
    """
    found: list[str] = []
    for _ in range(max_pickles):
        strings: list[str] = []
        memo: dict[int, Any] = {}
        last: Any = None
        try:
            for op, arg, _pos in pickletools.genops(data):
                name = op.name
                if name == "GLOBAL" or name == "INST":
                    module, _, qual = str(arg).partition(" ")
                    found.append(f"{module}.{qual}")
                elif name == "STACK_GLOBAL" and len(strings) >= 2:
                    found.append(f"{strings[-2]}.{strings[-1]}")
                elif isinstance(arg, str) and name not in ("GLOBAL", "INST"):
                    strings.append(arg)
                    last = arg
                    continue
                elif name in ("MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"):
                    memo[len(memo) if name == "MEMOIZE" else arg] = last
                    continue
                elif name in ("GET", "BINGET", "LONG_BINGET"):
                    value = memo.get(arg)
                    if isinstance(value, str):
                        strings.append(value)
                    last = value
                    continue
                last = None
        except Exception:  # noqa: BLE001 - a damaged stream: report what was found so far
            break
    return sorted(set(found))


def scan_file_globals(path: Path, container: str) -> list[str]:
    """Globals named by a ``torch.save`` file (zip: ``data.pkl``; legacy: the object pickles)."""
    if container == "zip":
        blob = _data_pkl_from_zip(path)
        return [] if blob is None else scan_pickle_globals(io.BytesIO(blob))
    with open(path, "rb") as f:
        # magic number, protocol version, sys info, the object, the storage keys
        return scan_pickle_globals(f, max_pickles=5)


def _unsafe_globals(path: Path, container: str, message: str) -> list[str]:
    """Globals of the file outside the allow-list (call inside the safe_globals context)."""
    import torch

    if container == "zip":
        try:
            return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
        except Exception:  # noqa: BLE001 - e.g. an opcode torch's scanner does not know
            pass
    allowed = set(placeholder_by_name())
    for entry in allowed_globals():
        allowed.add(entry[1] if isinstance(entry, tuple) else f"{entry.__module__}.{entry.__qualname__}")
    try:
        from torch._weights_only_unpickler import _get_allowed_globals

        allowed |= set(_get_allowed_globals())
    except Exception:  # noqa: BLE001 - private torch API; the message fallback below still works
        pass
    names = [g for g in scan_file_globals(path, container) if g not in allowed]
    return names or _globals_from_message(message)


def denied_globals(names: list[str]) -> list[str]:
    """The subset of ``names`` refused even with ``trust=True``."""
    out = []
    for full in names:
        module, _, leaf = full.rpartition(".")
        root = module.split(".")[0]
        if root in _DENY_MODULES or (module in ("builtins", "__builtin__") and leaf in _DENY_BUILTINS):
            out.append(full)
    return out


class _TrustedUnpickler(pickle.Unpickler):
    """Full unpickler for ``trust=True``: known upstream names still map to the inert stand-ins."""

    def find_class(self, module: str, name: str) -> Any:
        full = f"{module}.{name}"
        table = placeholder_by_name()
        if full in table:
            return table[full]
        if denied_globals([full]):
            raise pickle.UnpicklingError(f"refusing global {full}")
        return super().find_class(module, name)


def _trusted_pickle_module() -> types.ModuleType:
    mod = types.ModuleType("aqr_trusted_pickle")
    mod.Unpickler = _TrustedUnpickler
    mod.load = lambda f, **kw: _TrustedUnpickler(f, **kw).load()
    mod.UnpicklingError = pickle.UnpicklingError
    return mod


def _check_zip(path: Path) -> None:
    """LoadError unless ``path`` is a readable zip holding a ``torch.save`` ``data.pkl``."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise LoadError(path, f"truncated or corrupt zip archive ({one_line(e)[:200]})") from None
    if not any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
        raise LoadError(path, "a zip archive, but not one written by torch.save (no data.pkl)")
    if any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names):
        raise LoadError(path, "a TorchScript archive (torch.jit.save), not a checkpoint")


def _corrupt_reason(e: BaseException, container: str) -> str:
    text = one_line(str(e)) or type(e).__name__
    if container == "zip" and ("central directory" in text or "zip archive" in text):
        return f"truncated or corrupt zip archive ({text[:200]})"
    if "data.pkl" in text and "not found" in text:
        return "a zip archive, but not one written by torch.save (no data.pkl)"
    if isinstance(e, EOFError):
        return "truncated file (unexpected end of data)"
    return f"not a readable PyTorch file ({type(e).__name__}: {text[:200]})"


def _torch_load(path: Path, *, weights_only: bool, use_mmap: bool, pickle_module: Any = None) -> Any:
    import torch

    kwargs: dict[str, Any] = dict(map_location="cpu", weights_only=weights_only, mmap=use_mmap)
    if pickle_module is not None:
        kwargs["pickle_module"] = pickle_module
    with warnings.catch_warnings():
        # e.g. "TypedStorage is deprecated" from legacy files: noise for a user, not a finding
        warnings.simplefilter("ignore", UserWarning)
        return torch.load(str(path), **kwargs)


def safe_torch_load(path: str | os.PathLike, *, trust: bool = False,
                    mmap: bool | None = None) -> RawLoad:
    """Unpickle a ``torch.save`` file with the allow-list, or a ``.safetensors`` file.

    ``mmap``: None = memory-map zip files of ``MMAP_MIN_BYTES`` or more; True/False force it
    (legacy non-zip files are never mapped). ``trust=True`` allows full unpickling, with a
    :class:`TrustedLoadWarning`, when the allow-listed load refuses the file.
    """
    import torch

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
        _check_zip(p)
    use_mmap = container == "zip" and (size >= MMAP_MIN_BYTES if mmap is None else bool(mmap))

    message = ""
    try:
        with torch.serialization.safe_globals(list(allowed_globals())):
            try:
                obj = _torch_load(p, weights_only=True, use_mmap=use_mmap)
                return RawLoad(obj=obj, container=container, mmapped=use_mmap)
            except pickle.UnpicklingError as e:
                message = str(e)
                refused = _unsafe_globals(p, container, message)
    except LoadError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure of a damaged file becomes one line
        raise LoadError(path, _corrupt_reason(e, container)) from None

    if not trust:
        if refused:
            reason = ("refused to unpickle: the file names globals outside the allow-list: "
                      + ", ".join(refused) + " (nothing was executed)")
        else:
            reason = f"refused to unpickle: {_wo_reason(message)} (nothing was executed)"
        raise LoadError(path, reason, blocked_globals=refused,
                        hint="load it with --trust-checkpoint only if you trust where the file came from")

    scanned = refused or []
    try:
        scanned = sorted(set(scanned) | set(scan_file_globals(p, container)))
    except OSError:
        pass
    deny = denied_globals(scanned)
    if deny:
        raise LoadError(path, "refused to unpickle even with trust: the file names "
                              + ", ".join(deny) + " (nothing was executed)", blocked_globals=deny)
    warnings.warn(TrustedLoadWarning(
        f"{path}: fully unpickling a file that names {', '.join(refused) or 'non-allow-listed data'}; "
        "code named in the file can run"), stacklevel=2)
    try:
        obj = _torch_load(p, weights_only=False, use_mmap=use_mmap, pickle_module=_trusted_pickle_module())
    except Exception as e:  # noqa: BLE001
        if isinstance(e, (ImportError, AttributeError)):
            raise LoadError(path, f"cannot unpickle even with trust: {one_line(e)}") from None
        raise LoadError(path, _corrupt_reason(e, container)) from None
    return RawLoad(obj=obj, container=container, mmapped=use_mmap, trusted=True, refused_globals=refused)


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
