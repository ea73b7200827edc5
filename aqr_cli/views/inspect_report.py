"""What ``aqr inspect-checkpoint`` shows and writes for its reports
(:class:`~aqr_cli.analysis.inspection.reports.CheckpointReport`, ``DumpReport``, config lint reports):
key/value blocks, the components and contents tables, findings, the several-files table, the key
tree, ``inspect.json`` and the epoch figure.

Terminal views print into a :class:`Screen` (what to print, in order, at a width); the command
replays it on its console.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aqr_cli.views.outputs import Outputs
from aqr_cli.views.text import fitted_table, kv_block

if TYPE_CHECKING:  # the analysis imports torch; the command module imports this one for its help
    from aqr_cli.analysis.inspection.files import FileFailure

PNG_NAME = "inspect_epochs.png"
JSON_NAME = "inspect.json"


class Screen:
    """Terminal output of a view: ``print`` calls recorded in order, for a console of ``width``."""

    def __init__(self, width: int):
        self.width = width
        self.items: list[tuple[tuple, dict]] = []

    def print(self, *objects: Any, **kw: Any) -> None:
        self.items.append((objects, kw))


def failure_line(f: "FileFailure") -> str:
    """The ``aqr: error:`` line of a file that could not be inspected."""
    text = " ".join(f.message.split())
    return f"aqr: error: {text}" + (f" ({f.hint})" if f.hint else "")


def good(results: list) -> list:
    """The results that are reports (not failures)."""
    from aqr_cli.analysis.inspection.files import FileFailure

    return [r for r in results if not isinstance(r, FileFailure)]


def failures(results: list) -> list:
    """The results that are failures, in order."""
    reports = {id(r) for r in good(results)}
    return [r for r in results if id(r) not in reports]


def clean(doc: Any) -> Any:
    """JSON-safe: NaN/Inf become null, tuples lists, other objects their str."""
    import math

    if isinstance(doc, dict):
        return {str(k): clean(v) for k, v in doc.items()}
    if isinstance(doc, (list, tuple)):
        return [clean(v) for v in doc]
    if isinstance(doc, float):
        return doc if math.isfinite(doc) else None
    if isinstance(doc, (str, int, bool)) or doc is None:
        return doc
    if hasattr(doc, "item"):
        return clean(doc.item())
    return str(doc)


def _diff(reports: list):
    from aqr_cli.analysis.config_lint import diff_configs

    return diff_configs([r for r in reports if getattr(r, "config", None) is not None])


def inspect_document(results: list, *, keys: bool = False, diff: bool = False) -> Any:
    """The ``--json`` document: key trees, the config diff, one report or a list of them."""
    if keys:
        return keys_document(results)
    if diff:
        return clean(_diff(good(results)).to_dict())
    return clean([r.to_dict() for r in results] if len(results) > 1 else results[0].to_dict())


def inspect_screen(results: list, width: int, *, keys: bool = False, diff: bool = False) -> Screen:
    """The terminal view: key trees, the config diff, one report or the several-files table."""
    screen = Screen(width)
    if keys:
        show_keys(results, screen)
    elif diff:
        show_diff(_diff(good(results)), screen)
    elif len(results) == 1:
        show_one(results[0], screen)
    else:
        show_table(results, screen)
    return screen


def inspect_outputs(results: list) -> tuple[Outputs, str | None]:
    """(``inspect.json`` and, when it has data, the epoch figure; a note when the figure is left
    out) of the reports of one run."""
    from aqr_cli.analysis.inspection.epochs import epoch_series
    from aqr_cli.analysis.inspection.reports import CheckpointReport

    files: dict = {JSON_NAME: clean([r.to_dict() for r in results])}
    if all(getattr(r, "kind", None) == "config" for r in good(results)):
        return Outputs(files=files), None  # configs have no epoch figure
    reports = [r for r in results if isinstance(r, CheckpointReport)]
    if not any(r.bias_scale is not None or r.weight_head is not None for r in reports):
        return Outputs(files=files), f"{PNG_NAME} not written: no checkpoint with an AQR bias scale or weight head"
    from aqr_cli.plots.epochs import epoch_evolution_figure

    files[PNG_NAME] = epoch_evolution_figure(epoch_series(reports),
                                             title=f"AQR across {len(reports)} checkpoint(s)")
    return Outputs(files=files), None


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


def _findings_table(findings, width: int):
    """Findings as ``id severity  message`` blocks, messages wrapped, never cut."""
    return kv_block([(f"{f.id} {f.severity}", f.message) for f in findings], width=width,
                    title="Findings (spec section 9)")


def _title(name: str, kind: str):
    from rich.text import Text

    text = Text(name, style="bold")
    text.append(f"  {kind}")
    return text


def _print_notes(screen: Screen, notes) -> None:
    from rich.text import Text

    for note in notes:
        screen.print(Text(f"note: {note}", style="dim"))


def _fmt(x: float | None, d: int = 4) -> str:
    return "-" if x is None else f"{x:.{d}f}"


def show_one(r, screen: Screen) -> None:
    """The report of one file: config, debug dump or checkpoint."""
    if r.kind == "config":
        from aqr_cli.views.config_lint import render_config

        screen.print(render_config(r, width=screen.width), markup=False)
    elif r.kind == "debug_dump":
        show_dump(r, screen)
    else:
        show_checkpoint(r, screen)


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


def _finding_ids(findings) -> str:
    from aqr_cli.analysis.findings import finding_ids

    return finding_ids(findings, empty="-")


def _natural(name: str) -> list:
    import re

    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


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


def _nonfinite_text(nf) -> str:
    return (f"none in {nf.scanned} floating tensors" if not nf.bad else
            f"{len(nf.bad)} of {nf.scanned} tensors: " + ", ".join(x["key"] for x in nf.bad[:5]))


def _format_text(r) -> str:
    flags = [r.container, f"{r.num_tensors} tensors",
             "optimizer state" if r.has_optimizer else "no optimizer state"]
    if r.mmapped:
        flags.append("memory-mapped")
    if r.trusted:
        flags.append("FULLY UNPICKLED (--trust-checkpoint)")
    return f"{r.format}, {_size(r.size_bytes)} ({', '.join(flags)})"


def _run_rows(r) -> list[tuple[str, str]]:
    """``run``, ``versions`` and ``config`` of a checkpoint's meta."""
    m = r.meta
    run = ", ".join(p for p in (f"epoch {m['epoch']}" if m["epoch"] is not None else "",
                                f"iter {m['iter']}" if m["iter"] is not None else "",
                                m.get("time") or "") if p)
    vers = ", ".join(f"{k} {v}" for k, v in sorted(m["versions"].items()))
    if m.get("torch"):
        vers += (", " if vers else "") + f"torch {m['torch']} (env_info)"
    if r.config_source:
        name = m.get("config_name") if r.config_source["kind"] == "meta" else None
        config = f"{name + ' ' if name else ''}from {r.config_source['label']}"
    else:
        config = "none (no meta['config'], no --config)"
    return [("run", run or "not recorded"), ("versions", vers or "not recorded"), ("config", config)]


def _bias_text(b) -> str:
    if b is None:
        return "no attention_bias_generator.bias_scale"
    how = f"learnable, clamp [{b.min:g}, {b.max:g}]" if b.learnable else "fixed (buffer, no clamp)"
    moved = "equal to init" if b.equals_init else f"moved {b.raw - b.init:+.4f} from init"
    return (f"raw {_fmt(b.raw)}, effective {_fmt(b.effective)} ({how}); "
            f"init {b.init:g}, {moved}; {_fmt(b.distance_to_min)} above min, "
            f"{_fmt(b.distance_to_max)} below max")


def _head_text(h) -> str:
    l_raw, c_raw = h.bias_raw
    l_t, c_t = h.bias_tanh
    norms = (f"; row norms LiDAR {h.weight_row_norm[0]:.3f}, camera {h.weight_row_norm[1]:.3f}"
             if len(h.weight_row_norm) == 2 else "")
    return (f"bias LiDAR {l_raw:.4f} (tanh {l_t:.4f}), camera {c_raw:.4f} "
            f"(tanh {c_t:.4f}); init 1.5 (tanh 0.9051){norms}")


def _ref_points_text(rp) -> str:
    text = f"{rp.count}; {rp.outside_unit_count} ({100 * rp.outside_unit_share:.1f}%) outside [0, 1)"
    if rp.unseen_count is not None:
        text += (f"; {rp.unseen_count} ({100 * rp.unseen_share:.1f}%) seen by no camera "
                 f"({rp.rig} rig); {rp.bev_outside_grid} outside the BEV grid; "
                 f"{rp.multi_view_count} seen by 2+ cameras")
        text += "\nfirst view: " + ", ".join(
            f"{k.replace('CAM_', '')} {v}" for k, v in rp.per_view.items())
    elif rp.error:
        text += f"; {rp.error}"
    return text


def checkpoint_pairs(r) -> list[tuple[str, str]]:
    """The key/value block of a checkpoint report."""
    pairs = [("file", r.path), ("format", _format_text(r)), *_run_rows(r),
             ("shapes", _shape_text(r)), ("checks", _checks_text(r.checks)),
             ("bias_scale", _bias_text(r.bias_scale))]
    if r.weight_head is not None:
        pairs.append(("weight head", _head_text(r.weight_head)))
    if r.reference_points is not None:
        pairs.append(("ref points", _ref_points_text(r.reference_points)))
    pairs.append(("NaN/Inf", _nonfinite_text(r.nonfinite)))
    return pairs


def _component_rows(r) -> list[list[str]]:
    rows = []
    for c in r.components.values():
        present = {"state_dict": "yes", "config": "built (no state)", "absent": "no"}[c.evidence]
        role = c.note or ("used at HEAD" if c.present and c.used_at_head else
                          ("old scheme only" if c.present else ""))
        rows.append([c.name, present, f"{c.params:,}", f"{c.buffers:,}", str(len(c.keys)), role])
    return rows


def _findings_and_notes(r, screen: Screen) -> None:
    screen.print(_findings_table(r.findings, screen.width) if r.findings else "No findings.")
    _print_notes(screen, r.notes)


def show_checkpoint(r, screen: Screen) -> None:
    """Key/value block, AQR components table, findings and notes of a checkpoint report."""
    screen.print(_title(r.name, "checkpoint"))
    screen.print(kv_block(checkpoint_pairs(r), width=screen.width), end="")
    screen.print()
    screen.print(fitted_table(["component", "present", "params", "buffers", "keys", "role"],
                              _component_rows(r), width=screen.width, title="AQR components",
                              right=["params", "buffers", "keys"]))
    screen.print()
    _findings_and_notes(r, screen)


def _dump_weight_rows(r) -> list[tuple[str, str]]:
    """Weights (all queries, then matching and DN apart) and stored maps of a dump."""
    pairs = []
    for name, label in (("lidar", "LiDAR weights"), ("camera", "camera weights")):
        w = r.weights[name]
        pairs.append((label, f"mean {w['mean']:.4f}, std {w['std']:.4f}, min {w['min']:.4f}, "
                      f"max {w['max']:.4f}, {100 * w['share_negative']:.1f}% negative (all queries)"))
    groups = r.weights.get("by_query_group") or {}
    for g in ("matching", "dn"):
        if groups.get("dn") and groups.get(g):
            d = groups[g]
            pairs.append((f"{g} queries", f"{d['count']}: LiDAR mean {d['lidar']['mean']:.4f} std "
                          f"{d['lidar']['std']:.4f}; camera mean {d['camera']['mean']:.4f} std "
                          f"{d['camera']['std']:.4f}; LiDAR > camera "
                          f"{100 * d['preference']['prefer_lidar']:.1f}%"))
    for name, label in (("bev", "BEV map"), ("pers", "camera map")):
        mp = r.maps.get(name)
        if mp:
            pairs.append((label, f"max {mp['max']:.4f}, mean {mp['mean']:.4f}, "
                          f"{100 * mp['nonzero_share']:.1f}% cells non-zero"))
    return pairs


def _gt_text(g: dict) -> str:
    if not g["present"]:
        return "none in img_metas"
    from aqr_cli.core.configs import CLASS_NAMES

    labels = [CLASS_NAMES[i] if 0 <= i < len(CLASS_NAMES) else str(i)
              for lab in g["labels"] if lab for i in lab]
    return f"{g['count']} ({', '.join(labels)})" + (", in DataContainer" if g["in_data_container"] else "")


def _sentinel_text(sn: dict) -> str:
    if sn["decidable"]:
        return (f"{sn['count']} of {sn['total']} matching queries seen by no "
                f"camera (reference points of {sn['checkpoint']}, "
                f"which {'reproduce' if sn['matches_dump'] else 'do NOT reproduce'} the dump's pts_bev)")
    cell = ", ".join(f"{v:.4f}" for v in sn["cell_value"] or [])
    return (f"count undecidable: {sn['reason']}; CAM_FRONT cell (0, 0) of "
            f"the camera map holds {cell or '-'}")


def dump_pairs(r) -> list[tuple[str, str]]:
    """The key/value block of a debug-dump report."""
    q, s = r.queries, r.shapes
    return [
        ("file", r.path),
        ("format", f"{r.format}, {_size(r.size_bytes)} ({r.container}"
                   + (", FULLY UNPICKLED" if r.trusted else "") + ")"),
        ("iteration", "not recorded" if r.iteration is None else str(r.iteration)),
        ("queries", f"{q['num_queries']} per sample, batch {r.batch_size}; DN {q['num_dn']} "
                    f"({100 * q['dn_share']:.1f}%), matching {q['num_matching']} "
                    f"(num_query {q['num_query']})"),
        ("maps", f"BEV {'x'.join(map(str, s['bev'] or ['?']))}, camera "
                 f"{'x'.join(map(str, s['pers'] or ['?']))}"),
        *_dump_weight_rows(r),
        ("GT boxes", _gt_text(r.gt_boxes)),
        ("Q3 sentinel", _sentinel_text(r.sentinel)),
        ("img_metas", f"{r.img_metas['count']} dict(s): " + ", ".join(r.img_metas["keys"])),
        ("NaN/Inf", _nonfinite_text(r.nonfinite)),
    ]


def _content_rows(r) -> list[list[str]]:
    rows = []
    for c in r.contents:
        shape = c.get("shape")
        shown = "x".join(map(str, shape)) if shape is not None else (
            str(c["value"]) if "value" in c else (f"len {c['len']}" if "len" in c else ""))
        rows.append([c["key"], c["type"], shown or "[]", c.get("dtype", "")])
    return rows


def show_dump(r, screen: Screen) -> None:
    """Key/value block, contents table, findings and notes of a debug-dump report."""
    screen.print(_title(r.name, "debug dump"))
    screen.print(kv_block(dump_pairs(r), width=screen.width), end="")
    screen.print()
    screen.print(fitted_table(["key", "type", "shape / value", "dtype"], _content_rows(r),
                              width=screen.width, title="Contents"))
    screen.print()
    _findings_and_notes(r, screen)


TABLE_COLUMNS = ["file", "epoch", "iter", "bias raw / eff", "head tanh", "unseen", "Nq (DN)", "findings"]
TABLE_CAPTION = ("head tanh = tanh(weight_predictor.bias) LiDAR / camera; unseen = reference points "
                 "no camera sees (Q3); dumps: iter = their forward counter, Nq (DN) = queries and "
                 "DN queries; E/W = error/warning findings")


def _table_row(r) -> list[str]:
    if r.kind == "debug_dump":
        q = r.queries
        return [r.name, "-", str(r.iteration), "-", "-",
                str(r.sentinel["count"]) if r.sentinel["decidable"] else "?",
                f"{q['num_queries']} ({q['num_dn']})", _finding_ids(r.findings)]
    b, h, rp = r.bias_scale, r.weight_head, r.reference_points
    return [r.name, "-" if r.meta["epoch"] is None else str(r.meta["epoch"]),
            "-" if r.meta["iter"] is None else str(r.meta["iter"]),
            f"{b.raw:.3f} / {b.effective:.3f}" if b else "-",
            f"{h.bias_tanh[0]:.3f} / {h.bias_tanh[1]:.3f}" if h else "-",
            f"{rp.unseen_count}" if rp is not None and rp.unseen_count is not None else "-",
            "-", _finding_ids(r.findings)]


def show_table(results: list, screen: Screen) -> None:
    """Several files: the config rows, then one row per checkpoint or dump (failures last)."""
    configs = [r for r in results if getattr(r, "kind", None) == "config"]
    if configs:
        from aqr_cli.views.config_lint import render_rows

        screen.print(render_rows(configs, width=screen.width), markup=False)
        results = [r for r in results if r not in configs]
        if not good(results):
            return
        screen.print()
    reports = sorted(good(results), key=lambda r: _natural(r.name))
    inits = {r.bias_scale.init for r in reports if getattr(r, "bias_scale", None) is not None}
    caption = (f"bias_scale init {inits.pop():g}; " if len(inits) == 1 else "") + TABLE_CAPTION
    rows = [_table_row(r) for r in reports]
    rows += [[r.path.name, "", "", "", "", "", "", "error: " + r.reason]
             for r in failures(results)]
    screen.print(fitted_table(TABLE_COLUMNS, rows, width=screen.width, title=f"{len(results)} files",
                              caption=caption, right=["epoch", "iter", "unseen"]))


def keys_document(results: list) -> Any:
    """The ``--keys --json`` document: each file's key tree (failures as ``{path, error}``)."""
    docs = [{"path": str(p), "tree": tree} for p, tree in good(results)]
    docs += [f.to_dict() for f in failures(results)]
    return clean(docs[0] if len(results) == 1 else docs)


def show_keys(results: list, screen: Screen) -> None:
    """The key tree of each file, with shapes and dtypes."""
    from rich.tree import Tree

    for p, tree in good(results):
        root = Tree(_title(str(tree["key"]), str(tree["type"])))
        for child in tree.get("children", []):
            _add_tree(root, child)
        screen.print(root)


def show_diff(diff, screen: Screen) -> None:
    """The settings that differ between configs."""
    from aqr_cli.views.config_lint import render_diff

    screen.print(render_diff(diff, width=screen.width), markup=False)
