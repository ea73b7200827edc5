"""A notebook gets exactly a command's files with two calls: analyse, then view (ARCHITECTURE.md)."""

from __future__ import annotations

import io
import pickle
import subprocess
import sys
from pathlib import Path

from aqr_cli.analysis.quirks import collect_quirks
from aqr_cli.analysis.sources import from_dump
from aqr_cli.inputs.settings import Overrides
from aqr_cli.views.outputs import LazyFigure, write_outputs

from conftest import CHECKPOINT, DUMP, DUMP_TRAIN


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if not p.name.startswith(".")}


class _Recorder(pickle.Unpickler):
    """Unpickles and records the modules the pickle names."""

    def __init__(self, data: bytes):
        super().__init__(io.BytesIO(data))
        self.modules: set[str] = set()

    def find_class(self, module, name):
        self.modules.add(module)
        return super().find_class(module, name)


def _figures_pickle_without_torch(outputs) -> bytes:
    """Every figure of ``outputs`` is deferred and pickles naming neither torch nor matplotlib:
    a command's figure workers start before torch is imported and must never need it (1 s
    each). Returns the figures pickled."""
    figures = {n: v for n, v in outputs.files.items() if n.endswith(".png")}
    assert figures and all(isinstance(v, LazyFigure) and isinstance(v.builder, str) for v in figures.values())
    data = pickle.dumps(figures)
    rec = _Recorder(data)
    rec.load()
    heavy = sorted(m for m in rec.modules if m.split(".")[0] in ("torch", "matplotlib"))
    assert not heavy, heavy
    return data


# Unpickles the figures as a worker does, imports every builder, draws the first; says which
# heavy modules that imported (drawing all of them again would only repeat the notebook's bytes).
_WORKER = """
import importlib, pickle, sys
from aqr_cli.views.outputs import save_figure
figures = pickle.load(open(sys.argv[1], "rb"))
for fig in figures.values():
    module, _, name = fig.builder.partition(":")
    getattr(importlib.import_module(module), name)
name, fig = next(iter(figures.items()))
save_figure(fig, sys.argv[2] + "/" + name)
print(sorted(m for m in ("torch", "matplotlib") if m in sys.modules))
"""


def _dump_source():
    with collect_quirks() as quirks:
        src = from_dump(str(DUMP_TRAIN), Overrides(), checkpoint=str(CHECKPOINT))
    return src, quirks


def test_render_two_calls_write_the_command_bytes(tmp_path, render_batch_run):
    """Against the session's ``render-weights DUMP DUMP_TRAIN --checkpoint CHECKPOINT
    --save-arrays`` run: its DUMP_TRAIN subfolder is what a run on that dump alone writes."""
    from aqr_cli.analysis.render import RenderOptions, render_source
    from aqr_cli.views.render import render_outputs

    src, quirks = _dump_source()
    result = render_source(src, RenderOptions(checkpoint=str(CHECKPOINT), save_arrays=True), quirks)
    outputs = render_outputs(result)
    figures = tmp_path / "figures.pickle"
    figures.write_bytes(_figures_pickle_without_torch(outputs))
    (tmp_path / "worker").mkdir()
    ran = subprocess.run([sys.executable, "-c", _WORKER, str(figures), str(tmp_path / "worker")],
                         capture_output=True, text=True, check=True)
    assert ran.stdout.split("\n")[0] == "['matplotlib']", ran.stdout   # drawn without torch
    fig = outputs.files["bev_weights.png"].build()      # a figure of its own, for the notebook
    assert type(fig).__name__ == "Figure" and fig.axes and fig._suptitle.get_text()
    write_outputs(outputs, tmp_path / "notebook")
    mine = _files(tmp_path / "notebook")
    res, batch = render_batch_run
    assert res.exit_code == 0, res.stderr
    cli = _files(batch / DUMP_TRAIN.stem)
    assert sorted(mine) == sorted(cli) and "summary.json" in mine and "bev_weights.png" in mine
    for name in cli:
        if name.endswith((".json", ".png")):
            assert mine[name] == cli[name], name
    worker = _files(tmp_path / "worker")
    assert len(worker) == 1 and all(worker[n] == mine[n] for n in worker), sorted(worker)


def test_compare_two_calls_write_the_command_bytes(tmp_path, compare_dump_run):
    """Against the session's ``compare-modes DUMP --checkpoint CHECKPOINT --scales ''`` run."""
    from aqr_cli.analysis.compare import CompareOptions, compare_source
    from aqr_cli.views.compare import compare_outputs

    res, cli_out = compare_dump_run
    assert res.exit_code == 0, res.stderr
    with collect_quirks() as quirks:
        src = from_dump(str(DUMP), Overrides(), checkpoint=str(CHECKPOINT))
    options = CompareOptions(checkpoint=str(CHECKPOINT), scales=())
    outputs = compare_outputs(compare_source(src, options, quirks))
    _figures_pickle_without_torch(outputs)
    cli = _files(cli_out)
    assert sorted(outputs.files) == sorted(cli) and "summary.json" in cli and "summary.png" in cli
    # every file that is not a figure, and two figures drawn (the summary page and one
    # attention page): every figure goes the same LazyFigure -> save_figure way, which the
    # render test checks for all of its figures
    attention = sorted(n for n in cli if n.startswith("attention_"))
    keep = {n for n in cli if not n.endswith(".png")} | {"summary.png", attention[0]}
    outputs.files = {n: v for n, v in outputs.files.items() if n in keep}
    write_outputs(outputs, tmp_path / "notebook")
    mine = _files(tmp_path / "notebook")
    assert sorted(mine) == sorted(keep)
    for name in mine:
        assert mine[name] == cli[name], name
