"""The ``aqr`` Typer application that every command registers itself on (``@app.command``).

Keep imports light: ``aqr --help`` must not import torch or matplotlib."""

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


_flags_as_flags()
