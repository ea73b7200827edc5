"""The ``aqr`` entry point: registers the commands on the app, then runs it.

Keep imports light: ``aqr --help`` must not import torch or matplotlib.
"""

from __future__ import annotations

from aqr_cli.cli.root import app


def _register() -> None:
    # Each command module only imports typer at module level; heavy imports live in the bodies.
    from aqr_cli.cli import commands  # noqa: F401  (each command registers itself on the app)


def main() -> None:
    import sys

    try:
        _register()
        app()
    except KeyboardInterrupt:
        sys.stderr.write("aqr: error: interrupted\n")
        sys.exit(130)
