"""What a figure shows, in words: source kind, configuration, sample and every changed setting.

One :class:`RunCaption` per (source, sample, command-line settings) is built by
:func:`describe_run` and handed to every figure builder as its subtitle, and stored in
``summary.json`` (``caption``), so a PNG never hides which input or override produced it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping

from aqr_cli.core.configs import reference_config

ACTIVATIONS = ("tanh", "sigmoid")


@dataclass
class RunCaption:
    """``source`` (kind and name), ``config`` (resolution and shapes), ``sample``, ``changes``
    (settings changed from the config, as the flags that changed them) and the weight
    ``activation`` the figures' axes follow (``activation_from`` says how it was decided)."""

    source: str
    config: str
    sample: str
    changes: list[str] = field(default_factory=list)
    activation: str = "tanh"
    activation_from: str = "generator"
    batch_size: int = 1
    queries: str = ""  # which query rows per-query panels draw, when the source has DN rows

    def subtitle(self, batch: bool = False) -> str:
        """One line: source; configuration; sample; changed settings (or 'config settings').

        ``batch``: the figure pools every sample, so the sample part says so instead.
        """
        changed = ", ".join(self.changes) if self.changes else "settings as in the config"
        which = f"batch-wide: all {self.batch_size} sample(s)" if batch else self.sample
        rows = f"; {self.queries}" if self.queries else ""
        return f"{self.source}; {self.config}; {which}{rows}; {changed}"

    def to_dict(self) -> dict:
        return dict(asdict(self), subtitle=self.subtitle())


def configuration_name(bev_shape, pers_shape) -> str:
    """``'800x320 (BEV 128x128, cameras 6x20x50)'``; shapes alone when no reference matches."""
    shapes = (f"BEV {bev_shape[0]}x{bev_shape[1]}, cameras "
              f"{pers_shape[0]}x{pers_shape[1]}x{pers_shape[2]}")
    for name in ("800x320", "1600x640"):
        ref = reference_config(name)
        if tuple(ref.bev_shape) == tuple(bev_shape) and tuple(ref.pers_shape) == tuple(pers_shape):
            return f"{name} ({shapes})"
    return f"non-reference shapes ({shapes})"


def weight_activation(src, activation: str | None) -> tuple[str, str]:
    """(activation, how it was decided) of the weights a source holds.

    Generator outputs follow ``--activation`` (default tanh, as at HEAD); the scene model is
    tanh; a dump's recorded weights are sigmoid when every weight lies in [0, 1] (the logged
    runs), else tanh (negative camera weights; LiDAR weights clamped to [0, 1] by Q1).
    """
    if src.kind == "dump":
        lo = min(float(src.lidar_weights.min()), float(src.camera_weights.min()))
        hi = max(float(src.lidar_weights.max()), float(src.camera_weights.max()))
        if lo >= 0.0 and hi <= 1.0:
            return "sigmoid", "inferred from the dump: every weight in [0, 1]"
        return "tanh", "inferred from the dump: weights below 0"
    if any("scene model" in n for n in src.notes):
        return "tanh", "scene model (tanh of its logits)"
    act = activation or "tanh"
    return act, "--activation" if activation else "generator default (tanh, as upstream HEAD)"


def _name(path) -> str | None:
    return Path(str(path)).name if path else None


def source_kind(src, opts: Mapping) -> str:
    """The source in words: debug dump, checkpoint on a synthetic scene, synthetic scene with
    generator (random or checkpoint) or scene-model weights, or a generator re-run on features."""
    ck = _name(getattr(src, "checkpoint_path", None) or opts.get("checkpoint"))
    seed = opts.get("seed", 0)
    scene_weights = opts.get("weights") == "scene"
    if src.kind == "dump":
        it = f", iteration {src.iteration}" if src.iteration is not None else ""
        with_ck = (f", settings and camera cells from checkpoint {ck}" if src.head_state and ck else
                   ", reference settings (no checkpoint)")
        return f"debug dump {src.label}{it}{with_ck}"
    if src.kind == "features":
        return f"generator of checkpoint {ck} re-run on the recorded features of dump {src.label}"
    weights = ("scene-model weights (--weights scene)" if scene_weights else
               f"generator weights from checkpoint {ck}" if src.kind == "synthetic" and ck else
               "generator weights from the checkpoint" if src.kind == "checkpoint" else
               f"randomly initialised generator weights (seed {seed})")
    if src.kind == "checkpoint":
        return f"checkpoint {src.label} on a synthetic scene (seed {seed}), {weights}"
    return f"synthetic scene (seed {seed}) with {weights}"


def changed_settings(opts: Mapping, bias_scale_effective: float | None = None,
                     recorded: bool = False) -> list[str]:
    """The settings the command line changed from the config, as ``--flag value`` strings.

    ``recorded``: the weights were read from a dump, so generator flags (activation, LAM) did
    not change them and are left out.
    """
    out = []
    if opts.get("activation") and not recorded:
        out.append(f"--activation {opts['activation']}")
    if opts.get("lam") and not recorded:
        out.append(f"--lam {opts['lam']}")
    if opts.get("method"):
        out.append(f"--method {opts['method']}")
    if opts.get("sigma") is not None:
        out.append(f"--sigma {opts['sigma']:g}")
    if opts.get("bias_scale") is not None:
        raw = float(opts["bias_scale"])
        text = f"--bias-scale {raw:g}"
        if bias_scale_effective is not None and abs(bias_scale_effective - raw) > 1e-6:
            text += f" (clamped to {bias_scale_effective:g})"
        out.append(text)
    if opts.get("bias_window") is not None:
        out.append(f"--bias-window {opts['bias_window']}")
    if opts.get("rig"):
        out.append(f"--rig {_name(opts['rig'])}")
    return out


def describe_run(src, sample: int, opts: Mapping, bias_scale_effective: float | None = None) -> RunCaption:
    """The caption of one source's figures for ``sample`` under the command's ``opts``."""
    act, act_from = weight_activation(src, opts.get("activation"))
    return RunCaption(
        source=source_kind(src, opts),
        config=configuration_name(src.cfg.bev_shape, src.cfg.pers_shape),
        sample=f"sample {sample} of {src.batch_size}",
        changes=changed_settings(opts, bias_scale_effective, recorded=src.kind == "dump"),
        activation=act, activation_from=act_from, batch_size=src.batch_size,
        queries=query_rows_text(src.num_queries, src.cfg.num_query, opts.get("queries") or "matching"))


def query_rows_text(num_queries: int, num_query: int, which: str) -> str:
    """``'matching queries (900 of 1730; 830 DN rows left out)'``; empty without DN rows."""
    dn = max(num_queries - num_query, 0)
    if not dn:
        return ""
    return {"matching": f"per-query panels: matching queries ({num_queries - dn} of {num_queries}; "
                        f"{dn} DN rows left out)",
            "dn": f"per-query panels: DN queries only ({dn} of {num_queries})",
            "all": f"per-query panels: all {num_queries} queries ({dn} DN + {num_queries - dn} matching)"}[which]
