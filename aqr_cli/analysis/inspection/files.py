"""``inspect-checkpoint`` of any opened file: the checkpoint or the dump report."""

from __future__ import annotations

import os

from aqr_cli.analysis.inspection.checkpoint import inspect_checkpoint
from aqr_cli.analysis.inspection.dump import inspect_dump
from aqr_cli.analysis.inspection.reports import CheckpointReport, DumpReport
from aqr_cli.core.geometry import CameraRig
from aqr_cli.inputs.opened import Opened, OpenedCheckpoint, OpenedDump, Source, open_input


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
