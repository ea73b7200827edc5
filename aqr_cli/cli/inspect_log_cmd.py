"""``aqr inspect-log``: read training logs and put runs side by side.

Thin: flags, then :mod:`aqr_cli.logs` (parse, analyse, views) and :mod:`aqr_cli.plots.logs`
(figures), then the output sink. Only typer is imported at module level.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from aqr_cli.cli import _options
from aqr_cli.cli._common import UserError, run_guarded
from aqr_cli.cli.root import app
from aqr_cli.views.log import SUMMARY_JSON, TRAIN_CSV


@app.command("inspect-log", short_help=(
    "Training logs read and put side by "
    "side: metrics, cost, losses, AQR debug prints."))
def inspect_log_command(
    paths: List[Path] = typer.Argument(
        ..., metavar="LOG...", show_default=False,
        help="Training logs: mmcv text logs, *.log.json, mmengine logs; files, folders or quoted "
             "globs. The format is read from the content."),
    baseline: Optional[Path] = typer.Option(
        None, "--baseline", metavar="LOG", help="The run the others are compared with (listed "
        "first; deltas are run minus baseline)."),
    as_json: _options.AsJson = False,
    quiet: _options.Quiet = False,
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", metavar="DIR", help=f"Write {SUMMARY_JSON}, {TRAIN_CSV} and the "
        f"figures. {_options.OUT_HELP}"),
) -> None:
    """Summarise training logs: header, config quirks, training records (time, memory, every
    loss), validation metrics and per-class AP, AQR debug prints read against the researchers'
    bands, and log findings (NaN grad_norm, loss spikes, memory growth). Several logs give one
    table with deltas against --baseline.

    Example: aqr inspect-log work_dirs/aqr/20251012_022635.log --baseline work_dirs/base/run.log -o log_report/
    """
    flags = _options.LogFlags(baseline=baseline, out=out, as_json=as_json, quiet=quiet)
    run_guarded(lambda: _run(paths, flags))


def _run(paths: list[Path], flags: _options.LogFlags) -> None:
    """Read every log, compare the runs with the baseline, show and write the views."""
    from aqr_cli.cli.output import Sink, console, output_dir
    from aqr_cli.logs.analysis import compare_runs, summarize_log
    from aqr_cli.logs.files import expand_logs
    from aqr_cli.views.log import log_outputs, log_text, summary_document
    from aqr_cli.views.outputs import write_outputs

    baseline, out = flags.baseline, flags.out
    sink = Sink(json_mode=flags.as_json, quiet=flags.quiet)
    files = expand_logs(paths)
    base_file = None
    if baseline is not None:
        if baseline.is_dir():
            raise UserError(f"--baseline {baseline}: give one log file, not a folder")
        base_file = baseline
        key = baseline.resolve() if baseline.exists() else baseline
        files = [base_file] + [f for f in files if (f.resolve() if f.exists() else f) != key]
    runs = [summarize_log(f) for f in files]  # a bad file stops here: nothing written yet
    base_run = runs[0] if base_file is not None else None
    comparisons = compare_runs(runs, base_run)
    doc = summary_document(runs, base_run, comparisons)
    if flags.as_json:
        sink.json(doc)
    else:
        from rich.text import Text

        for text in log_text(runs, base_run, comparisons, console().width or 80):
            sink.data(Text(text))
    for r in runs:
        for note in r.notes:
            sink.note(note, source=r.name)
    if baseline is None and len(runs) > 1:
        sink.note("no --baseline: the table shows no deltas")
    if out is not None:
        with output_dir(out, command="inspect-log") as stage:
            outputs, notes = log_outputs(runs, base_run, doc)
            write_outputs(outputs, stage)
            for note in notes:
                sink.note(note)
        sink.wrote(len(outputs.files), out)
