"""``aqr inspect-checkpoint``: what a checkpoint or debug dump holds and which upstream bugs it shows.

Only typer is imported at module level; torch, rich and matplotlib are imported in the body so
that ``aqr --help`` stays light.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from aqr_cli.cli import _sources
from aqr_cli.cli._common import UserError, run_guarded
from aqr_cli.cli.root import app
from aqr_cli.cli.output import Sink
from aqr_cli.views.inspect_report import JSON_NAME, PNG_NAME


@app.command("inspect-checkpoint", short_help=(
    "What a checkpoint, debug dump or config holds "
    "of AQR, and which upstream bugs it shows."))
def inspect_checkpoint_command(
    paths: List[Path] = typer.Argument(
        ..., metavar="PATH...", show_default=False, readable=False,
        help="Checkpoints (epoch_N.pth, .safetensors, ...), upstream debug dumps "
             "(weights_iter_N.pth) and/or mmcv config files (linted without a checkpoint); "
             "files, folders or quoted globs."),
    as_json: _sources.AsJson = False,
    quiet: _sources.Quiet = False,
    keys: bool = typer.Option(
        False, "--keys", help="Print the key tree of each file with shapes and dtypes, and stop."),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", metavar="DIR", help=f"Write {JSON_NAME} and {PNG_NAME} (bias scale and "
        f"weight head across epochs). {_sources.OUT_HELP}"),
    rig: Optional[Path] = typer.Option(
        None, "--rig", metavar="FILE", readable=False, help="Camera rig for reference-point visibility "
        "(default: the packaged 800x320 rig). Dumps use their own img_metas."),
    config: Optional[Path] = typer.Option(
        None, "--config", metavar="FILE", readable=False, help="mmcv config that overrides or supplies "
        "meta['config']; parsed, never executed."),
    checkpoint: Optional[Path] = typer.Option(
        None, "--checkpoint", metavar="FILE", readable=False, help="For debug dumps: the run's checkpoint, whose "
        "reference points give the exact Q3 sentinel count and whose config gives num_query."),
    trust: _sources.Trust = False,
    diff: bool = typer.Option(
        False, "--diff", help="With two or more configs (or checkpoints): show only the AQR "
        "settings whose merged values differ between them."),
) -> None:
    """Report what AQR parts a checkpoint holds, its config, learned bias scale, weight head,
    reference points and the upstream bugs (spec section 9) it shows; for debug dumps: contents,
    queries and DN share, and dump quirks; for mmcv config files (detected by content): the
    merged AQR settings with the file and line each comes from, whether AQR ends up on, and the
    quirks the config alone decides. Several paths give one row each.

    Example: aqr inspect-checkpoint work_dirs/cmt_aqr/epoch_*.pth --out inspect_report/
    """
    if keys and out is not None:
        raise typer.BadParameter("--keys prints the key tree only; it cannot be combined with --out",
                                 param_hint="--keys")
    if diff and (keys or len(paths) < 2):
        raise typer.BadParameter("--diff compares two or more configs or checkpoints (without "
                                 "--keys)", param_hint="--diff")
    run_guarded(lambda: _run(_sources.expand_sources(paths), sink=Sink(json_mode=as_json, quiet=quiet),
                             keys=keys, out=out, rig=rig, config=config, checkpoint=checkpoint,
                             trust=trust, diff=diff))


def _run(paths: list[Path], *, sink: Sink, keys: bool, out: Path | None, rig: Path | None,
         config: Path | None, checkpoint: Path | None, trust: bool, diff: bool = False) -> None:
    import sys

    from aqr_cli.views.inspect_report import FileFailure, good, inspect_outputs
    from aqr_cli.views.outputs import write_outputs

    if trust:
        sink.warn(_sources.TRUST_DEPRECATED)
    opts = dict(keys=keys, rig=rig, config=config, checkpoint=checkpoint)
    if out is None or keys:
        results = _collect(paths, sink, **opts)
        _show(results, sink, keys, diff)
    else:
        from aqr_cli.cli.output import output_dir

        with output_dir(out, command="inspect-checkpoint") as stage:
            results = _collect(paths, sink, **opts)
            outputs, note = inspect_outputs(results) if good(results) else (None, None)
            if outputs is not None:
                write_outputs(outputs, stage)
            if note:
                sink.note(note)
        _show(results, sink, keys, diff)
        if outputs is not None:
            sink.wrote(len(outputs.files), out)
    failures = [r for r in results if isinstance(r, FileFailure)]
    for f in failures:
        sys.stderr.write(f.line() + "\n")
    if failures:
        raise typer.Exit(code=1)


def _collect(paths, sink: Sink, **kw) -> list:
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = _inspect_all(paths, sink, **kw)
    _print_warnings(caught, sink)
    return results


def _show(results: list, sink: Sink, keys: bool, diff: bool = False) -> None:
    """Hand the results to the inspect views: key trees, config diff, JSON, one report or a table."""
    from aqr_cli.cli.output import console
    from aqr_cli.views import inspect_report as view

    good = view.good(results)
    if not (good or len(results) > 1):
        return
    if sink.json_mode:
        if keys:
            doc = view.keys_document(results)
        elif diff:
            doc = view.clean(_diff(good).to_dict())
        else:
            doc = view.clean([r.to_dict() for r in results] if len(results) > 1 else results[0].to_dict())
        sink.json(doc)
        return
    if sink.quiet:
        return
    con = console()
    screen = view.Screen(con.width)
    if keys:
        view.show_keys(results, screen)
    elif diff:
        view.show_diff(_diff(good), screen)
    elif len(results) == 1:
        view.show_one(results[0], screen)
    else:
        view.show_table(results, screen)
    for objects, kw in screen.items:
        con.print(*objects, **kw)


def _diff(reports: list):
    from aqr_cli.analysis.config_lint import diff_configs

    return diff_configs([r for r in reports if getattr(r, "config", None) is not None])


def _preload(opener, rig: Path | None, config: Path | None, checkpoint: Path | None):
    """Fail once, early, on a bad --rig, --config or --checkpoint; returns the opened checkpoint."""
    from aqr_cli.io import LoadError, parse_config_file
    from aqr_cli.io.rig import load_rig

    if rig is not None:
        load_rig(rig)
    if config is not None:
        try:
            parse_config_file(config)
        except LoadError as e:
            raise UserError(str(e), e.hint) from None
    if checkpoint is None:
        return None
    try:
        return opener.checkpoint(checkpoint)
    except LoadError as e:
        raise UserError(f"--checkpoint: {e}", e.hint) from None


def _inspect_one(p: Path, opener, *, keys: bool, rig, config, ck):
    """The report (or key tree) of one file; whatever it raises becomes a FileFailure, so the
    other files are still reported."""
    import os

    from aqr_cli.analysis.config_lint import lint_config, looks_like_config
    from aqr_cli.analysis.inspection.files import inspect_file
    from aqr_cli.analysis.inspection.tree import key_tree
    from aqr_cli.core.errors import AQRInputError
    from aqr_cli.inputs.opened import open_input
    from aqr_cli.io import LoadError
    from aqr_cli.views.inspect_report import FileFailure

    try:
        if looks_like_config(p):
            return FileFailure(p, f"{p}: an mmcv config has no key tree (--keys is for "
                                  "checkpoints and dumps)") if keys else lint_config(p)
        if keys:
            return (p, key_tree(opener.file(p)))
        return inspect_file(open_input(opener.file(p), config), rig=rig, config_path=config,
                            checkpoint=ck)
    except LoadError as e:
        return FileFailure(p, str(e), e.hint, e.reason)
    except (AQRInputError, UserError) as e:
        text = str(e) if str(e).startswith(str(p)) else f"{p}: {e}"
        return FileFailure(p, text, getattr(e, "hint", None), reason=str(e))
    except (OSError, MemoryError, RecursionError) as e:
        return FileFailure(p, f"{p}: {type(e).__name__}: {e}", reason=str(e))
    except Exception as e:  # noqa: BLE001 - a bug shows for this file; the others are reported
        if os.environ.get("AQR_DEBUG"):
            raise
        return FileFailure(p, f"{p}: internal error ({type(e).__name__}: {e})",
                           "this is a bug in aqr; rerun with AQR_DEBUG=1 for the traceback",
                           reason=str(e))


def _inspect_all(paths, sink: Sink, *, keys, rig, config, checkpoint) -> list:
    from aqr_cli.inputs.opened import Opener

    opener = Opener()  # each file is loaded once, whatever roles it plays
    ck = _preload(opener, rig, config, checkpoint)
    results = [_inspect_one(p, opener, keys=keys, rig=rig, config=config, ck=ck) for p in paths]
    kinds = {getattr(r, "kind", None) for r in results}
    if rig is not None and kinds == {"debug_dump"}:
        sink.warn("--rig is not used: debug dumps carry their own cameras (img_metas lidar2img)")
    if checkpoint is not None and "debug_dump" not in kinds and not keys:
        sink.warn("--checkpoint is not used: it applies to debug dumps, and no dump was given")
    if config is not None and "config" in kinds:
        sink.warn("--config is not used for config files: they are linted as given")
    return results


def _print_warnings(caught, sink: Sink) -> None:
    """One stderr line per distinct warning raised by aqr itself (trusted loads included).

    Quirk warnings of the core are left out (the findings report them), and so are warnings of
    third-party libraries, which a user cannot act on.
    """
    from aqr_cli.core.errors import QuirkWarning

    seen = set()
    for w in caught:
        if isinstance(w.message, QuirkWarning):
            continue
        ours = "aqr_cli" in str(w.filename) and issubclass(w.category, UserWarning)
        if not ours:
            continue
        text = " ".join(str(w.message).split())
        if text not in seen:
            seen.add(text)
            sink.warn(text)
