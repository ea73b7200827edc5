"""The config reader walks untrusted text: each accepted construct gives its value, each refused
one makes its assignment "unparsed" with the reason, and hostile text is refused whole with one
line (``ConfigBudgetError``) before it buys unbounded time or memory."""

from __future__ import annotations

import json
import textwrap

import pytest

from aqr_cli.io import ConfigParseError, parse_config_file, parse_config_text
from aqr_cli.io.errors import ConfigBudgetError


def values(text: str, **kw) -> dict:
    parsed = parse_config_text(textwrap.dedent(text), label="c.py", **kw)
    assert parsed.unparsed == {}, parsed.unparsed
    return parsed.values


def unparsed(text: str) -> dict:
    return parse_config_text(textwrap.dedent(text), label="c.py").unparsed


def _write(path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_literals_and_containers():
    v = values("""
        s = 'text'
        b = b'raw'
        i, f, neg = 7, 2.5, -3
        flags = (True, False, None)
        lst = [1, 'a', [2.0]]
        tup = (1,)
        st = {1, 2, 2}
        d = {'k': 1, 2: 'two', (1, 2): None}
        empty = {}
        e: int = 4
        """)
    assert v["s"] == "text" and v["b"] == b"raw"
    assert (v["i"], v["f"], v["neg"]) == (7, 2.5, -3)
    assert v["flags"] == (True, False, None)
    assert v["lst"] == [1, "a", [2.0]] and v["tup"] == (1,) and v["st"] == {1, 2}
    assert v["d"] == {"k": 1, 2: "two", (1, 2): None} and v["empty"] == {}
    assert v["e"] == 4


def test_dict_calls_and_unpacking():
    v = values("""
        a = dict(x=1, y=dict(z=2))
        b = dict(a, w=3)
        c = dict([('p', 1), ('q', 2)])
        d = dict(**a, extra=True)
        e = {**a, 'x': 9}
        f = [*[1, 2], 3, *(4,)]
        g = dict()
        """)
    assert v["a"] == {"x": 1, "y": {"z": 2}}
    assert v["b"] == {"x": 1, "y": {"z": 2}, "w": 3}
    assert v["c"] == {"p": 1, "q": 2}
    assert v["d"] == {"x": 1, "y": {"z": 2}, "extra": True}
    assert v["e"] == {"x": 9, "y": {"z": 2}}
    assert v["f"] == [1, 2, 3, 4] and v["g"] == {}
    # a value read through a name is a copy: changing one does not change the other
    assert v["b"]["y"] is not v["a"]["y"]


def test_arithmetic_comparisons_and_conditionals():
    v = values("""
        root = 'data/'
        path = root + 'infos.pkl'
        nums = [1, 2] + [3]
        rep = 'ab' * 3
        rep2 = 2 * [0]
        ops = (7 + 2, 7 - 2, 7 * 2, 7 / 2, 7 // 2, 7 % 2, 2 ** 10, -7, +7, ~7, not 0)
        chain = 1 < 2 <= 2 < 3
        broken = 1 < 3 > 5
        member = (2 in [1, 2], 3 not in [1, 2], None is None, 1 is not None, 1 == 1.0, 1 != 2)
        both = 0 and 1
        either = 0 or 'x'
        last = 1 and 2 and 3
        pick = 'a' if 2 > 1 else 'b'
        other = 'a' if [] else 'b'
        r1, r2, r3 = range(3), range(1, 4), range(10, 0, -4)
        x = 1
        x += 4
        x *= 2
        """)
    assert v["path"] == "data/infos.pkl" and v["nums"] == [1, 2, 3]
    assert v["rep"] == "ababab" and v["rep2"] == [0, 0]
    assert v["ops"] == (9, 5, 14, 3.5, 3, 1, 1024, -7, 7, -8, True)
    assert v["chain"] is True and v["broken"] is False
    assert v["member"] == (True, True, True, True, True, True)
    assert (v["both"], v["either"], v["last"]) == (0, "x", 3)
    assert (v["pick"], v["other"]) == ("a", "b")
    assert (v["r1"], v["r2"], v["r3"]) == ([0, 1, 2], [1, 2, 3], [10, 6, 2])
    assert v["x"] == 10


def test_subscripts_and_slices():
    v = values("""
        pcr = [-54.0, -54.0, -5.0, 54.0, 54.0, 3.0]
        d = dict(a=dict(b=[10, 20, 30]))
        lo = pcr[:3]
        hi = pcr[3:]
        step = pcr[::2]
        last = pcr[-1]
        deep = d['a']['b'][1]
        ch = 'abcdef'[1:4]
        size = [(pcr[3] - pcr[0]) / 0.6, (pcr[4] - pcr[1]) / 0.6]
        """)
    assert v["lo"] == [-54.0, -54.0, -5.0] and v["hi"] == [54.0, 54.0, 3.0]
    assert v["step"] == [-54.0, -5.0, 54.0] and v["last"] == 3.0
    assert v["deep"] == 20 and v["ch"] == "bcd"
    assert v["size"] == [180.0, 180.0]


def test_f_strings():
    v = values("""
        name = 'cmt'
        n = 3
        plain = f'{name}_{n}'
        conv = f'{name!r}/{name!s}/{"é"!a}'
        spec = f'{n:>4}|{2.5:.2f}|{n:03d}'
        nested = f'{n:{"x"}>{4}}'
        """)
    assert v["plain"] == "cmt_3"
    assert v["conv"] == "'cmt'/cmt/'\\xe9'"
    assert v["spec"] == "   3|2.50|003"
    assert v["nested"] == "xxx3"


def test_statements_that_bind_nothing_or_are_skipped():
    parsed = parse_config_text(textwrap.dedent('''
        """A docstring is fine."""
        __all__ = ['x']
        x = 1
        print(x)
        import os.path as osp
        from os import sep
        def helper():
            return 1
        class Thing:
            pass
        if x:
            y = 2
        for k in range(3):
            z = k
        cfg = dict()
        cfg.key = 1
        cfg['k'] = 2
        cfg.a += 1
        pass
        ann: int
        '''), label="c.py")
    assert parsed.values == {"x": 1, "cfg": {}}
    assert "__all__" not in parsed.values and "ann" not in parsed.values
    skipped = " | ".join(parsed.skipped)
    for text in ("expression statement 'print(x)'", "import os.path as osp (not executed)",
                 "from os import sep", "def helper", "class Thing", "if statement",
                 "for statement", "assignment to an attribute or subscript",
                 "augmented assignment to a non-name"):
        assert text in skipped, text
    assert set(parsed.unparsed) == {"y", "k", "z"}
    assert "assigned inside a if statement" in parsed.unparsed["y"]
    assert "assigned inside a for statement" in parsed.unparsed["k"]
    # names bound by a skipped statement are not silently taken from elsewhere
    later = unparsed("""
        import os.path as osp
        def helper():
            return 1
        if True:
            y = 2
        a = osp
        b = helper()
        c = y
        d = sep
        """)
    assert "comes from 'import os.path as osp'" in later["a"]
    assert "call to helper() (the name is rebound in the file)" in later["b"]
    assert "'y' was not parsed" in later["c"]
    assert "'sep' is not defined earlier in the file" in later["d"]


def test_assignment_forms_and_duplicates():
    parsed = parse_config_text(textwrap.dedent("""
        a = b = [1]
        c, d = (1, 2)
        [e] = [3]
        f, g = 1, 2, 3
        model = dict(x=1)
        model = dict(x=2)
        """), label="c.py")
    v = parsed.values
    assert v["a"] == v["b"] == [1] and (v["c"], v["d"], v["e"]) == (1, 2, 3)
    assert set(parsed.unparsed) == {"f", "g"}
    assert "tuple unpacking of a value of another length" in parsed.unparsed["f"]
    assert v["model"] == {"x": 2}
    assert parsed.duplicates == {"model": ["c.py:6", "c.py:7"]}
    assert parsed.assignments["a"] == ["c.py:2"]


@pytest.mark.parametrize("expr, reason", [
    ("[x for x in range(3)]", "comprehension is not allowed"),
    ("{x: 1 for x in 'ab'}", "comprehension is not allowed"),
    ("{x for x in 'ab'}", "comprehension is not allowed"),
    ("list(x for x in 'ab')", "call to list() is not allowed"),
    ("lambda: 1", "lambda is not allowed"),
    ("open('/etc/passwd')", "call to open() is not allowed"),
    ("__import__('os').system('true')", "call to __import__('os').system() is not allowed"),
    ("getattr(dict, 'mro')", "call to getattr() is not allowed"),
    ("eval('1')", "call to eval() is not allowed"),
    ("dict.fromkeys('ab')", "call to dict.fromkeys() is not allowed"),
    ("ok.real", "attribute access ok.real is not allowed"),
    ("().__class__.__base__.__subclasses__", "attribute access"),
    ("(y := 1)", "assignment expression is not allowed"),
    ("1j", "constant 1j is not allowed"),
    ("...", "constant Ellipsis is not allowed"),
    ("3 | 4", "operator BitOr is not allowed"),
    ("1 << 4", "operator LShift is not allowed"),
    ("-'a'", "unary operator on a non-number"),
    ("~1.5", "unary operator Invert is not allowed"),
    ("'a' + 1", "'+' on these operands is not allowed"),
    ("'a' * 'b'", "'*' on these operands is not allowed"),
    ("'a' * True", "'*' on these operands is not allowed"),
    ("{1: 2} - {1: 2}", "operator Sub on non-numbers is not allowed"),
    ("2 ** 5000", "'**' outside small numbers"),
    ("'a' ** 2", "'**' outside small numbers"),
    ("1 / 0", "arithmetic error: division by zero"),
    ("1 < 'a'", "comparison of incompatible values"),
    ("(1)[0]", "subscript of a non-container"),
    ("[1][5]", "subscript failed: IndexError"),
    ("{'a': 1}['b']", "subscript failed: KeyError"),
    ("[1, 2]['a':]", "slice bounds must be integers"),
    ("[*1]", "'*' unpacking of a non-sequence"),
    ("{**[1]}", "'**' unpacking of a non-mapping"),
    ("dict(**[1])", "'**' unpacking of a non-mapping"),
    ("{[1]: 2}", "unhashable dict key"),
    ("{[1]}", "unhashable set element"),
    ("dict(1, 2)", "dict() with more than one positional argument"),
    ("dict(5)", "dict() of a non-mapping"),
    ("range(1, step=2)", "range() takes 1 to 3 positional integers"),
    ("range(1.5)", "range() of non-integers"),
    ("range(1, 5, 0)", "range(): range() arg 3 must not be zero"),
    ("f'{1:d}{\"a\":d}'", "f-string format failed"),
    ("f'{nope}'", "name 'nope' is not defined earlier in the file"),
])
def test_refused_constructs_make_one_assignment_unparsed(expr, reason):
    parsed = parse_config_text(f"ok = 1\nx = {expr}\nafter = ok + 1\n", label="c.py")
    assert set(parsed.unparsed) == {"x"}, parsed.unparsed
    assert parsed.unparsed["x"].startswith("c.py:2: ")
    assert reason in parsed.unparsed["x"], parsed.unparsed["x"]
    assert "x" not in parsed.values and parsed.values == {"ok": 1, "after": 2}


def test_refused_constructs_are_never_run(tmp_path):
    marker = tmp_path / "ran"
    text = f"""
        import os
        m = {str(marker)!r}
        a = [os.system('touch ' + m) for _ in range(1)]
        b = (lambda: os.system('touch ' + m))()
        c = open(m, 'w')
        d = {{k: os.system('touch ' + m) for k in 'a'}}
        e = f'{{os.system("touch " + m)}}'
        f = {{{{_base_.x}}}}
        """
    parsed = parse_config_text(textwrap.dedent(text), label="c.py")
    assert not marker.exists()
    assert set("abcdef") <= set(parsed.unparsed)
    assert "without a readable _base_" in parsed.unparsed["f"]


def test_base_references_deletes_and_multiple_bases(tmp_path):
    _write(tmp_path / "base" / "a.py", """
        point_cloud_range = [-54.0, -54.0, -5.0, 54.0, 54.0, 3.0]
        model = dict(head=dict(hidden_dim=256, renderer=dict(sigma=2.0, radius=2.0), extra=1))
        shared = 'a'
        """)
    _write(tmp_path / "base" / "b.py", """
        optimizer = dict(lr=1e-4)
        shared = 'b'
        """)
    child = _write(tmp_path / "child.py", """
        _base_ = ['./base/a.py', './base/b.py']
        pcr = {{_base_.point_cloud_range}}
        dim = {{_base_.model.head.hidden_dim}}
        model = dict(head=dict(renderer=dict(_delete_=True, sigma=1.0), extra=2))
        missing = {{_base_.model.nothing}}
        """)
    parsed = parse_config_file(child)
    assert parsed.complete and [p.rsplit("/", 1)[-1] for p in parsed.bases] == ["a.py", "b.py"]
    assert parsed.values["pcr"] == [-54.0, -54.0, -5.0, 54.0, 54.0, 3.0] and parsed.values["dim"] == 256
    assert parsed.get("model.head") == {"hidden_dim": 256, "renderer": {"sigma": 1.0}, "extra": 2}
    assert parsed.get("optimizer.lr") == 1e-4 and parsed.get("shared") == "b"
    assert any("'shared' is defined in more than one _base_ file" in n for n in parsed.notes)
    assert "{{_base_.model.nothing}} is not defined in _base_" in parsed.unparsed["missing"]
    assert parsed.assignments["model"][-1] == f"{child}:5"
    assert "_delete_" not in json.dumps(parsed.values)
    # the dotted-path reader: list indices as digits, defaults for anything absent
    assert parsed.get("pcr.3") == 54.0 and parsed.get("pcr.9", "none") == "none"
    assert parsed.get(("model", "head", "extra")) == 2 and parsed.get("model.head.extra.x") is None


def test_base_given_as_text_and_unresolvable_bases(tmp_path):
    _write(tmp_path / "b.py", "x = 1\ny = dict(a=1)\n")
    text = "_base_ = './b.py'\nz = {{_base_.x}} + 1\ny = dict(b=2)\n"
    with_dir = parse_config_text(text, label="t.py", base_dir=tmp_path)
    assert with_dir.values == {"x": 1, "y": {"a": 1, "b": 2}, "z": 2} and with_dir.complete
    without = parse_config_text(text, label="t.py")
    assert not without.complete and without.unresolved_bases == ["./b.py"]
    assert any("no folder to resolve it in" in n for n in without.notes)
    assert "without a readable _base_" not in without.unparsed.get("z", "")
    package = parse_config_text("_base_ = ['mmdet::faster_rcnn.py']\n", base_dir=tmp_path)
    assert not package.complete and any("names a package config" in n for n in package.notes)
    for spec, needle in (("_base_ = [1, 2]", "must be a file name or a list of them"),
                         ("_base_ = find()", "_base_ not parsed")):
        odd = parse_config_text(spec + "\nx = 1\n", label="t.py", base_dir=tmp_path)
        assert odd.values == {"x": 1} and not odd.complete
        assert any(needle in n for n in odd.notes), odd.notes


def test_base_chain_depth_and_json_configs(tmp_path):
    for i in range(20):
        _write(tmp_path / f"c{i}.py", f"_base_ = './c{i + 1}.py'\nv{i} = {i}\n")
    _write(tmp_path / "c20.py", "end = True\n")
    with pytest.raises(ConfigParseError, match="_base_ chain too deep"):
        parse_config_file(tmp_path / "c0.py")
    short = parse_config_file(tmp_path / "c15.py")
    assert short.values["end"] is True and short.values["v15"] == 15 and len(short.bases) == 5

    _write(tmp_path / "j" / "base.py", "model = dict(a=1, b=2)\n")
    good = _write(tmp_path / "j" / "cfg.json", json.dumps(
        {"_base_": "./base.py", "model": {"b": 3}, "lr": 0.1}))
    parsed = parse_config_file(good)
    assert parsed.values == {"model": {"a": 1, "b": 3}, "lr": 0.1}
    plain = _write(tmp_path / "j" / "plain.json", '{"x": [1, 2]}')
    assert parse_config_file(plain).values == {"x": [1, 2]}
    cases = [("bad.json", "{\"x\": ", ConfigParseError, "invalid JSON at line 1"),
             ("list.json", "[1, 2]", ConfigParseError, "a JSON config must hold an object"),
             ("deep.json", '{"x": ' + "[" * 80 + "]" * 80 + "}", ConfigBudgetError,
              "JSON nested more than 64 levels deep"),
             ("deeper.json", '{"x": ' + "[" * 100_000 + "]" * 100_000 + "}", ConfigBudgetError,
              "hostile or corrupt")]
    for name, text, error, needle in cases:
        with pytest.raises(error) as e:
            parse_config_file(_write(tmp_path / "j" / name, text))
        assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)


@pytest.mark.parametrize("text, reason", [
    ("x = 0x" + "f" * 20_000 + "\n", "an integer of more than 65536 bits"),
    ("a = 2 ** 4000\nb = a" + " * a" * 16 + "\n", "'*' would build an integer of more than 65536 bits"),
    ("a = (2 ** 4000) ** 4000\n", "'**' would build an integer of more than 65536 bits"),
    ("a = 2 ** 4000\nb = a ** 17\n", "'**' would build an integer"),
    ("a = 'x' * 600_000\nb = a + a\n", "more than 1000000 units of work"),
    ("a = [0] * 1_000_001\n", "'*' would build a sequence of more than 1000000 items"),
    ("a = [0] * 600_000\nb = [*a, *a]\n", "more than 1000000 units of work"),
    ("a = [(2 ** 4095) ** 16] * 1000\n", "the values assigned hold more than 1000000 units"),
    ("a = 'x' * 300_000\nb = [a, a, a, a]\n", "more than 1000000 units of work"),
    ("a = [0] * 1000\nb = dict(" + ", ".join(f"k{i}=a" for i in range(1200)) + ")\n", "units of work"),
    ("x = " + "[" * 70 + "]" * 70 + "\n", "x nests more than 64 levels deep"),
    ("a = dict(x=1)\n" + "a = dict(x=a)\n" * 70, "nests more than 64 levels deep"),
    ("a = [[]]\n" + "a = [a, a]\n" * 70, "hostile or corrupt"),
    ("x = f'{1:099999}'\n", "an f-string format width of five or more digits"),
    ("x = range(0, 10**7)\n", "range() of more than 1000000 items"),
    ("x = 1\n" + "x = x * 2 ** 4096\n" * 20, "bits"),
])
def test_hostile_text_is_refused_whole_with_one_line(text, reason):
    with pytest.raises(ConfigBudgetError) as e:
        parse_config_text(text, label="bomb.py")
    message = str(e.value)
    assert message.startswith("bomb.py: ") and "\n" not in message
    assert reason in message and "refusing it as hostile or corrupt" in message, message


def test_budget_is_per_file_and_text_size_is_bounded(tmp_path):
    # work well under the bound in each of two files is fine: the budget is not shared
    half = "a = 'x' * 200_000\nb = [a, a]\n"
    _write(tmp_path / "base.py", half)
    parsed = parse_config_file(_write(tmp_path / "child.py", "_base_ = './base.py'\n" + half.replace("a", "c")))
    assert len(parsed.values["b"]) == 2 and len(parsed.values["c"]) == 200_000
    from aqr_cli.io.limits import MAX_CONFIG_BYTES

    with pytest.raises(ConfigBudgetError, match=f"more than {MAX_CONFIG_BYTES}"):
        parse_config_text("#" * (MAX_CONFIG_BYTES + 1))
    for text, needle in (("x = (\n", "syntax error at line 1"), ("x = 1\0\n", "null bytes"),
                         ("x = " + "-" * 100_000 + "1\n", "cannot parse"),
                         ("x = 1" + " + 1" * 200_000 + "\n", "cannot parse")):
        with pytest.raises(ConfigParseError) as e:
            parse_config_text(text, label="s.py")
        assert needle in str(e.value) and str(e.value).startswith("s.py: ")
