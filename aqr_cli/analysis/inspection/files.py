"""``inspect-checkpoint`` of any opened file: the checkpoint or the dump report; of many paths:
one result each, a file that fails becoming a :class:`FileFailure` so the others are reported."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from aqr_cli.analysis.config_lint import lint_config, looks_like_config
from aqr_cli.analysis.inspection.checkpoint import inspect_checkpoint
from aqr_cli.analysis.inspection.dump import inspect_dump
from aqr_cli.analysis.inspection.reports import CheckpointReport, DumpReport
from aqr_cli.analysis.inspection.tree import key_tree
from aqr_cli.core.errors import AQRInputError
from aqr_cli.core.geometry import CameraRig
from aqr_cli.inputs.opened import (Opened, OpenedCheckpoint, OpenedDump, Opener, Source,
                                   open_companions, open_input)
from aqr_cli.io.errors import LoadError


def inspect_file(opened: Opened | Source, *, rig: CameraRig | str | os.PathLike | None = None,
                 config_path: str | os.PathLike | None = None,
                 checkpoint: OpenedCheckpoint | Source | None = None
                 ) -> CheckpointReport | DumpReport:
    """:func:`inspect_checkpoint` or :func:`inspect_dump`, whichever ``opened`` holds.

    A path is opened here (with ``config_path`` for a checkpoint's settings).
    """
    if not isinstance(opened, (OpenedCheckpoint, OpenedDump)):
        opened = open_input(opened, config_path)
    if isinstance(opened, OpenedDump):
        return inspect_dump(opened, checkpoint=checkpoint, config_path=config_path)
    return inspect_checkpoint(opened, rig=rig)


class FileFailure:
    """One file that could not be inspected: its one-line message, hint and bare reason."""

    def __init__(self, path: Path, message: str, hint: str | None = None,
                 reason: str | None = None):
        self.path, self.message, self.hint = Path(path), message, hint
        self.reason = " ".join((reason or message).split())

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "error": " ".join(self.message.split())}


def inspect_paths(paths: list[Path], *, keys: bool = False, rig: str | os.PathLike | None = None,
                  config: str | os.PathLike | None = None,
                  checkpoint: str | os.PathLike | None = None) -> list:
    """One result per path, in order: a report (:func:`inspect_file`, or the config lint of an
    mmcv config), ``(path, key tree)`` with ``keys``, or a :class:`FileFailure`.

    A bad ``rig``, ``config`` or ``checkpoint`` fails the whole call first
    (:func:`aqr_cli.inputs.opened.open_companions`); each file is loaded once, whatever roles it
    plays.
    """
    opener = Opener()
    ck = open_companions(opener, rig=rig, config=config, checkpoint=checkpoint)
    return [_inspect_one(p, opener, keys=keys, rig=rig, config=config, ck=ck) for p in paths]


def _inspect_one(p: Path, opener: Opener, *, keys: bool, rig, config, ck):
    """The report (or key tree) of one file; whatever it raises becomes a FileFailure."""
    try:
        if looks_like_config(p):
            return FileFailure(p, f"{p}: an mmcv config has no key tree (--keys is for "
                                  "checkpoints and dumps)") if keys else lint_config(p)
        if keys:
            return (p, key_tree(opener.file(p)))
        return inspect_file(open_input(opener.file(p), config), rig=rig, config_path=config,
                            checkpoint=ck)
    except LoadError as e:
        return FileFailure(p, str(e), e.hint, e.reason)
    except AQRInputError as e:
        text = str(e) if str(e).startswith(str(p)) else f"{p}: {e}"
        return FileFailure(p, text, getattr(e, "hint", None), reason=str(e))
    except (OSError, MemoryError, RecursionError) as e:
        return FileFailure(p, f"{p}: {type(e).__name__}: {e}", reason=str(e))
    except Exception as e:  # noqa: BLE001 - a bug shows for this file; the others are reported
        if os.environ.get("AQR_DEBUG"):
            raise
        return FileFailure(p, f"{p}: internal error ({type(e).__name__}: {e})",
                           "this is a bug in aqr; rerun with AQR_DEBUG=1 for the traceback",
                           reason=str(e))
