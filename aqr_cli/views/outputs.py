"""The files a view produces, by name, and the one writer that saves them into a folder.

A view returns :class:`Outputs`: an ordered mapping of file name -> :class:`LazyFigure` (or a
Figure; PNG), JSON document (dict or list), :class:`Arrays` (NPZ) or text (CSV).
:func:`write_outputs` saves them with the atomic writers of :mod:`aqr_cli.io.atomic`, the
figures built and drawn in worker processes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable


class Arrays(dict):
    """Named arrays written as one ``.npz`` file."""


@dataclass(frozen=True)
class LazyFigure:
    """A figure built where it is saved: ``build()`` calls ``builder(*args, **kwargs)`` (a
    :mod:`aqr_cli.plots` builder). A view hands these to :func:`write_outputs`, whose worker
    processes build and draw them side by side (building a report page costs about half as
    much as drawing it); a notebook calls ``build()`` for the Figure."""

    builder: Callable[..., Any]
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)

    def build(self) -> Any:
        return self.builder(*self.args, **self.kwargs)


def lazy(builder: Callable[..., Any], *args: Any, **kwargs: Any) -> LazyFigure:
    """``builder(*args, **kwargs)``, deferred to the process that saves it."""
    return LazyFigure(builder, args, kwargs)


@dataclass
class Outputs:
    """``files``: file name (relative to the output folder) -> content, in writing order;
    ``document``: the JSON document a command prints with ``--json`` (None when it has none)."""

    files: dict[str, Any] = field(default_factory=dict)
    document: Any = None


def _is_figure(value: Any) -> bool:
    return isinstance(value, LazyFigure) or hasattr(value, "savefig")


def write_outputs(outputs: Outputs, folder: Path, saver: Any = None) -> list[Path]:
    """Save every file of ``outputs`` into ``folder`` (created); returns the paths in order.

    Figures go to ``saver`` (a :class:`~aqr_cli.io.atomic.FigureSaver`, which may still be
    drawing them when this returns) or, without one, are saved before this returns, this
    process drawing a share.
    """
    from aqr_cli.io.atomic import atomic_save_figures, atomic_save_npz, atomic_write_json, atomic_write_text
    from aqr_cli.plots.style import figure_style

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    figures = [(value, folder / name) for name, value in outputs.files.items() if _is_figure(value)]
    with figure_style():  # forked savers inherit the style; this process restores it after
        if saver is None:
            atomic_save_figures(figures)
        else:
            saver.submit(figures)
    for name, value in outputs.files.items():
        if isinstance(value, Arrays):
            atomic_save_npz(folder / name, **value)
        elif isinstance(value, str):
            atomic_write_text(folder / name, value)
        elif not _is_figure(value):
            atomic_write_json(folder / name, value)
    return [folder / name for name in outputs.files]
