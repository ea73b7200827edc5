"""``aqr --help`` stays light: neither torch nor matplotlib is imported."""

from __future__ import annotations

import subprocess
import sys

_PROBE = ("import sys\nfrom aqr_cli.cli.app import main\nsys.argv = ['aqr', *{args!r}]\n"
          "try:\n    main()\nexcept SystemExit:\n    pass\n"
          "heavy = ('torch', 'matplotlib')\n"
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
