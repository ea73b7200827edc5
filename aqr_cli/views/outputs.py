"""The files a view produces, by name, and the one writer that saves them into a folder.

A view returns :class:`Outputs`: an ordered mapping of file name -> :class:`LazyFigure` (or a
Figure; PNG), JSON document (dict or list), :class:`Arrays` (NPZ) or text (CSV).
:func:`write_outputs` saves them with the atomic writers of :mod:`aqr_cli.io.atomic`, the
figures built and drawn in worker processes (a command's :func:`aqr_cli.io.workers.call_pool`,
started before its heavy imports, or processes forked for the call).

A view names each figure's builder as ``"module:function"`` (:data:`PLOTS` for the house
ones), so making a view never imports matplotlib: only the process that draws does.
"""

from __future__ import annotations

import importlib
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

PLOTS = "aqr_cli.plots."  # PLOTS + "weights:bev_weight_figure" names a builder


class Arrays(dict):
    """Named arrays written as one ``.npz`` file."""


@dataclass(frozen=True)
class LazyFigure:
    """A figure built where it is saved: ``build()`` calls ``builder(*args, **kwargs)`` (a
    :mod:`aqr_cli.plots` builder, or its name ``"module:function"``, imported by ``build``).
    A view hands these to :func:`write_outputs`, whose worker processes build and draw them
    side by side (building a report page costs about half as much as drawing it); a notebook
    calls ``build()`` for the Figure. Named builders and plain-data arguments pickle, which a
    command's pre-started workers need."""

    builder: Callable[..., Any] | str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)

    def build(self) -> Any:
        builder = self.builder
        if isinstance(builder, str):
            module, _, name = builder.partition(":")
            builder = getattr(importlib.import_module(module), name)
        return builder(*self.args, **self.kwargs)


def lazy(builder: Callable[..., Any] | str, *args: Any, **kwargs: Any) -> LazyFigure:
    """``builder(*args, **kwargs)``, deferred to the process that saves it."""
    return LazyFigure(builder, args, kwargs)


def save_figure(fig: Any, path: Path) -> None:
    """Build (if deferred) and save one figure in the house style: what a worker runs."""
    from aqr_cli.io.atomic import atomic_save_figure
    from aqr_cli.plots.style import figure_style

    with figure_style():
        atomic_save_figure(fig, path)


def warm_figures() -> None:
    """Load matplotlib, the plot modules and the fonts in a worker before its first figure."""
    from aqr_cli.plots.style import warm_up

    warm_up()


@dataclass
class Outputs:
    """``files``: file name (relative to the output folder) -> content, in writing order;
    ``document``: the JSON document a command prints with ``--json`` (None when it has none)."""

    files: dict[str, Any] = field(default_factory=dict)
    document: Any = None


def _is_figure(value: Any) -> bool:
    return isinstance(value, LazyFigure) or hasattr(value, "savefig")


def write_outputs(outputs: Outputs, folder: Path, pool: Any = None) -> list[Path]:
    """Save every file of ``outputs`` into ``folder`` (created); returns the paths in order.

    Deferred figures go to ``pool`` (a :class:`~aqr_cli.io.workers.CallPool`, whose workers may
    still be drawing them when this returns: close it before committing the folder); other
    figures, or all without a pool, are saved before this returns, this process drawing a share.
    """
    from aqr_cli.io.atomic import atomic_save_npz, atomic_write_json, atomic_write_text

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    here = []
    for name, value in outputs.files.items():
        if not _is_figure(value):
            continue
        if pool is not None and not pool.inline and isinstance(value, LazyFigure):
            try:
                pool.submit(save_figure, value, folder / name)
                continue
            except (pickle.PicklingError, TypeError, AttributeError):  # a notebook's own builder
                pass
        here.append((value, folder / name))
    if here:
        from aqr_cli.io.atomic import atomic_save_figures
        from aqr_cli.plots.style import figure_style

        with figure_style():  # forked savers inherit the style; this process restores it after
            atomic_save_figures(here)
    for name, value in outputs.files.items():
        if isinstance(value, Arrays):
            atomic_save_npz(folder / name, **value)
        elif isinstance(value, str):
            atomic_write_text(folder / name, value)
        elif not _is_figure(value):
            atomic_write_json(folder / name, value)
    return [folder / name for name in outputs.files]
