"""Errors of ``aqr_cli.analysis``: an analysis asked of a source that lacks what it needs.

They subclass the core's :class:`AQRInputError`, so every caller that reports bad input already
reports them. The message states the fact about the source and names no command-line flag; a
front end that knows how the missing part is supplied reads :attr:`MissingPartError.part` (the
CLI adds the flag, see ``aqr_cli.cli._common``).
"""

from __future__ import annotations

from aqr_cli.core.errors import AQRInputError

PARTS = ("embeddings", "camera_cells", "features")
"""What a source may lack: query/key position embeddings (a dump without its checkpoint's
reference points), camera cells (a dump stores no ``pts_pers``), features (nothing to modulate)."""


class MissingPartError(AQRInputError):
    """A source lacks ``part`` (one of :data:`PARTS`) that the analysis needs.

    ``str(err)`` is one line starting with the source label, e.g.
    ``weights_iter_4.pth: attention needs query/key position embeddings; none given``.
    """

    def __init__(self, label: str, part: str, message: str):
        if part not in PARTS:
            raise ValueError(f"unknown part {part!r}; expected one of {PARTS}")
        self.label, self.part = label, part
        super().__init__(f"{label}: {message}")
