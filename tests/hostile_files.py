"""Builders of hostile and mutated files for the hostile-input tests (small, written to tmp_path)."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import torch

from conftest import CHECKPOINT, DUMP

STUB = "@@stub@@"


class Stub:
    """Pickles as ``stub_fn('@@stub@@')``; :func:`with_gadget` swaps that call for a gadget."""

    def __reduce__(self):
        return stub_fn, (STUB,)


def stub_fn(arg):  # pragma: no cover - never called: the stub is replaced before loading
    raise AssertionError("stub called")


def s(text: str) -> bytes:
    """Pickle opcode pushing a str (BINUNICODE)."""
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def stack_glob(module: str, name: str) -> bytes:
    return s(module) + s(name) + b"\x93"


def call(func: bytes, *args: bytes) -> bytes:
    """``func(*args)``: each of ``func``/``args`` is opcode bytes pushing one object."""
    return func + b"(" + b"".join(args) + b"tR"


def with_gadget(src_obj: dict, gadget: bytes, path: Path) -> Path:
    """``torch.save(src_obj)`` (holding one :class:`Stub`) with the stub call replaced by ``gadget``."""
    tmp = path.with_suffix(".tmp")
    torch.save(src_obj, tmp)
    with zipfile.ZipFile(tmp) as zin, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.endswith("/data.pkl"):
                start = data.index(b"c" + Stub.__module__.encode() + b"\nstub_fn\n")
                end = data.index(b"R", data.index(STUB.encode())) + 1
                data = data[:start] + gadget + data[end:]
            zout.writestr(info.filename, data)
    tmp.unlink()
    return path


def repack(src: Path, dst: Path, replace: dict[str, bytes] | None = None,
           compress: bool = False, extra: dict[str, bytes] | None = None) -> Path:
    """Copy a torch.save zip, replacing records (by name after the archive folder)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        prefix = zin.namelist()[0].split("/", 1)[0]
        for info in zin.infolist():
            short = info.filename.split("/", 1)[1]
            data = (replace or {}).get(short, zin.read(info.filename))
            zout.writestr(info.filename, data,
                          compress_type=zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED)
        for short, data in (extra or {}).items():
            zout.writestr(f"{prefix}/{short}", data)
    return dst


def checkpoint_obj() -> dict:
    return torch.load(CHECKPOINT, map_location="cpu", weights_only=True)


def dump_obj() -> dict:
    return torch.load(DUMP, map_location="cpu", weights_only=False)
