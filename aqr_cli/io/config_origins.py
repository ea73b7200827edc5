"""Where each setting of an mmcv config comes from: file and line, after the ``_base_`` merge.

:func:`trace_origins` walks the same syntax trees the never-executing reader
(:mod:`aqr_cli.io.config_ast`) walks, but instead of values it builds a tree of *origins*: for
every dict key written as ``key=...`` or ``'key': ...``, the file and line of that key. The trees
are merged with the reader's mmcv 1.x rules (dicts merge recursively, ``_delete_=True``
replaces, anything else overrides; within one file the last assignment of a name wins), so a
looked-up path says which file and line set the value the merged config holds.

On the way it records what mmcv silently throws away:

- :class:`Replaced`: a top-level name assigned twice in one file (quirk Q32): the key paths the
  earlier assignment set that the later one does not;
- :class:`Deleted`: a ``_delete_=True`` dict that replaces a ``_base_`` dict: the base keys that
  are gone.

Nothing is evaluated; values are not needed here. A name bound to a dict earlier in the same
file (``head = dict(...)``, then ``model = dict(pts_bbox_head=head)``) keeps the lines of its
keys. Anything the walker cannot follow (a computed value) is one leaf at the line that writes it.
"""

from __future__ import annotations

import ast
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aqr_cli.io.config_ast import _base_spec_of
from aqr_cli.io.errors import ConfigParseError
from aqr_cli.io.limits import MAX_CONFIG_BYTES, read_text_bounded

_DELETE_KEY = "_delete_"
_MAX_BASE_DEPTH = 16
_MAX_STEPS = 200_000  # nodes built or merged; a config is a few thousand


def _descend(node: "_Node | None", root: str, path: str) -> "Origin | None":
    """The origin of the key at dotted ``path`` inside ``node`` (whose own path is ``root``)."""
    if node is None or not (path == root or path.startswith(root + ".")):
        return None
    for part in path[len(root):].split(".")[1:]:
        if node.children is None or part not in node.children:
            return None
        node = node.children[part]
    return node.origin


class _TooBig(Exception):
    """The origin walk would exceed its work budget."""


@dataclass(frozen=True)
class Origin:
    """The file and (1-based) line that set a key; ``line`` is None for JSON configs.

    ``value`` is the literal written there when it is a plain constant (``True``, ``8``), else None.
    """

    file: str
    line: int | None
    value: Any = field(default=None, compare=False)

    def label(self) -> str:
        return f"{self.file}:{'?' if self.line is None else self.line}"


@dataclass
class _Node:
    origin: Origin
    children: dict[str, "_Node"] | None = None  # None: a leaf (not a dict literal)
    delete: bool = False


@dataclass
class Replaced:
    """A top-level ``name`` assigned again later in the same ``file`` (mmcv keeps the last)."""

    name: str
    file: str
    line: int | None  # the discarded assignment
    by_line: int | None  # the assignment that replaces it
    lost: dict[str, Origin] = field(default_factory=dict)  # dotted key path -> where it was set
    tree: "_Node | None" = field(default=None, repr=False)

    def origin_of(self, path: str) -> Origin | None:
        """Where the discarded assignment set the key at ``path`` (a dict key included)."""
        return _descend(self.tree, self.name, path)

    def to_dict(self) -> dict:
        return {"name": self.name, "file": self.file, "line": self.line, "by_line": self.by_line,
                "lost": {k: {"file": o.file, "line": o.line, "value": o.value}
                         for k, o in self.lost.items()}}


@dataclass
class Deleted:
    """A ``_delete_=True`` dict at ``origin`` that replaced the ``_base_`` dict at ``path``."""

    path: str
    origin: Origin
    lost: dict[str, Origin] = field(default_factory=dict)  # base key paths no longer set
    tree: "_Node | None" = field(default=None, repr=False)

    def origin_of(self, path: str) -> Origin | None:
        """Where the replaced ``_base_`` dict set the key at ``path``."""
        return _descend(self.tree, self.path, path)

    def to_dict(self) -> dict:
        return {"path": self.path, "file": self.origin.file, "line": self.origin.line,
                "lost": {k: {"file": o.file, "line": o.line, "value": o.value}
                         for k, o in self.lost.items()}}


@dataclass
class OriginIndex:
    """Origins of the merged config of ``source`` (the file given), plus what was discarded."""

    source: str
    files: list[str] = field(default_factory=list)  # every file read, the given one first
    replaced: list[Replaced] = field(default_factory=list)
    deleted: list[Deleted] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    _root: dict[str, _Node] = field(default_factory=dict, repr=False)

    def lookup(self, path: str | tuple[str, ...]) -> Origin | None:
        """Where the value at a dotted path was set (a leaf above the path answers for it)."""
        parts = path.split(".") if isinstance(path, str) else list(path)
        children: dict[str, _Node] | None = self._root
        node: _Node | None = None
        for part in parts:
            if children is None:
                return node.origin if node is not None else None
            node = children.get(part)
            if node is None:
                return None
            children = node.children
        return node.origin if node is not None else None

    def is_base(self, origin: Origin | None) -> bool:
        return origin is not None and origin.file != self.source


class _Budget:
    def __init__(self):
        self.steps = 0

    def tick(self) -> None:
        self.steps += 1
        if self.steps > _MAX_STEPS:
            raise _TooBig()


def _leaves(node: _Node, prefix: str, out: dict[str, Origin], budget: _Budget) -> None:
    budget.tick()
    if node.children is None or not node.children:
        out[prefix] = node.origin
        return
    for k, child in node.children.items():
        _leaves(child, f"{prefix}.{k}", out, budget)


class _FileWalker:
    """Origin trees of the top-level assignments of one file (no ``_base_`` merge)."""

    def __init__(self, label: str, budget: _Budget):
        self.label = label
        self.budget = budget
        self.names: dict[str, _Node] = {}
        self.history: dict[str, list[tuple[int, _Node]]] = {}

    def origin(self, node: ast.AST) -> Origin:
        return Origin(self.label, getattr(node, "lineno", None))

    def run(self, tree: ast.Module) -> None:
        for stmt in tree.body:
            targets: list[ast.expr] = []
            if isinstance(stmt, ast.Assign):
                targets, value = stmt.targets, stmt.value
            elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
                targets, value = [stmt.target], stmt.value
            elif isinstance(stmt, ast.AugAssign):
                targets, value = [stmt.target], None
            for target in targets:
                if not isinstance(target, ast.Name) or target.id.startswith("__"):
                    continue
                node = (self.build(value, self.origin(stmt)) if value is not None
                        else _Node(self.origin(stmt)))
                self.names[target.id] = node
                self.history.setdefault(target.id, []).append((stmt.lineno, node))

    def build(self, expr: ast.expr, where: Origin) -> _Node:
        """The origin tree of one value written at ``where``."""
        self.budget.tick()
        if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name) and expr.func.id == "dict" \
                and "dict" not in self.names:
            node = _Node(where, {})
            for arg in expr.args[:1]:
                self.absorb(node, self.build(arg, where))
            for kw in expr.keywords:
                if kw.arg is None:
                    self.absorb(node, self.build(kw.value, where))
                else:
                    self.put(node, kw.arg, kw.value, Origin(self.label, getattr(kw, "lineno", None)
                                                           or getattr(kw.value, "lineno", None)))
            return node
        if isinstance(expr, ast.Dict):
            node = _Node(where, {})
            for k, v in zip(expr.keys, expr.values):
                if k is None:
                    self.absorb(node, self.build(v, where))
                elif isinstance(k, ast.Constant) and isinstance(k.value, str):
                    self.put(node, k.value, v, self.origin(k))
            return node
        if isinstance(expr, ast.Name) and expr.id in self.names:
            ref = self.names[expr.id]
            return _Node(where, ref.children, ref.delete)
        if isinstance(expr, ast.Constant) and isinstance(expr.value, (bool, int, float, str)):
            return _Node(Origin(where.file, where.line, expr.value))
        return _Node(where)

    def put(self, node: _Node, key: str, value: ast.expr, where: Origin) -> None:
        if key == _DELETE_KEY:
            node.delete = isinstance(value, ast.Constant) and value.value is True
            return
        assert node.children is not None  # put is called on dict nodes only
        node.children[key] = self.build(value, where)

    @staticmethod
    def absorb(node: _Node, other: _Node) -> None:
        if other.children:
            assert node.children is not None  # only dict nodes absorb a dict
            node.children.update(other.children)
        node.delete = node.delete or other.delete


class _Merger:
    """mmcv's ``_merge_a_into_b`` on origin trees, recording ``_delete_`` replacements."""

    def __init__(self, budget: _Budget, deleted: list[Deleted]):
        self.budget = budget
        self.deleted = deleted

    def merge(self, child: dict[str, _Node], base: dict[str, _Node], prefix: str = "") -> dict[str, _Node]:
        out = dict(base)
        for k, v in child.items():
            self.budget.tick()
            path = f"{prefix}{k}"
            old = out.get(k)
            if v.children is not None and old is not None and old.children is not None:
                if not v.delete:
                    out[k] = _Node(v.origin, self.merge(v.children, old.children, path + "."))
                    continue
                lost: dict[str, Origin] = {}
                _leaves(old, path, lost, self.budget)
                kept: dict[str, Origin] = {}
                _leaves(v, path, kept, self.budget)
                gone = {p: o for p, o in lost.items() if p not in kept}
                if gone:
                    self.deleted.append(Deleted(path, v.origin, gone, old))
            out[k] = _Node(v.origin, v.children, False)
        return out


def _base_files(tree: ast.Module, label: str) -> list[str]:
    """The ``_base_`` names of a file, read exactly as the reader reads them."""
    return _base_spec_of(tree, label)[0]


def _json_node(value, where: Origin, budget: _Budget) -> _Node:
    budget.tick()
    if isinstance(value, dict):
        children: dict[str, _Node] = {}
        node = _Node(where, children)
        for k, v in value.items():
            if k == _DELETE_KEY:
                node.delete = v is True
            else:
                children[str(k)] = _json_node(v, where, budget)
        return node
    return _Node(where)


class _Tracer:
    def __init__(self, index: OriginIndex):
        self.index = index
        self.budget = _Budget()

    def file(self, path: Path, stack: tuple[Path, ...]) -> dict[str, _Node]:
        label = str(path)
        self.index.files.append(label)
        # the same checks as the reader: a regular file of bounded size, stat-checked first
        text = read_text_bounded(path, MAX_CONFIG_BYTES, "a config file", ConfigParseError)
        if path.suffix == ".json":
            try:
                data = json.loads(text)
            except json.JSONDecodeError as e:
                raise ConfigParseError(label, f"invalid JSON at line {e.lineno}: {e.msg}") from None
            if not isinstance(data, dict):
                return {}
            bases = data.pop("_base_", None)
            bases = [bases] if isinstance(bases, str) else list(bases or [])
            own = _json_node(data, Origin(label, None), self.budget).children or {}
        else:
            try:
                tree = ast.parse(text, filename=label)
            except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
                raise ConfigParseError(label, f"cannot parse: {type(e).__name__}") from None
            walker = _FileWalker(label, self.budget)
            walker.run(tree)
            self.replacements(walker)
            own = {k: v for k, v in walker.names.items() if k != "_base_"}
            bases = _base_files(tree, label)
        if not bases:
            return own
        return _Merger(self.budget, self.index.deleted).merge(own, self.bases(bases, path, stack))

    def bases(self, names: list[str], path: Path, stack: tuple[Path, ...]) -> dict[str, _Node]:
        combined: dict[str, _Node] = {}
        for name in names:
            if "::" in name:
                continue
            p = (path.parent / os.path.expanduser(name)).resolve()
            if p in stack or len(stack) > _MAX_BASE_DEPTH or not p.is_file():
                continue  # the reader reports cycles, depth and missing files
            combined.update(self.file(p, stack + (p,)))
        return combined

    def replacements(self, walker: _FileWalker) -> None:
        for name, history in walker.history.items():
            if len(history) < 2 or name == "_base_":
                continue
            last_line, last = history[-1]
            kept: dict[str, Origin] = {}
            _leaves(last, name, kept, self.budget)
            for line, node in history[:-1]:
                lost: dict[str, Origin] = {}
                _leaves(node, name, lost, self.budget)
                self.index.replaced.append(Replaced(
                    name, walker.label, line, last_line,
                    {p: o for p, o in lost.items() if p not in kept}, node))


def trace_origins(path: str | os.PathLike) -> OriginIndex:
    """The :class:`OriginIndex` of a config file and its ``_base_`` files (never executed).

    Call it on a file the reader accepted; files it cannot follow are left out (the reader
    reports them). A config too large for the work budget gives an empty index with a note.
    """
    p = Path(path)
    index = OriginIndex(source=str(p))
    tracer = _Tracer(index)
    try:
        index._root = tracer.file(p, (p.resolve(),))
    except _TooBig:
        index._root, index.replaced, index.deleted = {}, [], []
        index.notes.append("the config is too large to trace where each setting comes from")
    except RecursionError:
        index._root, index.replaced, index.deleted = {}, [], []
        index.notes.append("the config is nested too deeply to trace where each setting comes from")
    return index
