"""Atomic writes for reports: a file or folder appears whole, or not at all.

Files are written to a temporary sibling and moved into place with ``os.replace``; folders are
built in a temporary sibling folder and renamed into place on success
(:func:`staged_output_dir`). On any failure the temporary is removed and the target is left as it
was. Errors about the destination itself (parent missing and not creatable, not writable, a file
where a folder should be) are :class:`aqr_cli.io.errors.OutputError`.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

from aqr_cli.io.errors import OutputError


def _umask() -> int:
    try:  # Linux: read it without the set-and-restore race of os.umask
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _prepare_parent(path: Path) -> Path:
    """The parent folder of ``path``, created if missing; OutputError if it cannot be used."""
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise OutputError(f"cannot write {path}: {parent} is not a folder")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot write {path}: cannot create {parent} ({e.strerror or e})") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {path}: {parent} is not writable")
    return parent


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", *,
                encoding: str | None = None) -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; on a clean exit it replaces ``path``.

    ``mode`` is ``'w'`` or ``'wb'``. If the block raises, the temporary is deleted and ``path``
    is untouched. The file gets the usual permissions (``0o666`` minus the umask).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open: mode must be 'w' or 'wb', got {mode!r}")
    target = Path(path)
    if target.is_dir():
        raise OutputError(f"cannot write {target}: it is a folder")
    parent = _prepare_parent(target)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
    except OSError as e:
        raise OutputError(f"cannot write {target}: {e.strerror or e}") from None
    try:
        text = mode == "w"
        with os.fdopen(fd, mode, encoding=(encoding or "utf-8") if text else None,
                       newline="" if text else None) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (no newline translation); returns the path."""
    with atomic_open(path, "w", encoding=encoding) as f:
        f.write(text)
    return Path(path)


def atomic_write_json(path: str | os.PathLike, doc: Any, *, indent: int = 2) -> Path:
    """Write one JSON document (NaN/Inf refused) atomically, with a trailing newline."""
    text = json.dumps(doc, indent=indent, allow_nan=False) + "\n"
    return atomic_write_text(path, text)


def atomic_save_figure(fig: Any, path: str | os.PathLike, *, dpi: float | None = None) -> Path:
    """Save a matplotlib Figure as PNG atomically, with byte-identical output for identical input.

    ``fig`` may also be a deferred figure (an object with ``build()`` returning the Figure, such
    as :class:`aqr_cli.views.outputs.LazyFigure`): it is built here, in the process that saves
    it. The figure is drawn by ``savefig`` and encoded by :func:`aqr_cli.io.png.figure_png`
    (no text chunk, so no version string; zlib level
    :data:`aqr_cli.io.png.PNG_COMPRESS_LEVEL`). Only ``.png`` paths are accepted.
    """
    from aqr_cli.io.png import figure_png

    target = Path(path)
    if target.suffix.lower() != ".png":
        raise ValueError(f"atomic_save_figure writes PNG only; got {target.name!r}")
    if not hasattr(fig, "savefig"):
        fig = fig.build()
    return atomic_write_bytes(target, figure_png(fig, dpi=dpi))


def figure_workers() -> int:
    """Processes that save figures: ``AQR_FIGURE_WORKERS`` if set, else the usable CPUs (max 2).

    Saving (drawing every artist, then PNG encoding) is most of a report's wall time and does
    not need the GIL's owner: forked copies of the process draw figures side by side.
    """
    env = os.environ.get("AQR_FIGURE_WORKERS", "").strip()
    if env.isdigit() and int(env) >= 1:
        return int(env)
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(2, cpus))


_CLAIM = struct.Struct("<I")
_MAX_CLAIMS = 8192  # 32 KiB of indices: under a pipe's 64 KiB, so filling it never blocks


def _claims(n: int) -> int:
    """A pipe holding the indices ``0 .. n-1`` (``n <= _MAX_CLAIMS``); returns its read end.

    Every process that saves figures of one call takes the next one by reading an index: a
    pipe read of four bytes is atomic, so no figure is taken twice, and a process that drew
    cheap figures takes more (figures differ several-fold in cost; static shares left one
    process idle while the other drew two attention pages)."""
    read_fd, write_fd = os.pipe()
    try:
        data = b"".join(_CLAIM.pack(i) for i in range(n))
        while data:
            data = data[os.write(write_fd, data):]
    finally:
        os.close(write_fd)
    return read_fd


def _save_claimed(items: list, claims: int) -> None:
    """Save (and build, if deferred) the figures of ``items`` whose indices this process reads
    from ``claims``, until none is left."""
    while len(data := os.read(claims, _CLAIM.size)) == _CLAIM.size:
        fig, path = items[_CLAIM.unpack(data)[0]]
        atomic_save_figure(fig, path)


def _fork_saver(items: list, claims: int) -> tuple[int, int]:
    """Fork a child that saves the figures of ``items`` it claims (:func:`_claims`) and exits;
    returns (pid, read end of its error pipe).

    The caller freezes the collector around the fork: a child's collections would otherwise
    write to (and so copy) every page that holds a tracked object.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: save, report a failure on the pipe, never return into the caller
        code = 0
        try:
            import gc

            gc.disable()
            os.close(read_fd)
            _save_claimed(items, claims)
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            code = 1
            try:
                os.write(write_fd, f"{type(e).__name__}: {e}".encode()[:4000])
            except OSError:
                pass
        finally:
            os._exit(code)
    os.close(write_fd)
    return pid, read_fd


def _reap(pid: int, read_fd: int) -> str | None:
    """Wait for a saver child; its error message, or None if it succeeded. The pipe is closed
    only once the child is reaped, so an interrupted wait leaves both to :func:`_stop`."""
    chunks = []
    while chunk := os.read(read_fd, 65536):
        chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    os.close(read_fd)
    if os.waitstatus_to_exitcode(status) != 0:
        return b"".join(chunks).decode(errors="replace") or f"figure worker exited with status {status}"
    return None


def _stop(children: list) -> None:
    """Kill and reap saver children whose output is no longer wanted (the run is failing or was
    interrupted): none may go on writing into a staging folder that is being removed."""
    import signal

    for pid, read_fd in children:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        try:
            os.close(read_fd)
        except OSError:  # closed by a reap that was interrupted after it
            pass
    children.clear()


def atomic_save_figures(items: list, workers: int | None = None) -> list[Path]:
    """Save ``[(figure, path), ...]`` like :func:`atomic_save_figure`, in up to ``workers``
    processes (default :func:`figure_workers`); returns the paths in input order.

    Forked children and this process take the figures one by one (:func:`_claims`), building
    deferred ones where they are saved (bytes are those of a serial save: drawing does not
    depend on the process). A child's failure is raised here as ``RuntimeError``.
    """
    items = list(items)
    workers = figure_workers() if workers is None else max(1, int(workers))
    if min(workers, len(items)) <= 1 or not hasattr(os, "fork"):
        return [atomic_save_figure(fig, path) for fig, path in items]
    for start in range(0, len(items), _MAX_CLAIMS):
        chunk = items[start:start + _MAX_CLAIMS]
        _save_shared(chunk, min(workers, len(chunk)))
    return [Path(path) for _, path in items]


def _save_shared(items: list, workers: int) -> None:
    """:func:`atomic_save_figures` of at most ``_MAX_CLAIMS`` items: ``workers - 1`` children
    and this process; no child outlives the call."""
    import gc

    claims = _claims(len(items))
    children: list[tuple[int, int]] = []
    try:
        for _ in range(workers - 1):
            gc.freeze()
            try:
                children.append(_fork_saver(items, claims))
            finally:
                gc.unfreeze()
        _save_claimed(items, claims)
        failures = []
        while children:
            message = _reap(*children[0])
            children.pop(0)
            if message:
                failures.append(message)
    except BaseException:  # a failure or Ctrl-C: no child may outlive this call
        _stop(children)
        raise
    finally:
        os.close(claims)
    if failures:
        raise RuntimeError("saving figures failed: " + "; ".join(failures))


def atomic_save_npz(path: str | os.PathLike, *, compressed: bool = True, **arrays: Any) -> Path:
    """Save arrays as ``.npz`` atomically (no pickled objects: object arrays are refused)."""
    import numpy as np

    plain: dict[str, Any] = {}
    for name, value in arrays.items():
        arr = np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value)
        if arr.dtype == object:
            raise ValueError(f"atomic_save_npz: {name!r} is an object array (would need pickle)")
        plain[name] = arr
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **plain)
    return atomic_write_bytes(path, buf.getvalue())


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


@contextmanager
def staged_output_dir(out_dir: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder next to ``out_dir``; on success it becomes ``out_dir``.

    An existing ``out_dir`` is renamed aside, the staged folder renamed into place, and the old
    one removed, so readers see either the old or the new contents. If the block raises, the
    staged folder is removed and ``out_dir`` is left exactly as it was. A symlinked ``out_dir`` is
    resolved first (its target is replaced).
    """
    target = Path(out_dir)
    if target.is_symlink():
        target = target.resolve()
    if target.exists() and not target.is_dir():
        raise OutputError(f"cannot write to {target}: it exists and is not a folder")
    parent = _prepare_parent(target)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-", dir=parent))
    except OSError as e:
        raise OutputError(f"cannot write to {target}: {e.strerror or e}") from None
    try:
        yield staging
        os.chmod(staging, 0o777 & ~_umask())
        _swap_into_place(staging, target, parent)
    except BaseException:
        _remove_tree(staging)
        raise


def _swap_into_place(staging: Path, target: Path, parent: Path) -> None:
    old: Path | None = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=parent))
        old.rmdir()  # only the unique name is wanted
        try:
            os.rename(target, old)
        except OSError as e:
            raise OutputError(f"cannot replace {target}: {e.strerror or e}") from None
    try:
        os.rename(staging, target)
    except OSError as e:
        if old is not None:
            os.rename(old, target)
        raise OutputError(f"cannot create {target}: {e.strerror or e}") from None
    if old is not None:
        _remove_tree(old)
