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
        _leave(130)
    except SystemExit as e:  # how the app always ends (click's standalone mode)
        _leave(e.code)
    _leave(0)


def _leave(code) -> None:
    """End the process with ``code`` (``SystemExit`` semantics: None is 0, a message is printed
    and gives 1) once stdout and stderr are flushed.

    Every output is complete by now (written atomically, figure workers reaped). A run that
    loaded torch or matplotlib skips the interpreter's teardown of their modules and tensors,
    which took 0.5-0.7 s of every command (a third of ``render-weights`` beyond the import
    floor); ``aqr --help`` and usage errors exit normally.
    """
    import os
    import sys

    if isinstance(code, str):
        sys.stderr.write(code + "\n")
        code = 1
    code = 0 if code is None else int(code) if isinstance(code, int) else 1
    if not ({"torch", "matplotlib"} & set(sys.modules)):
        sys.exit(code)
    try:
        sys.stdout.flush()
    except BrokenPipeError:  # the reader is gone (``aqr ... | head``): nothing more to say
        pass
    except (OSError, ValueError) as e:  # a full disk, a closed stream: the output is not whole
        sys.stderr.write(f"aqr: error: cannot write the output: {e}\n")
        code = code or 1
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os._exit(code)
