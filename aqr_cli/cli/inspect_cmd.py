"""``aqr inspect-checkpoint``: what a checkpoint or debug dump holds and which upstream bugs it shows.

Only typer is imported at module level; torch, rich and matplotlib are imported in the body so
that ``aqr --help`` stays light.
"""

from __future__ import annotations

from pathlib import Path
import typer

from aqr_cli.cli import _options
from aqr_cli.cli._common import run_guarded
from aqr_cli.cli._sources import expand_sources
from aqr_cli.cli.output import Sink
from aqr_cli.cli.root import app


@app.command("inspect-checkpoint", short_help=(
    "What a checkpoint, debug dump or config holds "
    "of AQR, and which upstream bugs it shows."))
def inspect_checkpoint_command(
    paths: _options.InspectPaths,
    as_json: _options.AsJson = False,
    quiet: _options.Quiet = False,
    keys: _options.Keys = False,
    out: _options.InspectOut = None,
    rig: _options.InspectRig = None,
    config: _options.InspectConfig = None,
    checkpoint: _options.InspectCheckpoint = None,
    trust: _options.Trust = False,
    diff: _options.Diff = False,
) -> None:
    """Report what AQR parts a checkpoint holds, its config, learned bias scale, weight head,
    reference points and the upstream bugs (spec section 9) it shows; for debug dumps: contents,
    queries and DN share, and dump quirks; for mmcv config files (detected by content): the
    merged AQR settings with the file and line each comes from, whether AQR ends up on, and the
    quirks the config alone decides. Several paths give one row each.

    Example: aqr inspect-checkpoint work_dirs/cmt_aqr/epoch_*.pth --out inspect_report/
    """
    flags = _options.InspectFlags(keys=keys, out=out, rig=rig, config=config, checkpoint=checkpoint,
                                  trust=trust, diff=diff, as_json=as_json, quiet=quiet)
    if keys and out is not None:
        raise typer.BadParameter("--keys prints the key tree only; it cannot be combined with --out",
                                 param_hint="--keys")
    if diff and (keys or len(paths) < 2):
        raise typer.BadParameter("--diff compares two or more configs or checkpoints (without "
                                 "--keys)", param_hint="--diff")
    run_guarded(lambda: _run(expand_sources(paths), flags))


def _run(paths: list[Path], flags: _options.InspectFlags) -> None:
    """Inspect every path (a failing file is reported, the others still are), write the outputs,
    show the reports, then one error line per failed file."""
    import sys

    from aqr_cli.cli.output import console, output_dir
    from aqr_cli.views import inspect_report as view
    from aqr_cli.views.outputs import write_outputs

    sink = Sink(json_mode=flags.as_json, quiet=flags.quiet)
    if flags.trust:
        sink.warn(_options.TRUST_DEPRECATED)
    outputs = None
    if flags.out is None or flags.keys:
        results = _inspect(paths, flags, sink)
    else:
        with output_dir(flags.out, command="inspect-checkpoint") as stage:
            results = _inspect(paths, flags, sink)
            outputs, note = view.inspect_outputs(results) if view.good(results) else (None, None)
            if outputs is not None:
                write_outputs(outputs, stage)
            if note:
                sink.note(note)
    if view.good(results) or len(results) > 1:
        if sink.json_mode:
            sink.json(view.inspect_document(results, keys=flags.keys, diff=flags.diff))
        elif not sink.quiet:
            con = console()
            for objects, kw in view.inspect_screen(results, con.width, keys=flags.keys,
                                                   diff=flags.diff).items:
                con.print(*objects, **kw)
    if outputs is not None:
        sink.wrote(len(outputs.files), flags.out)
    for f in view.failures(results):
        sys.stderr.write(view.failure_line(f) + "\n")
    if view.failures(results):
        raise typer.Exit(code=1)


def _inspect(paths: list[Path], flags: _options.InspectFlags, sink: Sink) -> list:
    """The results, then a warning for each flag no file used and for aqr's own warnings."""
    from aqr_cli.analysis.inspection.files import inspect_paths
    from aqr_cli.analysis.quirks import collect_own_warnings

    with collect_own_warnings() as own:
        results = inspect_paths(paths, keys=flags.keys, rig=flags.rig, config=flags.config,
                                checkpoint=flags.checkpoint)
        kinds = {getattr(r, "kind", None) for r in results}
        if flags.rig is not None and kinds == {"debug_dump"}:
            sink.warn("--rig is not used: debug dumps carry their own cameras (img_metas lidar2img)")
        if flags.checkpoint is not None and "debug_dump" not in kinds and not flags.keys:
            sink.warn("--checkpoint is not used: it applies to debug dumps, and no dump was given")
        if flags.config is not None and "config" in kinds:
            sink.warn("--config is not used for config files: they are linted as given")
    for text in own:
        sink.warn(text)
    return results
