"""The key tree of ``inspect-checkpoint --keys``: a file's structure as nested nodes."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from aqr_cli.inputs.opened import Opened
from aqr_cli.io.checkpoint import LoadedFile, stand_in

_MAX_CHILDREN = 50


def _leaf(node: dict[str, Any], value: Any) -> bool:
    """Fill ``node`` for a value shown without children; False for a container."""
    if isinstance(value, torch.Tensor):
        node.update(type="tensor", shape=list(value.shape), dtype=str(value.dtype).replace("torch.", ""))
    elif isinstance(value, np.ndarray):
        node.update(type="ndarray", shape=list(value.shape), dtype=str(value.dtype))
    elif isinstance(value, str):
        short = len(value) <= 80 and "\n" not in value
        node["type"] = "str"
        node["value" if short else "len"] = value if short else len(value)
    elif isinstance(value, (bool, int, float)) or value is None:
        node.update(type=type(value).__name__, value=value)
    elif isinstance(value, type):
        node.update(type="class", value=getattr(value, "upstream_name", lambda: value.__name__)())
    elif stand_in(value) is None and not isinstance(value, (Mapping, list, tuple)):
        node.update(type=type(value).__name__, value=str(value)[:80])
    else:
        return False
    return True


def _children(node: dict[str, Any], value: Any) -> list | None:
    """The (key, value) children of a container (None: a short list shown as its value)."""
    found = stand_in(value)
    if found is not None:
        node["type"] = found[0]
        return list(found[1].items())
    node["type"] = type(value).__name__
    if isinstance(value, Mapping):
        return list(value.items())
    if value and all(isinstance(v, (int, float, str, bool)) or v is None for v in value) \
            and len(value) <= 12:
        node["value"] = list(value)
        return None
    return list(enumerate(value))


def _node(name: str, value: Any, depth: int, in_state_dict: bool = False) -> dict[str, Any]:
    node: dict[str, Any] = {"key": name}
    if _leaf(node, value):
        return node
    children = _children(node, value)
    if children is None:
        return node
    node["len"] = len(children)
    limit = None if in_state_dict else _MAX_CHILDREN
    if limit is not None and len(children) > limit:
        node["truncated"] = len(children) - limit
        children = children[:limit]
    node["children"] = [_node(str(k), v, depth + 1, in_state_dict) for k, v in children]
    return node


def _module_tree(name: str, flat: Mapping[str, Any]) -> dict[str, Any]:
    """A flat ``a.b.c -> tensor`` mapping as a module tree with element counts per node."""
    root: dict[str, Any] = {"key": name, "type": "state_dict", "children": []}
    index: dict[tuple, dict] = {(): root}
    for key, value in flat.items():
        parts = key.split(".")
        for i in range(1, len(parts)):
            path = tuple(parts[:i])
            if path not in index:
                node = {"key": parts[i - 1], "type": "module", "children": []}
                index[path[:-1]]["children"].append(node)
                index[path] = node
        leaf = _node(parts[-1], value, len(parts))
        index[tuple(parts[:-1])]["children"].append(leaf)

    def count(node):
        if "children" not in node:
            return int(math.prod(node.get("shape") or [])) if node.get("type") == "tensor" else 0
        node["numel"] = sum(count(c) for c in node["children"])
        return node["numel"]

    count(root)
    return root


def key_tree(opened: Opened | LoadedFile) -> dict[str, Any]:
    """The file's structure as nested ``{key, type, shape, dtype, value, len, children}`` nodes.

    The state dict is shown as a module tree (split at dots) with element counts; other
    containers with more than 50 entries are cut (``truncated`` says how many were left out).
    """
    lf = opened if isinstance(opened, LoadedFile) else opened.file
    raw = lf.raw
    root: dict[str, Any] = {"key": lf.name, "type": lf.format, "children": []}
    if lf.kind == "checkpoint" and lf.format in ("bare-state-dict", "safetensors"):
        root["children"] = [_module_tree("state_dict", lf.state_dict)]
        return root
    if not isinstance(raw, Mapping):
        root["children"] = [_node("object", raw, 1)]
        return root
    for key, value in raw.items():
        if lf.kind == "checkpoint" and key in ("state_dict", "model") and isinstance(value, Mapping):
            root["children"].append(_module_tree(str(key), lf.state_dict))
        else:
            root["children"].append(_node(str(key), value, 1))
    return root
