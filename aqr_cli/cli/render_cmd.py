"""``aqr render-weights``: AQR weight maps, camera maps and bias heatmaps as PNG + summary.json.

Only typer is imported at module level; torch and matplotlib load inside the command.
"""

from __future__ import annotations

import typer

from aqr_cli.cli import _options, _sources
from aqr_cli.cli._common import run_guarded
from aqr_cli.cli.root import app


@app.command("render-weights", short_help=(
    "AQR weights rendered to BEV and camera "
    "maps and attention-bias heatmaps (PNG + JSON)."))
def render_weights_command(
    sources: _options.Sources = None,
    out: _options.Out = ...,
    synthetic: _options.Synthetic = False,
    checkpoint: _options.Checkpoint = None,
    features: _options.Features = None,
    weights: _options.Weights = "generator",
    reference: _options.Reference = "800x320",
    rig: _options.Rig = None,
    method: _options.Method = None,
    sigma: _options.Sigma = None,
    bias_window: _options.BiasWindow = None,
    bias_scale: _options.BiasScale = None,
    bias_range: _options.BiasRange = "fixed",
    queries: _options.Queries = "matching",
    activation: _options.Activation = None,
    lam: _options.Lam = None,
    batch_size: _options.BatchSize = 1,
    sample: _options.Sample = 0,
    seed: _options.Seed = 0,
    save_arrays: bool = typer.Option(False, "--save-arrays", help="Also write arrays.npz."),
    as_json: _options.AsJson = False,
    quiet: _options.Quiet = False,
    trust: _options.Trust = False,
) -> None:
    """Run the AQR weight generator (or read a debug dump) and render the BEV weight map, the six
    camera weight maps, the attention-bias heatmaps and a per-query panel to PNG, with
    summary.json (weight, map and bias statistics, quirk warnings).

    Example: aqr render-weights --synthetic --weights scene --method all --out aqr_out
    """
    flags = _options.SourceFlags(
        out=out, synthetic=synthetic, checkpoint=checkpoint, features=features, weights=weights,
        reference=reference, rig=rig, method=method, sigma=sigma, bias_window=bias_window,
        bias_scale=bias_scale, bias_range=bias_range, queries=queries, activation=activation,
        lam=lam, batch_size=batch_size, sample=sample, seed=seed, as_json=as_json, quiet=quiet,
        trust=trust)
    _options.validate(sources or [], flags)
    run_guarded(lambda: _run(sources or [], flags, save_arrays))


def _run(paths: list, flags: _options.SourceFlags, save_arrays: bool) -> None:
    """Open the sources, render each, write its files (the figures of one source are drawn by
    worker processes while the next is computed) and report."""
    from aqr_cli.io.workers import call_pool
    from aqr_cli.views import render as view

    # started before torch is imported: the figure workers load matplotlib meanwhile
    with call_pool(preload=view.FIGURE_MODULES) as pool:
        _render(paths, flags, save_arrays, pool)


def _render(paths: list, flags: _options.SourceFlags, save_arrays: bool, pool) -> None:
    import torch

    from aqr_cli.analysis.render import RenderOptions, render_source
    from aqr_cli.cli.output import Sink, output_dir
    from aqr_cli.views import render as view
    from aqr_cli.views.outputs import write_outputs

    sink = Sink(json_mode=flags.as_json, quiet=flags.quiet)
    options = flags.options(RenderOptions, save_arrays=save_arrays)
    files = _sources.expand_sources(paths)
    n_total = len(files) + int(flags.synthetic) + int(flags.features is not None)
    docs, n_files = [], 0
    # not set_grad_enabled(False): that would leak into the caller
    # the pool inside the folder: a failing run kills the workers before the folder is removed;
    # a good one waits for every figure before the folder is committed
    with torch.no_grad(), sink.progress(n_total * 2, "rendering") as advance, \
            output_dir(flags.out, command="render-weights") as stage, pool:
        loaded = _sources.load_sources(files, flags, sink, advance)
        _sources.report_unused_flags(sink, [src for src, _ in loaded], flags)
        names = _sources.subfolder_names([src for src, _ in loaded]) if len(loaded) > 1 else [""]
        for (src, quirks), sub in zip(loaded, names):
            _sources.check_sample(src, flags)
            outputs = view.render_outputs(render_source(src, options, quirks))
            write_outputs(outputs, stage / sub if sub else stage, pool)
            docs.append(outputs.document)
            n_files += len(outputs.files)
            advance()
        evolution = view.evolution_outputs(docs, names)
        write_outputs(evolution, stage, pool)
    if sink.json_mode:
        sink.json(docs[0] if len(docs) == 1 else docs)
    sink.show(view.report(docs, names, flags.out, n_files + len(evolution.files)))
