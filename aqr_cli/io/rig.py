"""Camera rig files: read a rig json (or the packaged default) into a ``core`` CameraRig.

The core validates the parsed mapping (``core.geometry.rig_from_mapping``); this module does the
reading, so that the core never touches the file system. Errors keep the core's type
(``AQRInputError``) and words, since a bad rig file is bad model input.
"""

from __future__ import annotations

import json
import os
import stat
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from aqr_cli.core.errors import AQRInputError
from aqr_cli.core.geometry import CameraRig, rig_from_mapping
from aqr_cli.io.limits import MAX_RIG_BYTES

DEFAULT_RIG_FILE = "camera_rig_800x320.json"


def load_rig(path_or_dict: str | os.PathLike | Mapping[str, Any]) -> CameraRig:
    """Read and validate a rig json (path) or its parsed dict; see ``camera_rig_800x320.json``
    and ``core.geometry.rig_from_mapping`` for the keys."""
    if isinstance(path_or_dict, Mapping):
        return rig_from_mapping(path_or_dict)
    path = Path(path_or_dict)
    try:
        data = json.loads(_read_small_file(path))
    except (OSError, ValueError, RecursionError) as exc:
        raise AQRInputError(f"rig file {path}: cannot read json ({exc})") from None
    if not isinstance(data, Mapping):
        raise AQRInputError(f"rig file {path}: expected a json object")
    return rig_from_mapping(data)


def default_rig() -> CameraRig:
    """The packaged synthetic 6-camera rig for the 800x320 configuration."""
    text = (resources.files("aqr_cli") / "data" / DEFAULT_RIG_FILE).read_text()
    return rig_from_mapping(json.loads(text))


def _read_small_file(path: Path) -> str:
    """Text of a regular file of at most ``MAX_RIG_BYTES``, checked before it is opened (a FIFO
    or ``/dev/zero`` named as a rig would otherwise block or never end)."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise ValueError("not a regular file (a directory, pipe or device?)")
    if st.st_size > MAX_RIG_BYTES:
        raise ValueError(f"{st.st_size} bytes, more than a rig file needs ({MAX_RIG_BYTES})")
    with open(path, "rb") as f:
        return f.read(MAX_RIG_BYTES + 1).decode("utf-8")
