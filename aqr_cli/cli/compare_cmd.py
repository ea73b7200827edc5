"""``aqr compare-modes``: the same AQR weights applied multiplicatively and additively.

Only typer is imported at module level; torch and matplotlib load inside the command.
"""

from __future__ import annotations

import typer

from aqr_cli.cli import _options, _sources
from aqr_cli.cli._common import run_guarded
from aqr_cli.cli.root import app


@app.command("compare-modes", short_help=(
    "The same AQR weights applied multiplicatively "
    "and as an additive attention bias, compared."))
def compare_modes_command(
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
    activation: _options.Activation = None,
    lam: _options.Lam = None,
    batch_size: _options.BatchSize = 1,
    sample: _options.Sample = 0,
    seed: _options.Seed = 0,
    scales: str = typer.Option("0.5,1,2.5,5,10", "--scales", help="Bias scales of the sweep "
                               "(comma-separated; empty string: no sweep)."),
    width: str = typer.Option("zero_pad", "--width", help="When features are narrower than the "
                              "embeddings (dumps keep 16 of 256 channels): zero_pad, orthogonal "
                              "(seeded projection) or skip (no attention statistics)."),
    as_json: _options.AsJson = False,
    quiet: _options.Quiet = False,
    trust: _options.Trust = False,
) -> None:
    """Apply the same per-query AQR weights both ways (multiplicative feature modulation, additive
    attention bias) and compare feature statistics (change, gain, energy in boxes) and attention
    statistics (entropy, saturation, window mass, LiDAR/camera share, change vs baseline), with a
    bias-scale sweep, PNG reports and summary.json.

    Example: aqr compare-modes --synthetic --weights scene --out aqr_compare
    """
    flags = _options.SourceFlags(
        out=out, synthetic=synthetic, checkpoint=checkpoint, features=features, weights=weights,
        reference=reference, rig=rig, method=method, sigma=sigma, bias_window=bias_window,
        bias_scale=bias_scale, bias_range=bias_range, activation=activation, lam=lam,
        batch_size=batch_size, sample=sample, seed=seed, as_json=as_json, quiet=quiet, trust=trust)
    if width not in ("zero_pad", "orthogonal", "skip"):
        raise typer.BadParameter("choose zero_pad, orthogonal or skip", param_hint="--width")
    if method == "all":
        raise typer.BadParameter("compare-modes applies one renderer method", param_hint="--method")
    scale_list = _options.parse_scales(scales)
    _options.validate(sources or [], flags)
    run_guarded(lambda: _run(sources or [], flags, tuple(scale_list), width))


def _run(paths: list, flags: _options.SourceFlags, scales: tuple, width: str) -> None:
    """Open the sources, compare the two paths on each, write its files and report."""
    from aqr_cli.io.workers import call_pool
    from aqr_cli.views import compare as view

    # started before torch is imported: the figure workers load matplotlib meanwhile
    with call_pool(preload=view.FIGURE_MODULES) as pool:
        _compare(paths, flags, scales, width, pool)


def _compare(paths: list, flags: _options.SourceFlags, scales: tuple, width: str, pool) -> None:
    import torch

    from aqr_cli.analysis.compare import CompareOptions, compare_source
    from aqr_cli.cli.output import Sink, output_dir
    from aqr_cli.views import compare as view
    from aqr_cli.views.outputs import write_outputs

    sink = Sink(json_mode=flags.as_json, quiet=flags.quiet)
    options = flags.options(CompareOptions, scales=scales, width_mode=width)
    files = _sources.expand_sources(paths)
    n_total = len(files) + int(flags.synthetic) + int(flags.features is not None)
    docs = []
    # not set_grad_enabled(False): that would leak into the caller
    # the pool inside the folder: a failing run kills the workers before the folder is removed;
    # a good one waits for every figure before the folder is committed
    with torch.no_grad(), sink.progress(n_total * 2, "comparing") as advance, \
            output_dir(flags.out, command="compare-modes") as stage, pool:
        loaded = _sources.load_sources(files, flags, sink, advance)
        _sources.report_unused_flags(sink, [s for s, _ in loaded], flags)
        names = _sources.subfolder_names([s for s, _ in loaded]) if len(loaded) > 1 else [""]
        for i, sub in enumerate(names):
            # the result keeps what is drawn; the source's features and embeddings (116 MB at
            # 1600x640) go before the next source is computed
            src, quirks = loaded[i]
            loaded[i] = None
            _sources.check_sample(src, flags)
            result = compare_source(src, options, quirks)
            del src
            outputs = view.compare_outputs(result)
            write_outputs(outputs, stage / sub if sub else stage, pool)
            docs.append(outputs.document)
            advance()
    if sink.json_mode:
        sink.json(docs[0] if len(docs) == 1 else docs)
    sink.show(view.report(docs, names, flags.out))
