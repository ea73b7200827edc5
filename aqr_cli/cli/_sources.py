"""Loading the sources of ``render-weights`` and ``compare-modes``: paths and
:class:`aqr_cli.cli._options.SourceFlags` into :class:`aqr_cli.analysis.sources.WeightSource`
objects, each file opened once; and the checks and warnings that need the loaded sources.
"""

from __future__ import annotations

from pathlib import Path

from aqr_cli.cli._common import UserError
from aqr_cli.cli._options import TRUST_DEPRECATED, SourceFlags


def overrides(flags: SourceFlags):
    """The loading settings of the flags (:class:`aqr_cli.inputs.settings.Overrides`)."""
    from aqr_cli.inputs.settings import Overrides

    return Overrides(reference=flags.reference, method=flags.method, sigma=flags.sigma,
                     bias_window=flags.bias_window, activation=flags.activation,
                     honour_lam={"honour": True, "ignore": False}.get(flags.lam or "config"),
                     batch_size=flags.batch_size, seed=flags.seed, weights=flags.weights)


def expand_sources(paths: list) -> list[Path]:
    """Files as given; a folder contributes its *.pth/*.safetensors; globs are expanded."""
    import glob

    out: list[Path] = []
    for p in paths:
        s = str(p)
        if any(ch in s for ch in "*?[") and not p.exists():
            hits = sorted(Path(h) for h in glob.glob(s))
            if not hits:
                raise UserError(f"{s}: no file matches this pattern")
            out.extend(hits)
        elif p.is_dir():
            hits = sorted([*p.glob("*.pth"), *p.glob("*.safetensors")], key=_natural_key)
            if not hits:
                raise UserError(f"{p}: folder holds no .pth or .safetensors file")
            out.extend(hits)
        else:
            out.append(p)
    return out


def _natural_key(p: Path):
    import re

    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]


def load_sources(paths: list[Path], flags: SourceFlags, sink, progress) -> list:
    """One WeightSource per input (with its quirks), in input order; ``sink`` takes the warning
    of a deprecated flag.

    Dumps and checkpoints given together (a run folder) are one run, not independent sources:
    see :func:`group_run_files`. Every file is opened once per command (an
    :class:`aqr_cli.inputs.opened.Opener`): a checkpoint is opened at most once however many
    dumps use it, and not again when it is also a source.
    """
    from aqr_cli.analysis import sources
    from aqr_cli.analysis.quirks import collect_quirks
    from aqr_cli.inputs.opened import Opener

    if flags.trust:
        sink.warn(TRUST_DEPRECATED)
    ov = overrides(flags)
    ck = str(flags.checkpoint) if flags.checkpoint else None
    rig = str(flags.rig) if flags.rig else None
    opener = Opener()

    def checkpoint(path):
        return None if path is None else opener.checkpoint(path)

    files = [(p, opener.file(p)) for p in paths]
    files, run_ck, notes = group_run_files(files, ck)
    jobs = []
    if flags.synthetic:
        jobs.append(lambda: sources.synthetic(ov, rig, checkpoint(ck)))
    if flags.features is not None:
        jobs.append(lambda: sources.from_features(opener.dump(flags.features), checkpoint(ck), ov))
    for p, loaded in files:
        def job(p=p, loaded=loaded):
            if loaded.kind == "debug_dump":
                return _dump_with_run_checkpoint(opener, p, ov, ck or run_ck, notes,
                                                 explicit=ck is not None)
            return sources.from_checkpoint(opener.checkpoint(p), ov, rig)
        jobs.append(job)
    out = []
    for job in jobs:
        with collect_quirks() as quirks:
            src = job()
        out.append((src, quirks))
        progress()
    return out


def group_run_files(files: list, checkpoint: str | None) -> tuple[list, str | None, list[str]]:
    """(files to render, the run's checkpoint for the dumps, notes) of ``[(path, LoadedFile)]``.

    When dumps and checkpoints come together (a run folder or glob), a checkpoint is the dumps'
    run checkpoint, not a scene to render: with ``--checkpoint`` that file is dropped from the
    sources; without it, a single checkpoint becomes the dumps' checkpoint (its settings,
    learned scale and reference points) and is not rendered. Several checkpoints are ambiguous:
    none applies (the notes say why) and each is rendered as its own source.
    """
    dumps = [p for p, lf in files if lf.kind == "debug_dump"]
    cks = [p for p, lf in files if lf.kind != "debug_dump"]
    if not dumps or not cks:
        return files, None, []
    if checkpoint is not None:
        same = [p for p in cks if _same_file(p, checkpoint)]
        keep = [(p, lf) for p, lf in files if not any(p is q for q in same)]
        notes = [f"{p.name} is the --checkpoint: applied to the dumps, not rendered on a synthetic "
                 "scene" for p in same]
        return keep, None, notes
    if len(cks) == 1:
        name = cks[0].name
        keep = [(p, lf) for p, lf in files if p is not cks[0]]
        return keep, str(cks[0]), [
            f"checkpoint {name} given with the dumps: its settings, learned bias scale and "
            f"reference points apply to them; it is not rendered on a synthetic scene (ask with "
            f"--synthetic --checkpoint {name})"]
    names = ", ".join(p.name for p in cks)
    return files, None, [f"{len(cks)} checkpoints given with the dumps ({names}): which one the "
                         "dumps belong to is ambiguous, so none applies to them (pass --checkpoint); "
                         "each checkpoint is rendered as its own source"]


def _same_file(a: Path, b: str) -> bool:
    try:
        return a.resolve() == Path(b).resolve()
    except OSError:
        return False


def _dump_with_run_checkpoint(opener, path: Path, ov, ck: str | None, notes: list,
                              explicit: bool):
    """A dump with its run's checkpoint; a run checkpoint (not ``explicit``) that does not fit
    is dropped with a note."""
    from aqr_cli.analysis import sources
    from aqr_cli.inputs.checks import ShapeMismatchError
    from aqr_cli.inputs.opened import NoGeneratorError
    from aqr_cli.inputs.settings import SettingsError

    dump = opener.dump(path)
    run_ck = None if ck is None else opener.checkpoint(ck)  # a file no command can use fails here
    if run_ck is None or explicit:
        src = sources.from_dump(dump, ov, run_ck)
    else:
        try:
            src = sources.from_dump(dump, ov, run_ck)
        except (NoGeneratorError, SettingsError, ShapeMismatchError) as e:
            src = sources.from_dump(dump, ov, None)
            src.notes.append(f"checkpoint {Path(ck).name} given with the dumps does not fit this "
                             f"dump ({e}); rendered with reference settings")
    src.notes.extend(notes)
    return src


def subfolder_names(srcs: list) -> list[str]:
    """Unique output subfolder names from the source labels (file stems; -2, -3 for repeats)."""
    seen: dict[str, int] = {}
    out = []
    for s in srcs:
        base = Path(s.label).stem if s.kind != "synthetic" else s.label
        seen[base] = seen.get(base, 0) + 1
        out.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return out


def report_unused_flags(sink, srcs: list, flags: SourceFlags) -> None:
    """A warning for each flag the user set that no source uses (never silently ignored)."""
    kinds = {s.kind for s in srcs}
    scenes = kinds & {"synthetic", "checkpoint"}
    generated = kinds - {"dump"}
    if flags.rig is not None and not scenes:
        sink.warn("--rig is not used: debug dumps carry their own cameras (img_metas lidar2img)")
    if not scenes:
        for flag, value, default in (("--batch-size", flags.batch_size, 1), ("--seed", flags.seed, 0)):
            if value != default:
                sink.warn(f"{flag} is not used: it applies to synthetic scenes (--synthetic or a "
                          "checkpoint source), not to debug dumps")
    if not generated:
        for flag, value in (("--activation", flags.activation), ("--lam", flags.lam)):
            if value is not None:
                sink.warn(f"{flag} is not used: debug dumps hold the weights the generator "
                          "produced (use --features to re-run a generator)")
    if flags.sigma is not None and flags.method not in (None, "gaussian", "all"):
        sink.warn(f"--sigma is not used: it sets the gaussian renderer, not --method {flags.method}")


def check_sample(src, flags: SourceFlags) -> None:
    """UserError when ``--sample`` (or ``--queries dn``) asks for what the source does not hold."""
    if flags.sample >= src.batch_size:
        raise UserError(f"{src.label}: --sample {flags.sample} but the batch holds {src.batch_size} "
                        "sample(s)")
    if flags.queries == "dn" and src.num_queries <= src.cfg.num_query:
        raise UserError(f"{src.label}: --queries dn but the source holds no DN rows "
                        f"({src.num_queries} queries, num_query {src.cfg.num_query})")
