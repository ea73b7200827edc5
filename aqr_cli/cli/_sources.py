"""Sources and flags shared by ``render-weights`` and ``compare-modes``.

Option declarations are ``Annotated`` aliases so both commands take the same flags with the
same help; loading turns paths/flags into :class:`aqr_cli.analysis.sources.WeightSource` objects.

Input paths are declared ``readable=False``: click would otherwise turn an unreadable file into
a usage error (exit 2); the loader reports it as one line with exit 1, like every bad file.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from aqr_cli.errors import UserError

METHOD_CHOICES = ("gaussian", "bilinear", "direct", "distance_weighted", "all")

Sources = Annotated[Optional[List[Path]], typer.Argument(
    metavar="PATH...", show_default=False, readable=False,
    help="Checkpoints (their generator runs on a synthetic scene) and/or upstream debug dumps "
         "(weights_iter_N.pth); files, folders or quoted globs.")]
OUT_HELP = ("Output folder: new, empty, or an earlier output of this command (replaced as a whole; "
            "files you added are kept).")
Out = Annotated[Path, typer.Option("--out", "-o", metavar="DIR", help=OUT_HELP)]
Synthetic = Annotated[bool, typer.Option("--synthetic", help="Use a seeded synthetic scene (no file needed).")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors (and --json).")]
Checkpoint = Annotated[Optional[Path], typer.Option(
    "--checkpoint", metavar="FILE", readable=False, help="Generator weights for --synthetic/--features; renderer and "
    "bias settings (and reference points) for dumps.")]
Features = Annotated[Optional[Path], typer.Option(
    "--features", metavar="FILE", readable=False, help="Re-run --checkpoint's generator on this dump's recorded "
    "features (needs the full channel count).")]
Weights = Annotated[str, typer.Option("--weights", help="generator: what the AQR generator outputs; "
                                      "scene: the documented synthetic weight model (--synthetic).")]
Reference = Annotated[str, typer.Option("--reference", help="Reference config when no checkpoint gives "
                                        "one: 800x320 or 1600x640.")]
Rig = Annotated[Optional[Path], typer.Option("--rig", metavar="FILE", readable=False, help="Camera rig (default: the "
                                             "bundled 800x320 rig, scaled for 1600x640).")]
Method = Annotated[Optional[str], typer.Option("--method", help="Renderer method: gaussian, bilinear, "
                                               "direct, distance_weighted, or all. Default: config.")]
Sigma = Annotated[Optional[float], typer.Option("--sigma", help="Renderer gaussian_sigma (cells).")]
BiasWindow = Annotated[Optional[int], typer.Option("--bias-window", help="Bias window_size (cells).")]
BiasScale = Annotated[Optional[float], typer.Option("--bias-scale", help="Raw bias_scale to use instead of "
                                                    "the checkpoint's (clamped as upstream when learnable).")]
Queries = Annotated[str, typer.Option("--queries", help="Which queries the per-query panels draw when a "
                                      "source holds denoising (DN) rows: matching (default), dn or all. "
                                      "Maps are rendered from all queries, as upstream does.")]
BiasRange = Annotated[str, typer.Option("--bias-range", help="Colour range of bias heatmaps: fixed "
                                        "(+-min(5, max_scale), the final clamp; runs compare by eye) "
                                        "or auto (+-max |b| of this run).")]
Activation = Annotated[Optional[str], typer.Option("--activation", help="Weight activation: tanh (HEAD) or "
                                                   "sigmoid (logged runs).")]
Lam = Annotated[Optional[str], typer.Option("--lam", help="Encoder local attention mask: config (upstream "
                                            "rule), honour, or ignore.")]
BatchSize = Annotated[int, typer.Option("--batch-size", min=1, max=16, help="Synthetic batch size.")]
Sample = Annotated[int, typer.Option("--sample", min=0, help="Which sample of the batch to draw.")]
Seed = Annotated[int, typer.Option("--seed", help="Seed of the synthetic scene and random weights.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout (a list for several "
                                      "sources); messages stay on stderr.")]
Trust = Annotated[bool, typer.Option("--trust-checkpoint", hidden=True,
                                     help="Deprecated, no effect: no file ever runs code.")]
TRUST_DEPRECATED = "--trust-checkpoint is deprecated and has no effect; no file ever runs code"


@dataclass(frozen=True)
class SourceFlags:
    """The flags ``render-weights`` and ``compare-modes`` share, as parsed."""

    out: Path
    synthetic: bool = False
    checkpoint: Optional[Path] = None
    features: Optional[Path] = None
    weights: str = "generator"
    reference: str = "800x320"
    rig: Optional[Path] = None
    method: Optional[str] = None
    sigma: Optional[float] = None
    bias_window: Optional[int] = None
    bias_scale: Optional[float] = None
    bias_range: str = "fixed"
    queries: str = "matching"
    activation: Optional[str] = None
    lam: Optional[str] = None
    batch_size: int = 1
    sample: int = 0
    seed: int = 0
    as_json: bool = False
    quiet: bool = False
    trust: bool = False

    def as_dict(self) -> dict:
        """The flags by name (what :func:`load_sources` reads)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def options(self, options_type, **more):
        """An analysis options dataclass (``RenderOptions``, ``CompareOptions``) holding the
        flags it has a field for, plus ``more``."""
        names = {f.name for f in fields(options_type)}
        return options_type(**{k: v for k, v in self.as_dict().items() if k in names}, **more)


def validate(sources: list, flags: SourceFlags) -> None:
    """Usage errors (exit 2) for flag combinations that cannot work."""
    def bad(msg: str, hint: str) -> None:
        raise typer.BadParameter(msg, param_hint=hint)

    choices = [("method", (None, *METHOD_CHOICES), f"choose from {', '.join(METHOD_CHOICES)}"),
               ("weights", ("generator", "scene"), "choose generator or scene"),
               ("reference", ("800x320", "1600x640"), "choose 800x320 or 1600x640"),
               ("activation", (None, "tanh", "sigmoid"), "choose tanh or sigmoid"),
               ("bias_range", ("fixed", "auto"), "choose fixed or auto"),
               ("queries", ("matching", "dn", "all"), "choose matching, dn or all"),
               ("lam", (None, "config", "honour", "ignore"), "choose config, honour or ignore")]
    for name, allowed, msg in choices:
        if getattr(flags, name) not in allowed:
            bad(msg, "--" + name.replace("_", "-"))
    if flags.features is not None and flags.checkpoint is None:
        bad("--features needs --checkpoint (the generator to re-run)", "--features")
    if not sources and not flags.synthetic and flags.features is None:
        bad("give SOURCE paths, --synthetic or --features", "SOURCE")
    if flags.weights == "scene" and not flags.synthetic:
        bad("--weights scene needs --synthetic (only a synthetic scene has objects to model)", "--weights")


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


def load_sources(paths: list[Path], flags: SourceFlags, progress) -> list:
    """One WeightSource per input (with its quirks), in input order.

    Dumps and checkpoints given together (a run folder) are one run, not independent sources:
    see :func:`group_run_files`. Every file is opened once per command (an
    :class:`aqr_cli.inputs.opened.Opener`): a checkpoint is opened at most once however many
    dumps use it, and not again when it is also a source.
    """
    import sys

    from aqr_cli.analysis import sources
    from aqr_cli.analysis.quirks import collect_quirks
    from aqr_cli.inputs.opened import Opener

    if flags.trust and not flags.quiet:
        sys.stderr.write(f"aqr: warning: {TRUST_DEPRECATED}\n")
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
