"""The house rules of ARCHITECTURE.md, checked on the source text (nothing is imported or run).

- no function above cyclomatic complexity 20 unless its docstring gives the reason
  (a line starting ``Complexity:``);
- the layers import downward only, and no module imports a private name of another package;
- no module is named like a standard-library module;
- no banner comments (``# ----`` / ``# ====`` rules);
- the core reads no files.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "aqr_cli"
MAX_COMPLEXITY = 20

# A layer may import the layers listed for it (and itself); anything else is an upward import.
LAYERS = {
    "core": {"core"},
    "io": {"io", "core"},
    "inputs": {"inputs", "io", "core"},
    "analysis": {"analysis", "inputs", "io", "core"},
    "logs": {"logs", "analysis", "inputs", "io", "core"},
    "plots": {"plots", "analysis", "logs", "io", "core"},
    "views": {"views", "plots", "analysis", "logs", "inputs", "io", "core"},
    "cli": {"cli", "views", "plots", "analysis", "logs", "inputs", "io", "core"},
}


def _modules() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py"))


def _layer(path: Path) -> str:
    rel = path.relative_to(PKG).parts
    return rel[0] if len(rel) > 1 else rel[0].removesuffix(".py")


def _complexity(fn: ast.AST) -> int:
    """McCabe complexity: 1 + decision points, not counting nested functions/classes."""
    n = 1
    stack = list(ast.iter_child_nodes(fn))
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        if isinstance(node, (ast.If, ast.IfExp, ast.For, ast.AsyncFor, ast.While,
                             ast.ExceptHandler, ast.Assert)):
            n += 1
        elif isinstance(node, ast.BoolOp):
            n += len(node.values) - 1
        elif isinstance(node, ast.comprehension):
            n += 1 + len(node.ifs)
        elif isinstance(node, ast.match_case):
            n += 1
        stack.extend(ast.iter_child_nodes(node))
    return n


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def _imports(tree: ast.AST, path: Path):
    """(module, names) of every absolute import of aqr_cli, relative imports resolved."""
    pkg_parts = ["aqr_cli", *path.relative_to(PKG).parts[:-1]]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, []
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                base = pkg_parts[: len(pkg_parts) - node.level + 1]
                mod = ".".join([*base, mod] if mod else base)
            yield mod, [a.name for a in node.names]


def test_the_complexity_check_counts_branches():
    src = "def f(a, b):\n    if a and b:\n        return [x for x in a if x]\n    for i in b:\n" \
          "        while i:\n            i -= 1\n    return 0\n"
    fn = next(_functions(ast.parse(src)))
    assert _complexity(fn) == 1 + 1 + 1 + 2 + 1 + 1


def test_no_function_above_complexity_20_without_a_reason():
    over = []
    for path in _modules():
        for fn in _functions(ast.parse(path.read_text())):
            c = _complexity(fn)
            doc = ast.get_docstring(fn) or ""
            if c > MAX_COMPLEXITY and "Complexity:" not in doc:
                over.append(f"{path.relative_to(PKG.parent)}:{fn.lineno} {fn.name} = {c}")
    assert not over, "functions above complexity 20 (split them, or say why in a " \
                     "'Complexity:' docstring line):\n" + "\n".join(over)


def test_layers_import_downward_and_no_private_names_cross_packages():
    bad = []
    for path in _modules():
        layer = _layer(path)
        allowed = LAYERS.get(layer)
        for mod, names in _imports(ast.parse(path.read_text()), path):
            parts = mod.split(".")
            if parts[0] != "aqr_cli" or len(parts) < 2:
                continue
            target = parts[1]
            where = f"{path.relative_to(PKG.parent)} imports {mod}"
            if allowed is not None and target not in allowed:
                bad.append(f"{where} (upward: {layer} -> {target})")
            if target != layer:
                private = [n for n in names if n.startswith("_") and not n.startswith("__")]
                private += [p for p in parts[2:] if p.startswith("_") and p != "__init__"]
                if private:
                    bad.append(f"{where}: private {', '.join(private)} of another package")
    assert not bad, "\n".join(bad)


def test_no_module_shadows_the_standard_library():
    stdlib = set(sys.stdlib_module_names)
    shadowing = [str(p.relative_to(PKG.parent)) for p in _modules()
                 if p.stem in stdlib and p.stem != "__init__"]
    assert not shadowing, shadowing


def test_no_banner_comments():
    banners = []
    for path in _modules():
        for i, line in enumerate(path.read_text().splitlines(), 1):
            s = line.strip()
            if s.startswith("#") and ("----" in s or "====" in s):
                banners.append(f"{path.relative_to(PKG.parent)}:{i}")
    assert not banners, banners


@pytest.mark.parametrize("needle", ["open(", "read_text(", "read_bytes(", "torch.load(", "json.load("])
def test_the_core_reads_no_files(needle):
    readers = [f"{p.relative_to(PKG.parent)}:{i}"
               for p in (PKG / "core").rglob("*.py")
               for i, line in enumerate(p.read_text().splitlines(), 1)
               if needle in line and not line.strip().startswith("#")]
    assert not readers, readers
