"""``aqr --help`` stays light: no torch, matplotlib, markdown-it or pygments, same help text."""

from __future__ import annotations

import subprocess
import sys

_PROBE = ("import sys\nfrom aqr_cli.cli.app import main\nsys.argv = ['aqr', *{args!r}]\n"
          "try:\n    main()\nexcept SystemExit:\n    pass\n"
          "heavy = ('torch', 'matplotlib', 'markdown_it', 'pygments')\n"
          "sys.stderr.write(repr(sorted({{m.split('.')[0] for m in sys.modules}} & set(heavy))))")


def _run(*args):
    out = subprocess.run([sys.executable, "-c", _PROBE.format(args=list(args))],
                         capture_output=True, text=True, check=True)
    return out.stdout, out.stderr


def test_help_imports_no_heavy_modules():
    for args in ([], ["--help"], ["render-weights", "--help"], ["compare-modes", "-h"]):
        stdout, stderr = _run(*args)
        assert stderr.strip().endswith("[]"), (args, stderr)
        assert "--help" in stdout


def test_help_text_same_with_real_rich_modules():
    # importing the real modules first disables the stand-ins: the text must not change
    fast, _ = _run("render-weights", "--help")
    code = ("import rich.markdown, rich.traceback\n"
            + _PROBE.format(args=["render-weights", "--help"]))
    full = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout
    assert fast == full and "--checkpoint" in fast


def test_stand_ins_load_the_real_classes_on_use():
    code = ("import sys\nfrom aqr_cli.cli.app import _defer_unused_rich\n_defer_unused_rich([])\n"
            "assert 'markdown_it' not in sys.modules\n"
            "from rich.markdown import Markdown\nimport rich.traceback\n"
            "md = Markdown('**x**')\n"
            "assert type(md).__module__ == 'rich.markdown' and 'markdown_it' in sys.modules\n"
            "assert sys.modules['rich.markdown'].Markdown is type(md)\n"
            "assert callable(rich.traceback.Traceback.from_exception)\n")
    subprocess.run([sys.executable, "-c", code], check=True)
