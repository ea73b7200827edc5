"""The ``--out`` folder contract shared by every command.

Rules (README, "Output folders"):

- a command never deletes or overwrites a file it did not write;
- a missing or empty ``--out`` is used as is; a non-empty one must hold an earlier output of
  the *same* command (recognised by the manifest :data:`MANIFEST` that every run writes),
  otherwise it is refused with one line and nothing is touched;
- an earlier output is replaced as a whole: everything is built in a staging folder first, and
  only when the command has finished is it moved into place. Files the user added to an output
  folder are kept (a user file whose name a new output needs is refused before any work);
- staging folders of runs that were killed are removed by the next run into the same place
  (a live run holds an ``flock`` on its staging folder, so concurrent runs never remove each
  other's);
- SIGINT and SIGTERM are held back while the new output is being moved into place.

``--out .`` and any path naming the current folder (or one of its parents) work like any other
folder; they are filled file by file instead of being renamed, so the shell's current folder
stays valid.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import signal
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from aqr_cli.io.atomic import _prepare_parent, _umask
from aqr_cli.io.errors import OutputError

MANIFEST = ".aqr-manifest.json"
STAGING_PREFIX = ".aqr-staging-"
_MANIFEST_FORMAT = 1


def read_manifest(folder: Path) -> dict | None:
    """The manifest of an earlier ``aqr`` output in ``folder``, or None when there is none."""
    path = folder / MANIFEST
    try:
        if not path.is_file() or path.stat().st_size > 4 << 20:
            return None
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not (isinstance(doc, dict) and isinstance(doc.get("command"), str)
            and isinstance(doc.get("files"), list)
            and all(isinstance(f, str) and _safe_relative(f) for f in doc["files"])):
        return None
    return doc


def _safe_relative(name: str) -> bool:
    p = Path(name)
    return bool(name) and not p.is_absolute() and ".." not in p.parts


def _files_below(folder: Path) -> set[str]:
    """Relative paths of every file (and symlink) below ``folder``, staging folders left out."""
    out: set[str] = set()
    for root, dirs, files in os.walk(folder):
        links = [d for d in dirs if os.path.islink(os.path.join(root, d))]
        dirs[:] = [d for d in dirs if d not in links and not d.startswith(STAGING_PREFIX)]
        rel = os.path.relpath(root, folder)
        out.update(os.path.normpath(os.path.join(rel, name)) for name in files + links)
    return out


def _holds_cwd(target: Path) -> bool:
    try:
        cwd = Path.cwd().resolve()
    except OSError:
        return False
    return cwd == target or target in cwd.parents


def _lock(folder: Path) -> int:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def remove_stale_staging(folder: Path) -> list[Path]:
    """Remove staging folders in ``folder`` whose run is gone (no lock held); returns them."""
    removed: list[Path] = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(STAGING_PREFIX) or entry.is_symlink() or not entry.is_dir():
            continue
        try:
            fd = _lock(entry)
        except OSError:
            continue  # a live run holds it
        try:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
        finally:
            os.close(fd)
    return removed


class _HeldSignals:
    """Hold SIGINT/SIGTERM back inside the block and deliver them after it (main thread only)."""

    def __enter__(self) -> "_HeldSignals":
        self.pending: list[int] = []
        self.saved: dict[signal.Signals, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.saved[sig] = signal.signal(sig, lambda s, f: self.pending.append(s))
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)
        for number in self.pending:
            os.kill(os.getpid(), number)


def _plan(target: Path, command: str, shown: str) -> tuple[dict | None, set[str]]:
    """(earlier manifest or None, user files to keep); OutputError when the folder is not ours."""
    if not target.exists():
        return None, set()
    if not target.is_dir():
        raise OutputError(f"{shown}: exists and is not a folder")
    present = _files_below(target)
    manifest = read_manifest(target)
    if manifest is None:
        present.discard(MANIFEST)
        if present:
            raise OutputError(f"{shown}: folder is not empty and holds no earlier aqr output; "
                              "choose a new or empty folder")
        return None, set()
    if manifest["command"] != command:
        raise OutputError(f"{shown}: holds the output of 'aqr {manifest['command']}'; "
                          f"choose another folder for 'aqr {command}'")
    ours = set(manifest["files"]) | {MANIFEST}
    return manifest, present - ours


def _make_staging(target: Path, parent: Path) -> Path:
    prefix = f"{STAGING_PREFIX}{os.getpid()}-"
    places = [parent] + ([target] if target.is_dir() else [])
    last: OSError | None = None
    for place in places:
        try:
            return Path(tempfile.mkdtemp(prefix=prefix, dir=place))
        except OSError as e:
            last = e
    raise OutputError(f"cannot write to {target}: {getattr(last, 'strerror', None) or last}")


@contextmanager
def output_folder(out: str | os.PathLike, command: str) -> Iterator[Path]:
    """Yield an empty staging folder; on a clean exit its files become ``out`` (rules above).

    The checks that can refuse ``out`` run before the block, so a refused folder costs no work.
    If the block raises (or is interrupted), the staging folder is removed and ``out`` is left
    exactly as it was.
    """
    target = Path(os.path.abspath(out))
    if target.is_symlink():
        target = target.resolve()
    parent = _prepare_parent(target)
    remove_stale_staging(parent)
    if target.is_dir():
        remove_stale_staging(target)
    shown = os.fspath(out)
    manifest, keep = _plan(target, command, shown)
    staging: Path | None = None
    try:
        # a signal right after the folder is made (when a watcher sees it appear) must not
        # strand it before `staging` is set: held here, raised below, inside this try
        with _HeldSignals():
            staging = _make_staging(target, parent)
        lock_fd = _lock(staging)
        try:
            yield staging
            new_files = _files_below(staging)
            if not new_files:
                return  # a run that wrote nothing leaves --out as it was
            clash = sorted(keep & new_files)
            if clash:
                raise OutputError(f"{shown}: {clash[0]} was not written by aqr; refusing to "
                                  "overwrite it")
            _write_manifest(staging, command, new_files)
            with _HeldSignals():
                _commit(staging, target, manifest, keep, new_files)
        finally:
            os.close(lock_fd)
    finally:
        if staging is not None and staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _write_manifest(staging: Path, command: str, files: set[str]) -> None:
    doc = {"format": _MANIFEST_FORMAT, "command": command, "files": sorted(files)}
    (staging / MANIFEST).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")


def _commit(staging: Path, target: Path, manifest: dict | None, keep: set[str],
            new_files: set[str]) -> None:
    os.chmod(staging, 0o777 & ~_umask())
    if not target.exists():
        _rename(staging, target)
        return
    if manifest is not None and not keep and not _holds_cwd(target) \
            and staging.parent == target.parent:
        old = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-old-", dir=target.parent))
        old.rmdir()
        _rename(target, old)
        try:
            _rename(staging, target)
        except OutputError:
            os.rename(old, target)
            raise
        shutil.rmtree(old, ignore_errors=True)
        return
    _merge(staging, target, set(manifest["files"]) if manifest else set(), new_files)


def _rename(src: Path, dst: Path) -> None:
    try:
        os.rename(src, dst)
    except OSError as e:
        raise OutputError(f"cannot write {dst}: {e.strerror or e}") from None


def _merge(staging: Path, target: Path, old_files: set[str], new_files: set[str]) -> None:
    """Move the staged files into an existing folder one by one; the manifest goes last."""
    for rel in sorted(new_files):
        dst = target / rel
        if dst.is_dir() and not dst.is_symlink():
            raise OutputError(f"{dst}: a folder not written by aqr stands where an output file "
                              "goes; refusing to touch it")
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / rel, dst)
        except OSError as e:
            raise OutputError(f"cannot write {dst}: {e.strerror or e}") from None
    for rel in sorted(old_files - new_files, reverse=True):
        try:
            (target / rel).unlink()
        except FileNotFoundError:
            pass
        except OSError as e:
            if e.errno not in (errno.EISDIR, errno.EPERM):
                raise OutputError(f"cannot remove {target / rel}: {e.strerror or e}") from None
        _prune_empty(target, Path(rel).parent)
    os.replace(staging / MANIFEST, target / MANIFEST)


def _prune_empty(target: Path, rel_dir: Path) -> None:
    """Remove folders that the removal of old outputs left empty, up to ``target``."""
    while rel_dir != Path("."):
        try:
            (target / rel_dir).rmdir()
        except OSError:
            return
        rel_dir = rel_dir.parent
