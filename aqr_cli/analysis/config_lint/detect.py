"""Whether a file is an mmcv config (judged by content, not by suffix)."""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

CONFIG_NAMES = frozenset({
    "_base_", "model", "data", "optimizer", "optimizer_config", "lr_config", "runner",
    "train_dataloader", "val_dataloader", "test_dataloader", "train_cfg", "dataset_type",
    "point_cloud_range", "voxel_size", "total_epochs", "checkpoint_config", "log_config",
    "load_from", "resume_from", "workflow", "work_dir",
})


_SNIFF_LIMIT = 4 * 2 ** 20  # configs are kilobytes; anything larger is not read as text


def looks_like_config(path: str | os.PathLike) -> bool:
    """True when ``path`` holds an mmcv config rather than a checkpoint, judged by content.

    A config is UTF-8 text (no NUL byte) that is Python with a top-level assignment to an mmcv
    config name (``model = ...``, ``_base_ = ...``, ``data = ...``), or a JSON object with such
    a key. A ``.py`` text file is always routed here, so that a syntax error or a script that is
    not a config gets a config error rather than "not a checkpoint".
    """
    p = Path(path)
    try:
        if not p.is_file() or p.stat().st_size > _SNIFF_LIMIT:
            return False
        with open(p, "rb") as fh:
            head = fh.read(4096)
            if b"\0" in head or head.startswith((b"PK\x03\x04", b"\x80")):
                return False
            data = head + fh.read()
    except OSError:
        return False
    if b"\0" in data:
        return False
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    if p.suffix == ".py":
        return True
    if p.suffix == ".json":
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError):
            return False
        return isinstance(obj, dict) and bool(CONFIG_NAMES & set(obj))
    return bool(CONFIG_NAMES & set(_top_level_names(text)))


def _top_level_names(text: str) -> list[str]:
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    names = []
    for stmt in tree.body:
        targets = stmt.targets if isinstance(stmt, ast.Assign) else (
            [stmt.target] if isinstance(stmt, ast.AnnAssign) else [])
        names += [t.id for t in targets if isinstance(t, ast.Name)]
    return names


