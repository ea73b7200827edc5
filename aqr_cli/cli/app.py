"""The ``aqr`` command line. Keep imports light: ``aqr --help`` must not import torch or matplotlib."""

from __future__ import annotations

from typing import Optional

import typer

from aqr_cli import __version__

app = typer.Typer(
    name="aqr",
    help="Analyse and visualise the AQR (adaptive query reweighting) module of CMT-style "
         "camera+LiDAR detectors, on CPU, from upstream checkpoints and debug dumps.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"aqr {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True,
                                           help="Print the version and exit."),
) -> None:
    """Analyse and visualise AQR weights, renders and attention biases."""


def _flags_as_flags() -> None:
    """Show boolean flags as bare flags in help (this typer prints ``--json <bool>``)."""
    try:
        from typer.core import TyperOption
    except ImportError:  # pragma: no cover - other typer versions
        return
    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None or getattr(shown, "_aqr_patched", False):
        return

    def display_type_rich(self, ctx):
        if getattr(self, "is_flag", False) and not getattr(self, "count", False):
            return None
        return shown(self, ctx)

    display_type_rich._aqr_patched = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


def _register() -> None:
    # Each command module only imports typer at module level; heavy imports live in the bodies.
    from aqr_cli.cli import commands  # noqa: F401


# typer's help module imports these at module level but uses them only for markdown markup and
# pretty tracebacks, both off here; they pull in markdown-it and pygments (about a fifth of the
# CPU time of ``aqr --help``).
_UNUSED_BY_HELP = {"rich.markdown": ("Markdown",), "rich.traceback": ("Traceback",)}


def _defer_unused_rich(argv: list[str]) -> None:
    """When ``argv`` asks for help, leave ``rich.markdown`` and ``rich.traceback`` unimported:
    stand-in modules whose classes load the real module (and step aside) on first use."""
    import importlib
    import sys
    import types

    if argv and not {"-h", "--help"} & set(argv):
        return
    for name, attrs in _UNUSED_BY_HELP.items():
        if name in sys.modules:
            continue
        stand_in = types.ModuleType(name)

        def real(name=name, stand_in=stand_in):
            if sys.modules.get(name) is stand_in:
                del sys.modules[name]
            return importlib.import_module(name)

        class _Forward(type):  # class attributes (e.g. Traceback.from_exception) of the real one
            def __getattr__(cls, attr, _real=real):
                return getattr(getattr(_real(), cls.__name__), attr)

        for attr in attrs:
            def new(cls, *args, _real=real, **kwargs):
                return getattr(_real(), cls.__name__)(*args, **kwargs)
            # a class, not a function: typer evaluates annotations such as ``Markdown | Text``
            setattr(stand_in, attr, _Forward(attr, (), {"__new__": new}))

        def other(attr, _real=real):  # PEP 562; the import system probes dunders (__path__)
            if attr.startswith("__"):
                raise AttributeError(attr)
            return getattr(_real(), attr)
        stand_in.__getattr__ = other
        sys.modules[name] = stand_in
        parent, _, child = name.rpartition(".")
        setattr(importlib.import_module(parent), child, stand_in)  # as an import would


def main() -> None:
    import sys

    try:
        _defer_unused_rich(sys.argv[1:])
        _register()
        app()
    except KeyboardInterrupt:
        sys.stderr.write("aqr: error: interrupted\n")
        sys.exit(130)
