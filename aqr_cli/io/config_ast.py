"""Read mmcv configs without executing them: an ``ast`` walker over module-level assignments.

Accepted in a value: literals (str, numbers, bool, None, lists, tuples, dicts, sets), ``dict(...)``
calls (keywords, one mapping argument, ``**`` unpacking), ``range(...)`` with integer arguments
(as a list), names assigned earlier in the same file, arithmetic and comparisons on those values
(``data_root + 'infos.pkl'``, ``1024 // 8``, ``-54``), subscripts, f-strings, conditional
expressions, and mmcv's ``{{_base_.name}}`` references. Anything else (other calls, attribute
access, lambdas, comprehensions) makes that one top-level assignment "unparsed", recorded by name
with the reason; nothing is ever evaluated with ``eval``/``exec`` and no import runs.

Work is bounded by what a real config needs (a hostile text must not buy unbounded time or
memory): text of at most ``MAX_CONFIG_BYTES``; integers of at most ``_MAX_INT_BITS`` bits
(checked before ``**`` and ``*`` compute them); strings and lists of at most ``_MAX_SEQ``
items; values nested at most ``_MAX_DEPTH`` deep; at most ``_MAX_WORK`` units of copying and
building per file and ``_MAX_TOTAL`` units held by its names. Past a bound the whole config is
refused with :class:`ConfigBudgetError` (one line). ``--config`` and ``_base_`` files must be
regular files (not pipes or devices), checked before they are opened.

``_base_`` files are read and parsed the same way and merged with mmcv 1.x semantics: dicts
merge recursively, ``_delete_=True`` replaces, anything else overrides.

The AQR settings of a parsed config are extracted by :mod:`aqr_cli.io.config_parse`.
"""

from __future__ import annotations

import ast
import copy
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aqr_cli.io.errors import ConfigBudgetError, ConfigParseError, one_line
from aqr_cli.io.limits import MAX_CONFIG_BYTES, read_text_bounded

_MAX_SEQ = 1_000_000  # longest list/str a '*', '+' or range() may build
_MAX_POW = 4096  # largest exponent a '**' may use
_MAX_INT_BITS = 65_536  # largest integer any operation may produce
_MAX_DEPTH = 64  # deepest nesting of a value
_MAX_WORK = 1_000_000  # units (elements, characters) a file's expressions may copy or build
_MAX_TOTAL = 1_000_000  # units the names of one file may hold at once
_FORMAT_WIDTH = __import__("re").compile(r"\d{5,}")


class _Budget:
    """Work counter of one file; raises :class:`ConfigBudgetError` past ``_MAX_WORK``."""

    def __init__(self, label: str):
        self.label, self.used = label, 0

    def charge(self, units: int, what: str = "") -> None:
        self.used += units
        if self.used > _MAX_WORK:
            self.fail(f"the config needs more than {_MAX_WORK} units of work to read"
                      + (f" ({what})" if what else ""))

    def fail(self, reason: str) -> None:
        raise ConfigBudgetError(self.label, reason + "; refusing it as hostile or corrupt")


def measure(value: Any, limit_depth: int = _MAX_DEPTH,
            limit_size: int = _MAX_WORK + 1) -> tuple[int, int]:
    """(size in units, nesting depth) of a plain value, without recursion; stops early past
    ``limit_depth`` or ``limit_size`` (the caller refuses the value then)."""
    size, depth = 0, 0
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        size += 1
        depth = max(depth, d)
        if d > limit_depth or size > limit_size:
            return size, d
        if isinstance(v, (str, bytes)):
            size += len(v)
        elif isinstance(v, int):
            size += v.bit_length() // 64
        elif isinstance(v, Mapping):
            stack.extend((x, d + 1) for kv in v.items() for x in kv)
        elif isinstance(v, (list, tuple, set, frozenset)):
            stack.extend((x, d + 1) for x in v)
    return size, depth


def _plain_copy(value: Any) -> Any:
    """A deep copy of plain config data (lists, dicts, tuples, sets of immutable leaves), 2.5x
    faster than ``copy.deepcopy``; anything else goes to ``copy.deepcopy``. A part held in
    several places is copied once per place (no statement can mutate a value in place, so the
    sharing is not observable): the caller has charged the budget for that (tree) size, and
    :func:`measure` has bounded the depth."""
    kind = type(value)
    if kind is list:
        return [_plain_copy(x) for x in value]
    if kind is dict:
        return {k: _plain_copy(x) for k, x in value.items()}
    if kind is tuple:
        return tuple(_plain_copy(x) for x in value)
    if kind in _IMMUTABLE:
        return value
    if kind is set:
        return set(value)  # members are hashable, hence immutable here
    return copy.deepcopy(value)


_IMMUTABLE = frozenset({str, bytes, int, float, bool, type(None), frozenset})


_MAX_BASE_DEPTH = 16
_DELETE_KEY = "_delete_"


class _Unparsable(Exception):
    """One value the walker does not accept; the message says what and where."""


_BINOPS = {
    ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b, ast.FloorDiv: lambda a, b: a // b, ast.Mod: lambda a, b: a % b,
    ast.Pow: lambda a, b: a ** b,
}
_CMPOPS = {
    ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b, ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b, ast.Gt: lambda a, b: a > b, ast.GtE: lambda a, b: a >= b,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
    ast.Is: lambda a, b: a is b, ast.IsNot: lambda a, b: a is not b,
}
_PLAIN = (str, bytes, int, float, bool, type(None), list, tuple, dict, set, frozenset)
_NUMBER = (int, float)


def _describe_node(node: ast.AST) -> str:
    if isinstance(node, ast.Call):
        try:
            return f"call to {ast.unparse(node.func)}()"
        except Exception:  # noqa: BLE001
            return "function call"
    if isinstance(node, ast.Lambda):
        return "lambda"
    if isinstance(node, ast.Attribute):
        return f"attribute access {ast.unparse(node)}"
    if isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
        return "comprehension"
    if isinstance(node, (ast.Await, ast.Yield, ast.YieldFrom)):
        return type(node).__name__.lower()
    if isinstance(node, ast.NamedExpr):
        return "assignment expression"
    return f"{type(node).__name__} expression"


class _Walker:
    """Evaluates one expression node against already-parsed names; plain data only."""

    def __init__(self, names: Mapping[str, Any], unavailable: Mapping[str, str],
                 base_values: Mapping[str, Any] | None, budget: _Budget | None = None,
                 sizes: Mapping[str, int] | None = None):
        self.names = names
        self.unavailable = unavailable
        self.base_values = base_values
        self.budget = budget or _Budget("<config>")
        self.sizes = sizes or {}

    def _copy(self, value: Any, size: int | None = None) -> Any:
        """A deep copy of a value already held, charged to the budget first."""
        if size is not None:
            self.budget.charge(size)
            return _plain_copy(value)
        size, depth = measure(value, limit_size=_MAX_WORK - self.budget.used + 1)
        if depth > _MAX_DEPTH:
            self.budget.fail(f"a value nests more than {_MAX_DEPTH} levels deep")
        self.budget.charge(size)
        return _plain_copy(value)

    def eval(self, node: ast.AST) -> Any:
        method = getattr(self, f"_{type(node).__name__}", None)
        if method is None:
            raise _Unparsable(_describe_node(node) + " is not allowed")
        return method(node)

    def _Constant(self, node: ast.Constant) -> Any:
        if not isinstance(node.value, (str, bytes, int, float, bool, type(None))):
            raise _Unparsable(f"constant {node.value!r} is not allowed")
        if isinstance(node.value, int) and node.value.bit_length() > _MAX_INT_BITS:
            self.budget.fail(f"an integer of more than {_MAX_INT_BITS} bits")
        self.budget.charge(1 + (len(node.value) if isinstance(node.value, (str, bytes)) else 0))
        return node.value

    def _elements(self, elts: list[ast.expr]) -> list[Any]:
        out: list[Any] = []
        for e in elts:
            if isinstance(e, ast.Starred):
                value = self.eval(e.value)
                if not isinstance(value, (list, tuple)):
                    raise _Unparsable("'*' unpacking of a non-sequence")
                self.budget.charge(len(value))
                out.extend(value)
            else:
                out.append(self.eval(e))
            if len(out) > _MAX_SEQ:
                self.budget.fail(f"a list of more than {_MAX_SEQ} items")
        return out

    def _List(self, node: ast.List) -> list:
        return self._elements(node.elts)

    def _Tuple(self, node: ast.Tuple) -> tuple:
        return tuple(self._elements(node.elts))

    def _Set(self, node: ast.Set) -> Any:
        ref = self._base_reference(node)
        if ref is not None:
            return ref
        items = self._elements(node.elts)
        try:
            return set(items)
        except TypeError:
            raise _Unparsable("unhashable set element") from None

    def _base_reference(self, node: ast.Set) -> Any:
        """``{{_base_.a.b}}`` (mmcv's base-variable reference), else None."""
        if len(node.elts) != 1 or not isinstance(node.elts[0], ast.Set) or len(node.elts[0].elts) != 1:
            return None
        attr = node.elts[0].elts[0]
        path: list[str] = []
        while isinstance(attr, ast.Attribute):
            path.append(attr.attr)
            attr = attr.value
        if not (isinstance(attr, ast.Name) and attr.id == "_base_" and path):
            return None
        if self.base_values is None:
            raise _Unparsable("{{_base_." + ".".join(reversed(path)) + "}} without a readable _base_")
        value: Any = self.base_values
        for key in reversed(path):
            if not isinstance(value, Mapping) or key not in value:
                raise _Unparsable("{{_base_." + ".".join(reversed(path)) + "}} is not defined in _base_")
            value = value[key]
        return self._copy(value)

    def _Dict(self, node: ast.Dict) -> dict:
        out: dict = {}
        for k, v in zip(node.keys, node.values):
            if k is None:
                value = self.eval(v)
                if not isinstance(value, Mapping):
                    raise _Unparsable("'**' unpacking of a non-mapping")
                self.budget.charge(len(value))
                out.update(value)
            else:
                key = self.eval(k)
                try:
                    hash(key)
                except TypeError:
                    raise _Unparsable("unhashable dict key") from None
                out[key] = self.eval(v)
        return out

    def _Name(self, node: ast.Name) -> Any:
        if node.id in self.names:
            return self._copy(self.names[node.id], self.sizes.get(node.id))
        if node.id in self.unavailable:
            raise _Unparsable(f"name {node.id!r} {self.unavailable[node.id]}")
        raise _Unparsable(f"name {node.id!r} is not defined earlier in the file")

    def _UnaryOp(self, node: ast.UnaryOp) -> Any:
        value = self.eval(node.operand)
        if isinstance(node.op, ast.Not):
            return not value
        if not isinstance(value, _NUMBER):
            raise _Unparsable("unary operator on a non-number")
        if isinstance(node.op, ast.USub):
            return -value
        if isinstance(node.op, ast.UAdd):
            return +value
        if isinstance(node.op, ast.Invert) and isinstance(value, int):
            return ~value
        raise _Unparsable(f"unary operator {type(node.op).__name__} is not allowed")

    def _BinOp(self, node: ast.BinOp) -> Any:
        op = _BINOPS.get(type(node.op))
        if op is None:
            raise _Unparsable(f"operator {type(node.op).__name__} is not allowed")
        a, b = self.eval(node.left), self.eval(node.right)
        self._check_operands(node.op, a, b)
        try:
            out = op(a, b)
        except (ArithmeticError, ValueError, TypeError) as e:
            raise _Unparsable(f"arithmetic error: {e}") from None
        if isinstance(out, int) and out.bit_length() > _MAX_INT_BITS:
            self.budget.fail(f"an integer of more than {_MAX_INT_BITS} bits")
        return out

    def _check_operands(self, op: ast.operator, a: Any, b: Any) -> None:
        """Refuse ``a op b`` before it is computed if the operands are not allowed for ``op`` or
        the result would exceed the integer / sequence limits (charging sequences built)."""
        numbers = isinstance(a, _NUMBER) and isinstance(b, _NUMBER)
        ints = numbers and isinstance(a, int) and isinstance(b, int)
        if isinstance(op, ast.Pow):
            if not numbers or abs(b) > _MAX_POW:
                raise _Unparsable("'**' outside small numbers")
            if ints and b > 0 and max(a.bit_length(), 1) * b > _MAX_INT_BITS and abs(a) > 1:
                self.budget.fail(f"'**' would build an integer of more than {_MAX_INT_BITS} bits")
        elif isinstance(op, ast.Mult) and not numbers:
            self._check_repeat(a, b)
        elif isinstance(op, ast.Mult) and ints:
            if a.bit_length() + b.bit_length() > _MAX_INT_BITS:
                self.budget.fail(f"'*' would build an integer of more than {_MAX_INT_BITS} bits")
        elif isinstance(op, ast.Add) and not numbers:
            self._check_concat(a, b)
        elif not numbers:
            raise _Unparsable(f"operator {type(op).__name__} on non-numbers is not allowed")

    def _check_repeat(self, a: Any, b: Any) -> None:
        """``sequence * int`` (either order) within the sequence limit, charged to the budget."""
        seq, n = (a, b) if isinstance(b, int) else (b, a)
        if not isinstance(seq, (str, bytes, list, tuple)) or not isinstance(n, int) \
                or isinstance(n, bool):
            raise _Unparsable("'*' on these operands is not allowed")
        if len(seq) * max(n, 0) > _MAX_SEQ:
            self.budget.fail(f"'*' would build a sequence of more than {_MAX_SEQ} items")
        self.budget.charge(len(seq) * max(n, 0))

    def _check_concat(self, a: Any, b: Any) -> None:
        """``sequence + sequence`` of one type within the sequence limit, charged to the budget."""
        if not (type(a) is type(b) and isinstance(a, (str, bytes, list, tuple))):
            raise _Unparsable("'+' on these operands is not allowed")
        if len(a) + len(b) > _MAX_SEQ:
            self.budget.fail(f"'+' would build a sequence of more than {_MAX_SEQ} items")
        self.budget.charge(len(a) + len(b))

    def _BoolOp(self, node: ast.BoolOp) -> Any:
        value: Any = None
        for v in node.values:
            value = self.eval(v)
            if isinstance(node.op, ast.And) and not value:
                return value
            if isinstance(node.op, ast.Or) and value:
                return value
        return value

    def _Compare(self, node: ast.Compare) -> bool:
        left = self.eval(node.left)
        for op, comp in zip(node.ops, node.comparators):
            right = self.eval(comp)
            try:
                if not _CMPOPS[type(op)](left, right):
                    return False
            except TypeError:
                raise _Unparsable("comparison of incompatible values") from None
            left = right
        return True

    def _IfExp(self, node: ast.IfExp) -> Any:
        return self.eval(node.body) if self.eval(node.test) else self.eval(node.orelse)

    def _Subscript(self, node: ast.Subscript) -> Any:
        value = self.eval(node.value)
        index = self.eval(node.slice)
        if not isinstance(value, (str, bytes, list, tuple, dict)):
            raise _Unparsable("subscript of a non-container")
        try:
            return self._copy(value[index])
        except (KeyError, IndexError, TypeError, ValueError) as e:
            raise _Unparsable(f"subscript failed: {type(e).__name__} {e}") from None

    def _Slice(self, node: ast.Slice) -> slice:
        parts = [None if p is None else self.eval(p) for p in (node.lower, node.upper, node.step)]
        if not all(p is None or isinstance(p, int) for p in parts):
            raise _Unparsable("slice bounds must be integers")
        return slice(*parts)

    def _JoinedStr(self, node: ast.JoinedStr) -> str:
        out = []
        for part in node.values:
            if isinstance(part, ast.Constant):
                out.append(str(part.value))
                continue
            if not isinstance(part, ast.FormattedValue):
                raise _Unparsable("f-string part is not allowed")
            value = self.eval(part.value)
            if not isinstance(value, _PLAIN):
                raise _Unparsable("f-string of a non-plain value")
            if part.conversion == ord("r"):
                value = repr(value)
            elif part.conversion == ord("a"):
                value = ascii(value)
            elif part.conversion == ord("s"):
                value = str(value)
            spec = (self._JoinedStr(part.format_spec)
                    if isinstance(part.format_spec, ast.JoinedStr) else "")
            if _FORMAT_WIDTH.search(spec):
                self.budget.fail("an f-string format width of five or more digits")
            self.budget.charge(measure(value)[0])
            try:
                out.append(format(value, spec))
            except (ValueError, TypeError) as e:
                raise _Unparsable(f"f-string format failed: {e}") from None
        return "".join(out)

    def _Call(self, node: ast.Call) -> Any:
        func = node.func.id if isinstance(node.func, ast.Name) else None
        if func in self.names or func in self.unavailable:
            raise _Unparsable(f"call to {func}() (the name is rebound in the file)")
        if func == "dict":
            return self._dict_call(node)
        if func == "range":
            return self._range_call(node)
        raise _Unparsable(_describe_node(node) + " is not allowed")

    def _dict_call(self, node: ast.Call) -> dict:
        out: dict = {}
        if len(node.args) > 1:
            raise _Unparsable("dict() with more than one positional argument")
        if node.args:
            first = self.eval(node.args[0])
            if isinstance(first, Mapping):
                out.update(first)
            elif isinstance(first, (list, tuple)) and all(
                    isinstance(p, (list, tuple)) and len(p) == 2 for p in first):
                out.update(dict(first))
            else:
                raise _Unparsable("dict() of a non-mapping")
        for kw in node.keywords:
            value = self.eval(kw.value)
            if kw.arg is None:
                if not isinstance(value, Mapping):
                    raise _Unparsable("'**' unpacking of a non-mapping")
                self.budget.charge(len(value))
                out.update(value)
            else:
                out[kw.arg] = value
        return out

    def _range_call(self, node: ast.Call) -> list:
        if node.keywords or not 1 <= len(node.args) <= 3:
            raise _Unparsable("range() takes 1 to 3 positional integers")
        args = [self.eval(a) for a in node.args]
        if not all(isinstance(a, int) and not isinstance(a, bool) for a in args):
            raise _Unparsable("range() of non-integers")
        try:
            r = range(*args)
        except ValueError as e:
            raise _Unparsable(f"range(): {e}") from None
        if len(r) > _MAX_SEQ:
            self.budget.fail(f"range() of more than {_MAX_SEQ} items")
        self.budget.charge(len(r))
        return list(r)




@dataclass
class ParsedConfig:
    """A config read without executing it.

    ``values``: top-level name -> value after the ``_base_`` merge (plain dicts/lists/tuples).
    ``unparsed``: top-level name -> one-line reason (``file:line: ...``) for assignments the walker
    refused; such names are absent from ``values`` unless a ``_base_`` supplied a value the
    unparsed assignment would have merged into. ``skipped``: statements that are not evaluated
    (imports, function definitions, ``if`` blocks ...). ``assignments``: every top-level
    assignment per name as ``file:line``, bases first. ``duplicates``: names assigned more than
    once within one file (e.g. Q32's double ``model = dict(...)``). ``complete`` is False when a
    ``_base_`` could not be read, so missing keys may be defined there.
    """

    source: str
    values: dict[str, Any] = field(default_factory=dict)
    unparsed: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    assignments: dict[str, list[str]] = field(default_factory=dict)
    duplicates: dict[str, list[str]] = field(default_factory=dict)
    bases: list[str] = field(default_factory=list)
    unresolved_bases: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.unresolved_bases

    def get(self, path: str | tuple[str, ...], default: Any = None) -> Any:
        """Value at a dotted path (``'model.pts_bbox_head.num_query'``; list indices as digits).

        A tuple of keys reaches keys that contain dots themselves.
        """
        value: Any = self.values
        for part in (path.split(".") if isinstance(path, str) else path):
            if isinstance(value, Mapping) and part in value:
                value = value[part]
            elif isinstance(value, (list, tuple)) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                return default
        return value


def _bound_names(stmt: ast.stmt) -> list[str]:
    """Top-level names a compound statement may bind."""
    names = []
    for node in ast.walk(stmt):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.append(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node is not stmt:
            names.append(node.name)
        elif isinstance(node, ast.alias):
            names.append((node.asname or node.name).split(".")[0])
    return list(dict.fromkeys(names))


def _targets(target: ast.expr) -> list[ast.expr]:
    if isinstance(target, (ast.Tuple, ast.List)):
        return [t for e in target.elts for t in _targets(e)]
    return [target]


class _FileParser:
    """Parses the statements of one file into a :class:`ParsedConfig` (no ``_base_`` merge)."""

    def __init__(self, label: str, base_values: Mapping[str, Any] | None):
        self.label = label
        self.budget = _Budget(label)
        self.held: dict[str, int] = {}  # units held per bound name
        self.total = 0
        self.cfg = ParsedConfig(source=label)
        self.unavailable: dict[str, str] = {}
        self.base_values = base_values

    def where(self, node: ast.AST) -> str:
        return f"{self.label}:{getattr(node, 'lineno', '?')}"

    def bind(self, name: str, value: Any, node: ast.AST) -> None:
        if name.startswith("__"):
            return
        size, depth = measure(value, limit_size=_MAX_TOTAL + 1)
        if depth > _MAX_DEPTH:
            self.budget.fail(f"{self.where(node)}: {name} nests more than {_MAX_DEPTH} levels deep")
        self.total += size - self.held.get(name, 0)
        self.held[name] = size
        if self.total > _MAX_TOTAL:
            self.budget.fail(f"{self.where(node)}: the values assigned hold more than {_MAX_TOTAL} units")
        self.cfg.values[name] = value
        self.cfg.unparsed.pop(name, None)
        self.unavailable.pop(name, None)
        self.cfg.assignments.setdefault(name, []).append(self.where(node))

    def refuse(self, name: str, reason: str, node: ast.AST, *, assignment: bool = True) -> None:
        if name.startswith("__"):
            return
        self.cfg.values.pop(name, None)
        self.cfg.unparsed[name] = f"{self.where(node)}: {one_line(reason)}"
        self.unavailable[name] = "was not parsed"
        if assignment:
            self.cfg.assignments.setdefault(name, []).append(self.where(node))

    def walker(self) -> _Walker:
        return _Walker(self.cfg.values, self.unavailable, self.base_values, self.budget, self.held)

    def run(self, tree: ast.Module) -> ParsedConfig:
        for stmt in tree.body:
            self.statement(stmt)
        for name, where in self.cfg.assignments.items():
            if len(where) > 1:
                self.cfg.duplicates[name] = list(where)
        return self.cfg

    def statement(self, stmt: ast.stmt) -> None:
        if isinstance(stmt, ast.Assign):
            self.assign(stmt.targets, stmt.value, stmt)
        elif isinstance(stmt, ast.AnnAssign):
            if stmt.value is not None:
                self.assign([stmt.target], stmt.value, stmt)
        elif isinstance(stmt, ast.AugAssign):
            self.aug_assign(stmt)
        elif isinstance(stmt, ast.Expr):
            if not (isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)):
                self.cfg.skipped.append(f"{self.where(stmt)}: expression statement "
                                        f"{one_line(ast.unparse(stmt))[:80]!r} (not evaluated)")
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            text = one_line(ast.unparse(stmt))[:80]
            self.cfg.skipped.append(f"{self.where(stmt)}: {text} (not executed)")
            for name in _bound_names(stmt):
                self.unavailable[name] = f"comes from '{text}' (imports are not executed)"
                self.cfg.values.pop(name, None)
        elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            kind = "class" if isinstance(stmt, ast.ClassDef) else "def"
            self.cfg.skipped.append(f"{self.where(stmt)}: {kind} {stmt.name} (not executed)")
            self.unavailable[stmt.name] = f"is a {kind} (not executed)"
            self.cfg.values.pop(stmt.name, None)
        elif isinstance(stmt, ast.Pass):
            pass
        else:
            kind = type(stmt).__name__.lower()
            self.cfg.skipped.append(f"{self.where(stmt)}: {kind} statement (not executed)")
            for name in _bound_names(stmt):
                self.refuse(name, f"assigned inside a {kind} statement (not executed)", stmt)

    def assign(self, targets: list[ast.expr], value_node: ast.expr, stmt: ast.stmt) -> None:
        flat = [t for target in targets for t in _targets(target)]
        names = [t.id for t in flat if isinstance(t, ast.Name)]
        if len(names) != len(flat):
            for name in names:
                self.refuse(name, "assignment to an attribute or subscript target", stmt)
            self.cfg.skipped.append(f"{self.where(stmt)}: assignment to an attribute or subscript "
                                    "(not executed)")
            return
        try:
            value = self.walker().eval(value_node)
        except _Unparsable as e:
            for name in names:
                self.refuse(name, str(e), stmt)
            return
        except RecursionError:
            for name in names:
                self.refuse(name, "value nested too deeply", stmt)
            return
        for target in targets:
            if isinstance(target, ast.Name):
                self.bind(target.id, value, stmt)
            else:
                parts = [t.id for t in _targets(target) if isinstance(t, ast.Name)]  # all (above)
                if not isinstance(value, (list, tuple)) or len(value) != len(parts):
                    for name in parts:
                        self.refuse(name, "tuple unpacking of a value of another length", stmt)
                    continue
                for name, v in zip(parts, value):
                    self.bind(name, _plain_copy(v), stmt)

    def aug_assign(self, stmt: ast.AugAssign) -> None:
        if not isinstance(stmt.target, ast.Name):
            self.cfg.skipped.append(f"{self.where(stmt)}: augmented assignment to a non-name (not executed)")
            return
        name = stmt.target.id
        node = ast.BinOp(left=ast.Name(id=name, ctx=ast.Load()), op=stmt.op, right=stmt.value)
        try:
            value = self.walker().eval(node)
        except _Unparsable as e:
            self.refuse(name, str(e), stmt)
            return
        self.bind(name, value, stmt)


def _parse_tree(text: str, label: str) -> ast.Module:
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigBudgetError(label, f"config text of {len(text)} characters, more than "
                                       f"{MAX_CONFIG_BYTES}; refusing it as hostile or corrupt")
    try:
        return ast.parse(text, filename=label)
    except SyntaxError as e:
        raise ConfigParseError(label, f"syntax error at line {e.lineno}: {e.msg}") from None
    except (ValueError, RecursionError, MemoryError) as e:
        raise ConfigParseError(label, f"cannot parse: {type(e).__name__}") from None


def _base_spec_of(tree: ast.Module, label: str) -> tuple[list[str], str | None]:
    """The ``_base_`` file names assigned in ``tree`` (walked on its own, no other names)."""
    spec_node = None
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_base_"
                                                for t in stmt.targets):
            spec_node = stmt
    if spec_node is None:
        return [], None
    try:
        spec = _Walker({}, {}, None).eval(spec_node.value)
    except _Unparsable as e:
        return [], f"{label}:{spec_node.lineno}: _base_ not parsed ({e})"
    if isinstance(spec, str):
        spec = [spec]
    if not isinstance(spec, (list, tuple)) or not all(isinstance(s, str) for s in spec):
        return [], f"{label}:{spec_node.lineno}: _base_ must be a file name or a list of them"
    return list(spec), None


def merge_a_into_b(a: Mapping[str, Any], b: Mapping[str, Any], notes: list[str] | None = None,
                   where: str = "") -> dict[str, Any]:
    """mmcv 1.x ``Config._merge_a_into_b``: ``a`` (child) over ``b`` (base), recursively.

    A child dict merges into a base dict unless it holds ``_delete_=True`` (then it replaces).
    Where mmcv would raise (child dict over a base non-dict without ``_delete_``) the child
    replaces and a note says so.
    """
    out = dict(b)
    for k, v in a.items():
        if isinstance(v, Mapping):
            v = dict(v)
            delete = bool(v.pop(_DELETE_KEY, False))
            if k in out and not delete:
                if isinstance(out[k], Mapping):
                    out[k] = merge_a_into_b(v, out[k], notes, f"{where}{k}.")
                    continue
                if notes is not None:
                    notes.append(f"{where}{k}: a dict in the child config over a "
                                 f"{type(out[k]).__name__} in _base_ without _delete_=True "
                                 "(mmcv refuses this; the child value was used)")
            out[k] = v
        else:
            out[k] = v
    return out


def _strip_delete(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _strip_delete(v) for k, v in value.items() if k != _DELETE_KEY}
    if isinstance(value, list):
        return [_strip_delete(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_strip_delete(v) for v in value)
    return value


def parse_config_text(text: str, *, label: str = "<config>",
                      base_dir: str | os.PathLike | None = None) -> ParsedConfig:
    """Parse config source text (e.g. a checkpoint's ``meta['config']``) without executing it.

    ``_base_`` entries are resolved against ``base_dir`` when given; without it they are listed
    in ``unresolved_bases``. Raises :class:`ConfigParseError` only for a syntax error.
    """
    return _parse(text, label, None if base_dir is None else Path(base_dir), stack=())


def parse_config_file(path: str | os.PathLike) -> ParsedConfig:
    """Parse a ``.py`` (or ``.json``) config file and its ``_base_`` files, without executing them."""
    p = Path(path)
    return _parse_file(p, stack=())


def _read_text(p: Path, label: str) -> str:
    """Text of a regular config file of bounded size (stat-checked before it is opened)."""
    return read_text_bounded(p, MAX_CONFIG_BYTES, "a config file", ConfigParseError)


def _parse_file(p: Path, stack: tuple[Path, ...]) -> ParsedConfig:
    label = str(p)
    text = _read_text(p, label)
    if p.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigParseError(label, f"invalid JSON at line {e.lineno}: {e.msg}") from None
        except RecursionError:
            raise ConfigBudgetError(label, "JSON nested too deeply; refusing it as hostile or corrupt") from None
        if not isinstance(data, dict):
            raise ConfigParseError(label, "a JSON config must hold an object")
        if measure(data)[1] > _MAX_DEPTH:
            raise ConfigBudgetError(label, f"JSON nested more than {_MAX_DEPTH} levels deep; "
                                           "refusing it as hostile or corrupt")
        spec = data.pop("_base_", None)
        return _merge_with_bases(ParsedConfig(source=label, values=data), _as_list(spec),
                                 p.parent, stack + (p.resolve(),))
    return _parse(text, label, p.parent, stack + (p.resolve(),))


def _as_list(spec: Any) -> list[str]:
    return [spec] if isinstance(spec, str) else list(spec or [])


def _parse(text: str, label: str, base_dir: Path | None, stack: tuple[Path, ...]) -> ParsedConfig:
    tree = _parse_tree(text, label)
    base_files, base_problem = _base_spec_of(tree, label)
    base_cfg = _load_bases(base_files, base_dir, stack, label) if base_files else None
    parser = _FileParser(label, None if base_cfg is None else base_cfg.values)
    cfg = parser.run(tree)
    cfg.values.pop("_base_", None)
    cfg.unparsed.pop("_base_", None)
    cfg.assignments.pop("_base_", None)
    cfg.duplicates.pop("_base_", None)
    if base_problem:
        cfg.notes.append(base_problem)
        cfg.unresolved_bases.append(base_problem)
    if base_cfg is None:
        cfg.values = _strip_delete(cfg.values)
        return cfg
    return _combine(base_cfg, cfg)


def _load_bases(files: list[str], base_dir: Path | None, stack: tuple[Path, ...],
                label: str) -> ParsedConfig:
    """All ``_base_`` files parsed and combined (mmcv refuses keys defined in two bases)."""
    combined = ParsedConfig(source="_base_")
    for name in files:
        if base_dir is None:
            combined.unresolved_bases.append(name)
            combined.notes.append(f"{label}: _base_ {name!r} not read (no folder to resolve it in)")
            continue
        if "::" in name:
            combined.unresolved_bases.append(name)
            combined.notes.append(f"{label}: _base_ {name!r} names a package config; not read")
            continue
        path = (base_dir / os.path.expanduser(name)).resolve()
        if path in stack:
            raise ConfigParseError(label, f"_base_ cycle: {name} is already being read")
        if len(stack) > _MAX_BASE_DEPTH:
            raise ConfigParseError(label, "_base_ chain too deep")
        if not path.exists():
            combined.unresolved_bases.append(str(path))
            combined.notes.append(f"{label}: _base_ {name!r} not found at {path}")
            continue
        sub = _parse_file(path, stack)
        for key in sub.values:
            if key in combined.values:
                combined.notes.append(f"{key!r} is defined in more than one _base_ file "
                                      "(mmcv refuses this; the later one was used)")
        combined.values.update(sub.values)
        combined.unparsed.update(sub.unparsed)
        combined.skipped.extend(sub.skipped)
        for k, v in sub.assignments.items():
            combined.assignments.setdefault(k, []).extend(v)
        combined.duplicates.update(sub.duplicates)
        combined.bases.extend(sub.bases + [str(path)])
        combined.unresolved_bases.extend(sub.unresolved_bases)
        combined.notes.extend(sub.notes)
    return combined


def _merge_with_bases(cfg: ParsedConfig, base_files: list[str] | None, base_dir: Path,
                      stack: tuple[Path, ...]) -> ParsedConfig:
    if not base_files:
        return cfg
    return _combine(_load_bases(base_files, base_dir, stack, cfg.source), cfg)


def _combine(base: ParsedConfig, child: ParsedConfig) -> ParsedConfig:
    out = ParsedConfig(source=child.source)
    out.notes = base.notes + child.notes
    out.values = _strip_delete(merge_a_into_b(child.values, base.values, out.notes))
    out.unparsed = dict(base.unparsed)
    for name in child.values:
        # a full override in the child settles a name the base left unparsed
        if not isinstance(child.values[name], Mapping) or child.values[name].get(_DELETE_KEY):
            out.unparsed.pop(name, None)
    for name, reason in child.unparsed.items():
        out.unparsed[name] = reason
        if name not in base.values:
            out.values.pop(name, None)
    out.skipped = base.skipped + child.skipped
    out.assignments = {k: list(v) for k, v in base.assignments.items()}
    for k, v in child.assignments.items():
        out.assignments.setdefault(k, []).extend(v)
    out.duplicates = {**base.duplicates, **child.duplicates}
    out.bases = base.bases
    out.unresolved_bases = base.unresolved_bases + child.unresolved_bases
    return out
