"""The commands' option declarations and the frozen objects they are parsed into.

Declarations are ``Annotated`` aliases so commands take the same flags with the same help;
each command parses its flags into one frozen dataclass (:class:`SourceFlags` for
``render-weights`` and ``compare-modes``, :class:`InspectFlags`, :class:`LogFlags`) and hands
that on. Loading the sources of the flags is :mod:`aqr_cli.cli._sources`.

Input paths are declared ``readable=False``: click would otherwise turn an unreadable file into
a usage error (exit 2); the loader reports it as one line with exit 1, like every bad file.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from aqr_cli.views.inspect_report import JSON_NAME as INSPECT_JSON
from aqr_cli.views.inspect_report import PNG_NAME as INSPECT_PNG

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
InspectPaths = Annotated[List[Path], typer.Argument(
    metavar="PATH...", show_default=False, readable=False,
    help="Checkpoints (epoch_N.pth, .safetensors, ...), upstream debug dumps "
         "(weights_iter_N.pth) and/or mmcv config files (linted without a checkpoint); "
         "files, folders or quoted globs.")]
Keys = Annotated[bool, typer.Option(
    "--keys", help="Print the key tree of each file with shapes and dtypes, and stop.")]
InspectOut = Annotated[Optional[Path], typer.Option(
    "--out", "-o", metavar="DIR", help=f"Write {INSPECT_JSON} and {INSPECT_PNG} (bias scale and "
    f"weight head across epochs). {OUT_HELP}")]
InspectRig = Annotated[Optional[Path], typer.Option(
    "--rig", metavar="FILE", readable=False, help="Camera rig for reference-point visibility "
    "(default: the packaged 800x320 rig). Dumps use their own img_metas.")]
InspectConfig = Annotated[Optional[Path], typer.Option(
    "--config", metavar="FILE", readable=False, help="mmcv config that overrides or supplies "
    "meta['config']; parsed, never executed.")]
InspectCheckpoint = Annotated[Optional[Path], typer.Option(
    "--checkpoint", metavar="FILE", readable=False, help="For debug dumps: the run's checkpoint, whose "
    "reference points give the exact Q3 sentinel count and whose config gives num_query.")]
Diff = Annotated[bool, typer.Option(
    "--diff", help="With two or more configs (or checkpoints): show only the AQR "
    "settings whose merged values differ between them.")]
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


@dataclass(frozen=True)
class InspectFlags:
    """The flags of ``inspect-checkpoint``, as parsed."""

    keys: bool = False
    out: Optional[Path] = None
    rig: Optional[Path] = None
    config: Optional[Path] = None
    checkpoint: Optional[Path] = None
    trust: bool = False
    diff: bool = False
    as_json: bool = False
    quiet: bool = False


@dataclass(frozen=True)
class LogFlags:
    """The flags of ``inspect-log``, as parsed."""

    baseline: Optional[Path] = None
    out: Optional[Path] = None
    as_json: bool = False
    quiet: bool = False


def parse_scales(text: str) -> list[float]:
    """``--scales`` of ``compare-modes``: finite numbers >= 0, comma-separated (empty: none)."""
    import math

    if not text.strip():
        return []
    try:
        vals = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated numbers, got {text!r}",
                                 param_hint="--scales") from None
    if any(not math.isfinite(v) or v < 0 for v in vals):
        raise typer.BadParameter("scales must be finite and >= 0", param_hint="--scales")
    return vals
