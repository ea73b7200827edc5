"""``aqr inspect-checkpoint``: what a checkpoint or debug dump holds and which upstream bugs it shows.

Only typer is imported at module level; torch, rich and matplotlib are imported in the body so
that ``aqr --help`` stays light.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import typer

from aqr_cli.cli import _sources as S
from aqr_cli.cli._common import UserError, run_guarded
from aqr_cli.cli.app import app
from aqr_cli.cli.output import Sink, fitted_table

PNG_NAME = "inspect_epochs.png"
JSON_NAME = "inspect.json"
_SEV_STYLE = {"error": "bold red", "warning": "yellow", "info": "dim"}


@app.command("inspect-checkpoint", short_help=(
    "What a checkpoint, debug dump or config holds "
    "of AQR, and which upstream bugs it shows."))
def inspect_checkpoint_command(
    paths: List[Path] = typer.Argument(
        ..., metavar="PATH...", show_default=False, readable=False,
        help="Checkpoints (epoch_N.pth, .safetensors, ...), upstream debug dumps "
             "(weights_iter_N.pth) and/or mmcv config files (linted without a checkpoint); "
             "files, folders or quoted globs."),
    as_json: S.AsJson = False,
    quiet: S.Quiet = False,
    keys: bool = typer.Option(
        False, "--keys", help="Print the key tree of each file with shapes and dtypes, and stop."),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", metavar="DIR", help=f"Write {JSON_NAME} and {PNG_NAME} (bias scale and "
        f"weight head across epochs). {S.OUT_HELP}"),
    rig: Optional[Path] = typer.Option(
        None, "--rig", metavar="FILE", readable=False, help="Camera rig for reference-point visibility "
        "(default: the packaged 800x320 rig). Dumps use their own img_metas."),
    config: Optional[Path] = typer.Option(
        None, "--config", metavar="FILE", readable=False, help="mmcv config that overrides or supplies "
        "meta['config']; parsed, never executed."),
    checkpoint: Optional[Path] = typer.Option(
        None, "--checkpoint", metavar="FILE", readable=False, help="For debug dumps: the run's checkpoint, whose "
        "reference points give the exact Q3 sentinel count and whose config gives num_query."),
    trust: S.Trust = False,
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
    run_guarded(lambda: _run(S.expand_sources(paths), sink=Sink(json_mode=as_json, quiet=quiet),
                             keys=keys, out=out, rig=rig, config=config, checkpoint=checkpoint,
                             trust=trust, diff=diff))


# ---------------------------------------------------------------- the command body


class _Failure:
    """One file that could not be inspected: the one-line message for stderr."""

    def __init__(self, path: Path, message: str, hint: str | None = None,
                 reason: str | None = None):
        self.path, self.message, self.hint = Path(path), message, hint
        self.reason = " ".join((reason or message).split())

    def line(self) -> str:
        text = " ".join(self.message.split())
        return f"aqr: error: {text}" + (f" ({self.hint})" if self.hint else "")

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "error": " ".join(self.message.split())}


def _run(paths: list[Path], *, sink: Sink, keys: bool, out: Path | None, rig: Path | None,
         config: Path | None, checkpoint: Path | None, trust: bool, diff: bool = False) -> None:
    import sys

    if trust:
        sink.warn(S.TRUST_DEPRECATED)
    if out is None or keys:
        results = _collect(paths, sink, keys=keys, rig=rig, config=config, checkpoint=checkpoint,
                           trust=trust)
        _show(results, sink, keys, diff)
    else:
        from aqr_cli.cli.output import output_dir

        with output_dir(out, command="inspect-checkpoint") as stage:
            results = _collect(paths, sink, keys=keys, rig=rig, config=config,
                               checkpoint=checkpoint, trust=trust)
            written = _write_out(stage, results, sink) if _good(results) else []
        _show(results, sink, keys, diff)
        if written:
            sink.wrote(len(written), out)
    failures = [r for r in results if isinstance(r, _Failure)]
    for f in failures:
        sys.stderr.write(f.line() + "\n")
    if failures:
        raise typer.Exit(code=1)


def _good(results: list) -> list:
    return [r for r in results if not isinstance(r, _Failure)]


def _collect(paths, sink: Sink, **kw) -> list:
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = _inspect_all(paths, sink, **kw)
    _print_warnings(caught, sink)
    return results


def _show(results: list, sink: Sink, keys: bool, diff: bool = False) -> None:
    if not (_good(results) or len(results) > 1):
        return
    if keys:
        _show_keys(results, sink)
    elif diff:
        _show_diff(_good(results), sink)
    elif sink.json_mode:
        docs = [r.to_dict() for r in results]
        sink.json(_clean(docs[0] if len(results) == 1 else docs))
    elif sink.quiet:
        return
    elif len(results) == 1:
        _show_one(results[0])
    else:
        _show_table(results)


def _inspect_all(paths, sink: Sink, *, keys, rig, config, checkpoint, trust) -> list:
    import os

    from aqr_cli.analysis.inspection.files import inspect_file
    from aqr_cli.analysis.inspection.tree import key_tree
    from aqr_cli.core.errors import AQRInputError
    from aqr_cli.inputs.opened import Opener, open_input
    from aqr_cli.io import LoadError, parse_config_file
    from aqr_cli.io.rig import load_rig

    if rig is not None:
        load_rig(rig)  # fail once, early, on a bad rig file
    if config is not None:
        try:
            parse_config_file(config)
        except LoadError as e:
            raise UserError(str(e), e.hint) from None
    ck, opener = None, Opener()  # each file is loaded once, whatever roles it plays
    if checkpoint is not None:
        try:
            ck = opener.checkpoint(checkpoint)
        except LoadError as e:
            raise UserError(f"--checkpoint: {e}", e.hint) from None
    from aqr_cli.analysis.config_lint import lint_config, looks_like_config

    results: list = []
    for p in paths:
        # every file is reported on its own: whatever one file raises, the others still are
        try:
            if looks_like_config(p):
                results.append(_Failure(p, f"{p}: an mmcv config has no key tree (--keys is for "
                                        "checkpoints and dumps)") if keys else lint_config(p))
            elif keys:
                results.append((p, key_tree(opener.file(p))))
            else:
                results.append(inspect_file(open_input(opener.file(p), config), rig=rig,
                                            config_path=config, checkpoint=ck))
        except LoadError as e:
            results.append(_Failure(p, str(e), e.hint, e.reason))
        except (AQRInputError, UserError) as e:
            text = str(e) if str(e).startswith(str(p)) else f"{p}: {e}"
            results.append(_Failure(p, text, getattr(e, "hint", None), reason=str(e)))
        except (OSError, MemoryError, RecursionError) as e:
            results.append(_Failure(p, f"{p}: {type(e).__name__}: {e}", reason=str(e)))
        except Exception as e:  # noqa: BLE001 - a bug shows for this file; the others are reported
            if os.environ.get("AQR_DEBUG"):
                raise
            results.append(_Failure(p, f"{p}: internal error ({type(e).__name__}: {e})",
                                    "this is a bug in aqr; rerun with AQR_DEBUG=1 for the traceback",
                                    reason=str(e)))
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


def _clean(doc: Any) -> Any:
    """JSON-safe: NaN/Inf become null, tuples lists, other objects their str."""
    import math

    if isinstance(doc, dict):
        return {str(k): _clean(v) for k, v in doc.items()}
    if isinstance(doc, (list, tuple)):
        return [_clean(v) for v in doc]
    if isinstance(doc, float):
        return doc if math.isfinite(doc) else None
    if isinstance(doc, (str, int, bool)) or doc is None:
        return doc
    if hasattr(doc, "item"):
        return _clean(doc.item())
    return str(doc)


def _write_out(stage: Path, results: list, sink: Sink) -> list[str]:
    """Write inspect.json (and the epoch PNG when it has data) into ``stage``; returns the names."""
    from aqr_cli.analysis.inspection.epochs import epoch_series
    from aqr_cli.analysis.inspection.reports import CheckpointReport
    from aqr_cli.io import atomic_save_figure, atomic_write_json

    reports = [r for r in results if isinstance(r, CheckpointReport)]
    docs = [r.to_dict() for r in results]
    atomic_write_json(stage / JSON_NAME, _clean(docs))
    if all(getattr(r, "kind", None) == "config" for r in _good(results)):
        return [JSON_NAME]  # configs have no epoch figure
    if not any(r.bias_scale is not None or r.weight_head is not None for r in reports):
        sink.note(f"{PNG_NAME} not written: no checkpoint with an AQR bias scale or weight head")
        return [JSON_NAME]
    from aqr_cli.plots.inspect import epoch_evolution_figure

    series = epoch_series(reports)
    fig = epoch_evolution_figure(series, title=f"AQR across {len(reports)} checkpoint(s)")
    atomic_save_figure(fig, stage / PNG_NAME)
    return [JSON_NAME, PNG_NAME]


def _console():
    from aqr_cli.cli.output import console

    return console()


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


class _KV:
    """Aligned ``key  value`` lines, values wrapped with a hanging indent (no trailing blanks)."""

    def __init__(self):
        self.rows: list[tuple[str, str]] = []

    def add_row(self, key: str, value: str) -> None:
        self.rows.append((key, value))

    def print(self, con) -> None:
        from aqr_cli.cli.output import kv_block

        con.print(kv_block(self.rows, width=con.width), end="")


def _kv_table() -> _KV:
    return _KV()


def _findings_table(findings, width: int):
    """Findings as ``id severity  message`` blocks, messages wrapped, never cut."""
    from aqr_cli.cli.output import kv_block

    return kv_block([(f"{f.id} {f.severity}", f.message) for f in findings], width=width,
                    title="Findings (spec section 9)")


def _title(name: str, kind: str):
    from rich.text import Text

    text = Text(name, style="bold")
    text.append(f"  {kind}")
    return text


def _print_notes(con, notes) -> None:
    from rich.text import Text

    for note in notes:
        con.print(Text(f"note: {note}", style="dim"))


def _fmt(x: float | None, d: int = 4) -> str:
    return "-" if x is None else f"{x:.{d}f}"


def _show_one(r) -> None:
    if r.kind == "config":
        from aqr_cli.cli._config_lint_view import render_config

        con = _console()
        con.print(render_config(r, width=con.width), markup=False)
    elif r.kind == "debug_dump":
        _show_dump(r)
    else:
        _show_checkpoint(r)


def _checks_text(checks) -> str:
    bad = [c for c in checks if c.status in ("mismatch", "undecidable")]
    ok = sum(c.status == "ok" for c in checks)
    inferred = sum(c.status == "inferred" for c in checks)
    text = f"{ok} ok" + (f", {inferred} inferred from the tensors" if inferred else "")
    for c in bad:
        text += f"\n{c.status}: {c.message}"
    return text


def _shape_text(r) -> str:
    s = r.shapes
    sd = s.state_dict
    parts = []
    if s.bev:
        parts.append("BEV " + "x".join("?" if v is None else str(v) for v in s.bev))
    if s.pers:
        parts.append("camera " + "x".join("?" if v is None else str(v) for v in s.pers))
    if s.aqr_window_sizes:
        parts.append(f"AQR windows {s.aqr_window_sizes} [camera, lidar]")
    if s.bias_window is not None:
        extra = ""
        if sd.get("bias_offsets"):
            axis = sd.get("bias_axis_offsets") or [0]
            extra = f" ({sd['bias_offsets']} offsets {axis[0]}..{axis[-1]}, {sd.get('bias_window_parity')})"
        parts.append(f"bias window {s.bias_window}{extra}")
    if sd.get("renderer_kernel"):
        parts.append("renderer kernel " + "x".join(map(str, sd["renderer_kernel"])))
    src = f" (from the {s.source})" if s.source else ""
    return ", ".join(parts) + src if parts else "unknown (no config, no AQR buffers)"


def _show_checkpoint(r) -> None:
    con = _console()
    con.print(_title(r.name, "checkpoint"))
    kv = _kv_table()
    flags = [r.container, f"{r.num_tensors} tensors",
             "optimizer state" if r.has_optimizer else "no optimizer state"]
    if r.mmapped:
        flags.append("memory-mapped")
    if r.trusted:
        flags.append("FULLY UNPICKLED (--trust-checkpoint)")
    kv.add_row("file", r.path)
    kv.add_row("format", f"{r.format}, {_size(r.size_bytes)} ({', '.join(flags)})")
    m = r.meta
    run = ", ".join(p for p in (f"epoch {m['epoch']}" if m["epoch"] is not None else "",
                                f"iter {m['iter']}" if m["iter"] is not None else "",
                                m.get("time") or "") if p)
    kv.add_row("run", run or "not recorded")
    vers = ", ".join(f"{k} {v}" for k, v in sorted(m["versions"].items()))
    if m.get("torch"):
        vers += (", " if vers else "") + f"torch {m['torch']} (env_info)"
    kv.add_row("versions", vers or "not recorded")
    if r.config_source:
        name = m.get("config_name") if r.config_source["kind"] == "meta" else None
        kv.add_row("config", f"{name + ' ' if name else ''}from {r.config_source['label']}")
    else:
        kv.add_row("config", "none (no meta['config'], no --config)")
    kv.add_row("shapes", _shape_text(r))
    kv.add_row("checks", _checks_text(r.checks))
    b = r.bias_scale
    if b is not None:
        how = f"learnable, clamp [{b.min:g}, {b.max:g}]" if b.learnable else "fixed (buffer, no clamp)"
        moved = "equal to init" if b.equals_init else f"moved {b.raw - b.init:+.4f} from init"
        kv.add_row("bias_scale", f"raw {_fmt(b.raw)}, effective {_fmt(b.effective)} ({how}); "
                   f"init {b.init:g}, {moved}; {_fmt(b.distance_to_min)} above min, "
                   f"{_fmt(b.distance_to_max)} below max")
    else:
        kv.add_row("bias_scale", "no attention_bias_generator.bias_scale")
    h = r.weight_head
    if h is not None:
        l_raw, c_raw = h.bias_raw
        l_t, c_t = h.bias_tanh
        norms = (f"; row norms LiDAR {h.weight_row_norm[0]:.3f}, camera {h.weight_row_norm[1]:.3f}"
                 if len(h.weight_row_norm) == 2 else "")
        kv.add_row("weight head", f"bias LiDAR {l_raw:.4f} (tanh {l_t:.4f}), camera {c_raw:.4f} "
                   f"(tanh {c_t:.4f}); init 1.5 (tanh 0.9051){norms}")
    rp = r.reference_points
    if rp is not None:
        text = f"{rp.count}; {rp.outside_unit_count} ({100 * rp.outside_unit_share:.1f}%) outside [0, 1)"
        if rp.unseen_count is not None:
            text += (f"; {rp.unseen_count} ({100 * rp.unseen_share:.1f}%) seen by no camera "
                     f"({rp.rig} rig); {rp.bev_outside_grid} outside the BEV grid; "
                     f"{rp.multi_view_count} seen by 2+ cameras")
            text += "\nfirst view: " + ", ".join(
                f"{k.replace('CAM_', '')} {v}" for k, v in rp.per_view.items())
        elif rp.error:
            text += f"; {rp.error}"
        kv.add_row("ref points", text)
    nf = r.nonfinite
    kv.add_row("NaN/Inf", f"none in {nf.scanned} floating tensors" if not nf.bad else
               f"{len(nf.bad)} of {nf.scanned} tensors: " + ", ".join(x["key"] for x in nf.bad[:5]))
    kv.print(con)
    con.print()

    rows = []
    for c in r.components.values():
        present = {"state_dict": "yes", "config": "built (no state)", "absent": "no"}[c.evidence]
        role = c.note or ("used at HEAD" if c.present and c.used_at_head else
                          ("old scheme only" if c.present else ""))
        rows.append([c.name, present, f"{c.params:,}", f"{c.buffers:,}", str(len(c.keys)), role])
    con.print(fitted_table(["component", "present", "params", "buffers", "keys", "role"], rows,
                           width=con.width, title="AQR components",
                           right=["params", "buffers", "keys"]))
    con.print()
    con.print(_findings_table(r.findings, con.width) if r.findings else "No findings.")
    _print_notes(con, r.notes)


def _show_dump(r) -> None:
    con = _console()
    con.print(_title(r.name, "debug dump"))
    kv = _kv_table()
    kv.add_row("file", r.path)
    kv.add_row("format", f"{r.format}, {_size(r.size_bytes)} ({r.container}"
               + (", FULLY UNPICKLED" if r.trusted else "") + ")")
    kv.add_row("iteration", "not recorded" if r.iteration is None else str(r.iteration))
    q = r.queries
    kv.add_row("queries", f"{q['num_queries']} per sample, batch {r.batch_size}; DN {q['num_dn']} "
               f"({100 * q['dn_share']:.1f}%), matching {q['num_matching']} "
               f"(num_query {q['num_query']})")
    s = r.shapes
    kv.add_row("maps", f"BEV {'x'.join(map(str, s['bev'] or ['?']))}, camera "
               f"{'x'.join(map(str, s['pers'] or ['?']))}")
    for name, label in (("lidar", "LiDAR weights"), ("camera", "camera weights")):
        w = r.weights[name]
        kv.add_row(label, f"mean {w['mean']:.4f}, std {w['std']:.4f}, min {w['min']:.4f}, "
                   f"max {w['max']:.4f}, {100 * w['share_negative']:.1f}% negative (all queries)")
    groups = r.weights.get("by_query_group") or {}
    for g in ("matching", "dn"):
        if groups.get("dn") and groups.get(g):
            d = groups[g]
            kv.add_row(f"{g} queries", f"{d['count']}: LiDAR mean {d['lidar']['mean']:.4f} std "
                       f"{d['lidar']['std']:.4f}; camera mean {d['camera']['mean']:.4f} std "
                       f"{d['camera']['std']:.4f}; LiDAR > camera "
                       f"{100 * d['preference']['prefer_lidar']:.1f}%")
    for name, label in (("bev", "BEV map"), ("pers", "camera map")):
        mp = r.maps.get(name)
        if mp:
            kv.add_row(label, f"max {mp['max']:.4f}, mean {mp['mean']:.4f}, "
                       f"{100 * mp['nonzero_share']:.1f}% cells non-zero")
    g = r.gt_boxes
    if g["present"]:
        from aqr_cli.core.configs import CLASS_NAMES

        labels = [CLASS_NAMES[i] if 0 <= i < len(CLASS_NAMES) else str(i)
                  for lab in g["labels"] if lab for i in lab]
        kv.add_row("GT boxes", f"{g['count']} ({', '.join(labels)})"
                   + (", in DataContainer" if g["in_data_container"] else ""))
    else:
        kv.add_row("GT boxes", "none in img_metas")
    sn = r.sentinel
    if sn["decidable"]:
        kv.add_row("Q3 sentinel", f"{sn['count']} of {sn['total']} matching queries seen by no "
                   f"camera (reference points of {sn['checkpoint']}, "
                   f"which {'reproduce' if sn['matches_dump'] else 'do NOT reproduce'} the dump's pts_bev)")
    else:
        cell = ", ".join(f"{v:.4f}" for v in sn["cell_value"] or [])
        kv.add_row("Q3 sentinel", f"count undecidable: {sn['reason']}; CAM_FRONT cell (0, 0) of "
                   f"the camera map holds {cell or '-'}")
    kv.add_row("img_metas", f"{r.img_metas['count']} dict(s): " + ", ".join(r.img_metas["keys"]))
    nf = r.nonfinite
    kv.add_row("NaN/Inf", f"none in {nf.scanned} floating tensors" if not nf.bad else
               f"{len(nf.bad)} of {nf.scanned} tensors: " + ", ".join(x["key"] for x in nf.bad[:5]))
    kv.print(con)
    con.print()

    rows = []
    for c in r.contents:
        shape = c.get("shape")
        shown = "x".join(map(str, shape)) if shape is not None else (
            str(c["value"]) if "value" in c else (f"len {c['len']}" if "len" in c else ""))
        rows.append([c["key"], c["type"], shown or "[]", c.get("dtype", "")])
    con.print(fitted_table(["key", "type", "shape / value", "dtype"], rows, width=con.width,
                           title="Contents"))
    con.print()
    con.print(_findings_table(r.findings, con.width) if r.findings else "No findings.")
    _print_notes(con, r.notes)


def _finding_ids(findings) -> str:
    from aqr_cli.analysis.findings import finding_ids

    return finding_ids(findings, empty="-")


def _natural(name: str) -> list:
    import re

    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _show_diff(reports, sink: Sink) -> None:
    from aqr_cli.analysis.config_lint import diff_configs
    from aqr_cli.cli._config_lint_view import render_diff

    d = diff_configs([r for r in reports if getattr(r, "config", None) is not None])
    if sink.json_mode:
        sink.json(_clean(d.to_dict()))
    elif not sink.quiet:
        con = _console()
        con.print(render_diff(d, width=con.width), markup=False)


def _show_table(results) -> None:
    con = _console()
    configs = [r for r in results if getattr(r, "kind", None) == "config"]
    if configs:
        from aqr_cli.cli._config_lint_view import render_rows

        con.print(render_rows(configs, width=con.width), markup=False)
        results = [r for r in results if r not in configs]
        if not _good(results):
            return
        con.print()
    good = sorted((r for r in results if not isinstance(r, _Failure)), key=lambda r: _natural(r.name))
    bad = [r for r in results if isinstance(r, _Failure)]
    inits = {r.bias_scale.init for r in good if getattr(r, "bias_scale", None) is not None}
    caption = f"bias_scale init {inits.pop():g}; " if len(inits) == 1 else ""
    caption += "head tanh = tanh(weight_predictor.bias) LiDAR / camera; unseen = reference points " \
               "no camera sees (Q3); dumps: iter = their forward counter, Nq (DN) = queries and " \
               "DN queries; E/W = error/warning findings"
    rows = []
    for r in good:
        if r.kind == "debug_dump":
            q = r.queries
            rows.append([r.name, "-", str(r.iteration), "-", "-",
                         str(r.sentinel["count"]) if r.sentinel["decidable"] else "?",
                         f"{q['num_queries']} ({q['num_dn']})", _finding_ids(r.findings)])
            continue
        b, h, rp = r.bias_scale, r.weight_head, r.reference_points
        rows.append([
            r.name, "-" if r.meta["epoch"] is None else str(r.meta["epoch"]),
            "-" if r.meta["iter"] is None else str(r.meta["iter"]),
            f"{b.raw:.3f} / {b.effective:.3f}" if b else "-",
            f"{h.bias_tanh[0]:.3f} / {h.bias_tanh[1]:.3f}" if h else "-",
            f"{rp.unseen_count}" if rp is not None and rp.unseen_count is not None else "-",
            "-", _finding_ids(r.findings)])
    for r in bad:
        rows.append([r.path.name, "", "", "", "", "", "", "error: " + r.reason])
    con.print(fitted_table(["file", "epoch", "iter", "bias raw / eff", "head tanh", "unseen",
                            "Nq (DN)", "findings"], rows, width=con.width,
                           title=f"{len(results)} files", caption=caption,
                           right=["epoch", "iter", "unseen"]))


def _show_keys(results, sink: Sink) -> None:
    ok = [r for r in results if not isinstance(r, _Failure)]
    if sink.json_mode:
        docs = [{"path": str(p), "tree": tree} for p, tree in ok]
        docs += [f.to_dict() for f in results if isinstance(f, _Failure)]
        sink.json(_clean(docs[0] if len(results) == 1 else docs))
        return
    if sink.quiet:
        return
    from rich.tree import Tree

    con = _console()
    for p, tree in ok:
        root = Tree(_title(str(tree["key"]), str(tree["type"])))
        for child in tree.get("children", []):
            _add_tree(root, child)
        con.print(root)


def _label(node: dict) -> str:
    from rich.markup import escape

    key = escape(str(node["key"]))
    kind = node.get("type", "")
    if "shape" in node:
        return f"{key}  [cyan]{list(node['shape'])}[/cyan] {node.get('dtype', '')}"
    if "value" in node:
        return f"{key}  {kind} = {escape(repr(node['value']))}"
    if node.get("type") in ("module", "state_dict"):
        return f"{key}  [dim]{node.get('numel', 0):,} elements[/dim]"
    if "len" in node:
        return f"{key}  {kind} [dim](len {node['len']})[/dim]"
    return f"{key}  {kind}"


def _add_tree(parent, node: dict) -> None:
    branch = parent.add(_label(node))
    for child in node.get("children", []):
        _add_tree(branch, child)
    if node.get("truncated"):
        branch.add(f"[dim]... {node['truncated']} more[/dim]")
