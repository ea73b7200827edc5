"""The quirk lint: which upstream bugs (spec section 9) a checkpoint or debug dump shows.

Each rule decides one quirk from what ``aqr inspect-checkpoint`` has: the checkpoint's tensors,
its config (``meta['config']`` or ``--config``), a camera rig, or a debug dump. A rule returns a
:class:`Finding` (id, severity, one message: what was seen, then its consequence) or nothing.
Quirks that need anything else (training logs, source code, the images) are listed in
:data:`NOT_CHECKED` with the reason; :data:`RULES` documents every rule that runs (the README
list is generated from it, see ``README.md, section aqr inspect-checkpoint``).

Severities: ``error`` = the run cannot have done what its config says (e.g. the bias never
reaches attention); ``warning`` = results are distorted; ``info`` = worth knowing when reading
numbers, nothing is broken by it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable

SEVERITIES = ("error", "warning", "info")
_RANK = {s: i for i, s in enumerate(SEVERITIES)}

FLASH = "PETRMultiheadFlashAttention"
MMCV_MHA = "MultiheadAttention"
PETR_MHA = "PETRMultiheadAttention"
BIAS_DROPPING = (FLASH, MMCV_MHA, "FlashMHA")
"""Cross-attention types through which the attention bias never reaches the logits (5.5, 5.6)."""


@dataclass(frozen=True)
class Finding:
    """One decided quirk: ``id`` (``'Q15'``), ``severity``, ``message`` and numbers in ``detail``."""

    id: str
    severity: str
    message: str
    detail: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "severity": self.severity, "message": self.message,
                "detail": dict(self.detail)}


@dataclass(frozen=True)
class QuirkRule:
    """What a rule looks at (``inputs``) and when it fires (``rule``), for the docs."""

    id: str
    applies_to: str  # 'checkpoint' | 'dump' | 'both'
    inputs: str
    rule: str


RULES: tuple[QuirkRule, ...] = (
    QuirkRule("Q1", "dump", "dump", "min(lidar_weights) >= 0 while min(camera_weights) < 0: the BEV "
              "renderer clamped the LiDAR weights in place"),
    QuirkRule("Q2", "both", "config, checkpoint reference points, dump pts_bev",
              "pc_range is not +-54 m in x/y or the BEV grid is not square (the mapping is "
              "hard-coded), or reference points / dump pts_bev fall outside the BEV grid"),
    QuirkRule("Q3", "both", "reference points + rig (dump: its own lidar2img, needs --checkpoint)",
              "learned reference points that no camera sees under the upstream first-valid-view "
              "rule get the (0, 0, 0) sentinel"),
    QuirkRule("Q4", "both", "reference points + rig; dump img_metas",
              "the camera chosen without a depth test differs from the one with a depth test, or "
              "img_shape differs between samples/views of a dump"),
    QuirkRule("Q5", "checkpoint", "reference points + rig",
              "reference points seen by two or more cameras (AQR keeps the first view, the query "
              "embedding sums all)"),
    QuirkRule("Q6", "checkpoint", "config", "debug_mode=True with the bias path: the upstream "
              "bias pictures label views in the wrong order"),
    QuirkRule("Q7", "checkpoint", "config", "debug_mode=True with the bias path: overlays ignore "
              "resize, crop and flip"),
    QuirkRule("Q8", "checkpoint", "config", "debug_mode=True with the bias path: the legend's "
              "colours are inverted"),
    QuirkRule("Q9", "checkpoint", "config, stored offsets",
              "even bias window with HEAD offsets (-ws/2+1..ws/2), or LAM camera window and bias "
              "window of different sizes"),
    QuirkRule("Q10", "checkpoint", "config", "camera LAM window spans the whole feature-map "
              "height (pers_h <= 2*floor(c/2)): rows wrap into the neighbouring view"),
    QuirkRule("Q11", "checkpoint", "config", "attention_bias_config.debug_print=True with a "
              "local window: the printed ratios are over all B*Nq*F entries"),
    QuirkRule("Q12", "checkpoint", "config", "debug_print=True with learnable_scale=False: the "
              "print raises TypeError every print_interval calls"),
    QuirkRule("Q13", "checkpoint", "checkpoint bias_scale + config",
              "learnable raw bias_scale outside [min_scale, max_scale], or a scale above the final "
              "clamp min(5, max_scale)"),
    QuirkRule("Q14", "checkpoint", "checkpoint buffers", "0-d bias_scale, no gaussian_weights, or "
              "symmetric offsets for an even window (CMTTEST/bias generation)"),
    QuirkRule("Q15", "checkpoint", "config, checkpoint bias_scale",
              "decoder cross-attention is PETRMultiheadFlashAttention or mmcv MultiheadAttention; "
              "or bias_scale still equals its initial value in a trained checkpoint"),
    QuirkRule("Q16", "checkpoint", "config", "AQR encoder attention or decoder self-attention is "
              "PETRMultiheadFlashAttention (attn_mask dropped)"),
    QuirkRule("Q17", "checkpoint", "config, meta env_info",
              "cross-attention PETRMultiheadAttention with fp16=True (error on PyTorch >= 2)"),
    QuirkRule("Q18", "checkpoint", "config", "size of the dense [B, Nq, F] bias and of its "
              "per-head expansion, with samples_per_gpu from the config"),
    QuirkRule("Q19", "dump", "dump", "Nq > num_query: the first Nq - num_query rows are DN queries"),
    QuirkRule("Q20", "checkpoint", "checkpoint reference points",
              "reference points outside [0, 1] (AQR uses them raw, the query embedding clamps)"),
    QuirkRule("Q21", "checkpoint", "config", "aqr_config without encoder_config (the misspelt "
              "default does not build) or an encoder_config without transformerlayers"),
    QuirkRule("Q22", "checkpoint", "checkpoint keys", "bev_type_embed / rv_type_embed present"),
    QuirkRule("Q23", "checkpoint", "config", "AQR encoder ffn_drop != 0 in a "
              "PETRTransformerDecoderLayer (overridden to 0)"),
    QuirkRule("Q24", "checkpoint", "checkpoint gaussian_kernel + config",
              "renderer in use (no bias generator): peak of the sum-1 kernel and cells above the "
              "threshold"),
    QuirkRule("Q25", "checkpoint", "config", "renderer in use with render_method bilinear or "
              "distance_weighted"),
    QuirkRule("Q26", "checkpoint", "config", "renderer in use with normalize_weights=True "
              "(a clamp, not a normalisation)"),
    QuirkRule("Q27", "checkpoint", "config", "modulator in use with a residual connection "
              "(gain m + r, not the notes' convex blend)"),
    QuirkRule("Q28", "dump", "dump", "always for old-scheme dumps: no pts_pers or pad_size saved; "
              "all DDP ranks write the same file name"),
    QuirkRule("Q29", "dump", "dump", "maps not 180x180 / 6x40x100, or GT boxes inside "
              "DataContainer: upstream plot_aqr_weights.py draws wrongly or crashes"),
    QuirkRule("Q32", "checkpoint", "--config file", "`model` assigned twice in one config file"),
    QuirkRule("Q33", "checkpoint", "config custom_keys + checkpoint parameter names",
              "a custom key that differs in lr_mult/decay_mult loses to a longer, unrelated key "
              "for a parameter; unmatched keys when the checkpoint is a full detector"),
    QuirkRule("Q34", "checkpoint", "config", "a val info file among the training ann_files"),
    QuirkRule("Q35", "checkpoint", "config", "head type CmtAQRHead"),
    QuirkRule("Q37", "checkpoint", "config", "non-square BEV grid (coords_bev swaps its names)"),
    QuirkRule("Q38", "dump", "dump", "always for dumps: `iteration` is the head's per-process "
              "forward counter"),
    QuirkRule("Q40", "checkpoint", "config", "AQR constructor keys taken from CmtHead defaults "
              "(warning when the default differs from both reference configs)"),
    QuirkRule("NONFINITE", "both", "every floating tensor", "any NaN or Inf value"),
)

NOT_CHECKED: dict[str, str] = {
    "Q30": "a property of the upstream stub tool visualize_aqr_weights.py, not of any run",
    "Q31": "a property of the upstream tool visualize_attention.py, not of any run",
    "Q36": "holds for every CMT checkpoint alike (pos2embed ignores temperature); aqr reproduces it",
    "Q39": "a property of an upstream test script, not of any run",
    "Q41": "about numbers in the design notes, not about checkpoints",
}
"""Quirks no input of this command can decide, with the reason."""


def rule_ids(applies_to: str | None = None) -> list[str]:
    """Ids of the rules that run on checkpoints, dumps, or (None) either."""
    return [r.id for r in RULES
            if applies_to is None or r.applies_to in (applies_to, "both")]


def sort_findings(findings: list[Finding]) -> list[Finding]:
    """Errors first, then warnings, then info; by quirk number within a severity."""
    def key(f: Finding):
        m = re.match(r"Q(\d+)$", f.id)
        return (_RANK.get(f.severity, 9), int(m.group(1)) if m else 1000, f.id)

    return sorted(findings, key=key)


def _worst(*severities: str) -> str:
    return min(severities, key=lambda s: _RANK[s])


# ---------------------------------------------------------------- config access


def _value(cfg, component: str | None, key: str, default: Any = None) -> Any:
    """A config value (``component`` None = head-level ``cfg.head``) or ``default``."""
    if cfg is None:
        return default
    table = cfg.head if component is None else getattr(cfg, component)
    item = table.get(key)
    return default if item is None or item.value is None else item.value


def _source(cfg, component: str | None, key: str) -> str | None:
    if cfg is None:
        return None
    table = cfg.head if component is None else getattr(cfg, component)
    item = table.get(key)
    return None if item is None else item.source


def _types(sourced) -> list[str]:
    """Attention type(s) of an ``AQRConfig`` attention field as a list."""
    if sourced is None or sourced.value is None:
        return []
    v = sourced.value
    return [str(x) for x in (v if isinstance(v, (list, tuple)) else [v])]


def _fmt(x: float, digits: int = 4) -> str:
    return f"{x:.{digits}f}"


def _share(n: int, total: int) -> str:
    return f"{n} of {total} ({100.0 * n / total:.1f}%)" if total else str(n)


# ---------------------------------------------------------------- checkpoint context


@dataclass
class CheckpointContext:
    """Everything the checkpoint rules may read.

    ``report`` is the :class:`aqr_cli.analysis.inspect.CheckpointReport` under construction
    (components, shapes, bias_scale, weight_head, reference_points, nonfinite, meta);
    ``cfg`` the :class:`aqr_cli.io.AQRConfig` (or None), ``parsed`` the whole
    :class:`aqr_cli.io.ParsedConfig` (optimizer, data), ``state_dict`` the flat tensors and
    ``prefix`` the head prefix (``'pts_bbox_head.'``).
    """

    report: Any
    cfg: Any
    parsed: Any
    state_dict: dict
    prefix: str
    torch_version: tuple[int, int] | None = None

    @property
    def bias_path(self) -> bool:
        """The head uses the new (bias) scheme: a bias generator is in the checkpoint."""
        return self.report.components["attention_bias_generator"].present

    def component(self, name: str):
        return self.report.components[name]

    @property
    def aqr_enabled(self) -> bool:
        if any(c.evidence == "state_dict" for c in self.report.components.values()):
            return True
        return bool(_value(self.cfg, None, "enable_aqr", False))


Rule = Callable[[CheckpointContext], "Finding | None"]


def _q2(ctx: CheckpointContext) -> Finding | None:
    parts, detail = [], {}
    pc = _value(ctx.cfg, None, "pc_range")
    bev = ctx.report.shapes.bev
    if isinstance(pc, (list, tuple)) and len(pc) == 6:
        if [float(pc[0]), float(pc[1]), float(pc[3]), float(pc[4])] != [-54.0, -54.0, 54.0, 54.0]:
            parts.append(f"pc_range x/y is {pc[0]}..{pc[3]} / {pc[1]}..{pc[4]} m, not the hard-coded "
                         "+-54 m")
            detail["pc_range"] = list(pc)
    if bev and None not in bev and bev[0] != bev[1]:
        parts.append(f"the BEV grid is {bev[0]}x{bev[1]}, but columns are mapped with bev_h")
        detail["bev"] = list(bev)
    refs = ctx.report.reference_points
    if refs is not None and refs.bev_outside_grid:
        parts.append(f"{_share(refs.bev_outside_grid, refs.count)} learned reference points map "
                     "outside the BEV grid")
        detail["bev_outside_grid"] = refs.bev_outside_grid
    if not parts or not ctx.aqr_enabled:
        return None
    return Finding("Q2", "warning", "; ".join(parts) + ": project_3d_to_features places these "
                   "queries in the wrong BEV cells or off the grid, where the renderer skips them "
                   "and the LAM/bias keep partial windows.", detail)


def _q3(ctx: CheckpointContext) -> Finding | None:
    refs = ctx.report.reference_points
    if refs is None or refs.unseen_count is None or not refs.unseen_count or not ctx.aqr_enabled:
        return None
    return Finding("Q3", "warning", f"{_share(refs.unseen_count, refs.count)} learned reference "
                   f"points are seen by no camera under the {refs.rig} rig: they get the (0, 0, 0) "
                   "sentinel, so their camera weight, LAM window and bias window land on "
                   "CAM_FRONT cell (0, 0).", {"count": refs.unseen_count, "total": refs.count,
                                              "rig": refs.rig})


def _q4(ctx: CheckpointContext) -> Finding | None:
    refs = ctx.report.reference_points
    if refs is None or not refs.depth_test_disagree or not ctx.aqr_enabled:
        return None
    return Finding("Q4", "info", f"{_share(refs.depth_test_disagree, refs.count)} reference "
                   "points get a different camera from AQR's projection (no depth test, sample-0 "
                   "img_shape) than from a true depth test: their camera cell is wrong.",
                   {"count": refs.depth_test_disagree})


def _q5(ctx: CheckpointContext) -> Finding | None:
    refs = ctx.report.reference_points
    if refs is None or not refs.multi_view_count or not ctx.aqr_enabled:
        return None
    return Finding("Q5", "info", f"{_share(refs.multi_view_count, refs.count)} reference points "
                   "are seen by two or more cameras: AQR uses only the first (lowest-index) view "
                   "while the query position embedding sums all views that see them.",
                   {"count": refs.multi_view_count})


def _debug_pictures(ctx: CheckpointContext) -> bool:
    return ctx.bias_path and bool(_value(ctx.cfg, None, "debug_mode", False))


# Quirks of upstream's debug pictures: reported when debug_mode draws them (bias path only).
_PICTURE_QUIRKS = {
    "Q6": "debug_mode=True: upstream's aqr_bias_visualization pictures label the views FRONT, "
          "FRONT_RIGHT, BACK_RIGHT, BACK, BACK_LEFT, FRONT_LEFT, so FRONT_LEFT (view 2) and "
          "BACK_RIGHT (view 5) carry each other's names.",
    "Q7": "debug_mode=True: upstream's bias overlays stretch the feature map over the raw "
          "1600x900 image, ignoring resize, the bottom crop and flips, so the bias is drawn in "
          "the wrong place.",
    "Q8": "debug_mode=True: upstream's bias pictures say 'Red=+, Blue=-' but draw positive bias "
          "blue and negative red, and show only cells beyond the medians.",
}


def _picture_rule(qid: str):
    def rule(ctx: CheckpointContext) -> Finding | None:
        return Finding(qid, "info", _PICTURE_QUIRKS[qid]) if _debug_pictures(ctx) else None

    rule.__name__ = f"_{qid.lower()}"
    return rule


_q6, _q7, _q8 = (_picture_rule(q) for q in ("Q6", "Q7", "Q8"))


def _q9(ctx: CheckpointContext) -> Finding | None:
    shapes = ctx.report.shapes
    ws = shapes.bias_window
    if not ctx.bias_path or not isinstance(ws, int):
        return None
    parity = shapes.state_dict.get("bias_window_parity") or "head"
    windows = shapes.aqr_window_sizes
    cam = windows[0] if isinstance(windows, (list, tuple)) and windows else None
    parts, detail = [], {"bias_window": ws, "parity": parity}
    if ws % 2 == 0 and parity == "head":
        parts.append(f"the bias window {ws} is even, so its offsets are {-ws // 2 + 1}..{ws // 2} "
                     "(shifted half a cell towards +row/+col)")
    bias_side = ws if parity == "head" else 2 * (ws // 2) + 1
    if isinstance(cam, int):
        lam_side = 2 * (cam // 2) + 1
        detail["lam_camera_side"] = lam_side
        if lam_side != bias_side:
            parts.append(f"the AQR camera LAM window is {lam_side}x{lam_side} "
                         f"(window_sizes[0]={cam}) but the bias window is {bias_side}x{bias_side}")
    if not parts:
        return None
    return Finding("Q9", "warning", "; ".join(parts) + ": AQR computes its weights over a "
                   "different camera window than the one it then biases.", detail)


def _q10(ctx: CheckpointContext) -> Finding | None:
    windows, pers = ctx.report.shapes.aqr_window_sizes, ctx.report.shapes.pers
    if not (isinstance(windows, (list, tuple)) and windows and pers and pers[1]) or not ctx.aqr_enabled:
        return None
    c = windows[0]
    if not isinstance(c, int) or pers[1] > 2 * (c // 2):
        return None
    honours = FLASH not in _types(getattr(ctx.cfg, "encoder_attention", None))
    return Finding("Q10", "warning" if honours else "info",
                   f"the camera LAM window {c} spans {2 * (c // 2) + 1} rows but the camera map has "
                   f"only {pers[1]}: the flat-index window wraps into the neighbouring view"
                   + ("." if honours else " (moot while the encoder ignores the LAM, Q16)."),
                   {"camera_window": c, "pers_h": pers[1]})


def _q11(ctx: CheckpointContext) -> Finding | None:
    if not ctx.bias_path or not _value(ctx.cfg, "attention_bias_config", "debug_print", False):
        return None
    if not _value(ctx.cfg, "attention_bias_config", "use_local_bias", True):
        return None
    if not _value(ctx.cfg, "attention_bias_config", "learnable_scale", True):
        return None  # the print crashes instead (Q12)
    shapes = ctx.report.shapes
    detail = {}
    msg = "attention_bias_config.debug_print=True: upstream's printed positive/near-zero ratios " \
          "are taken over all B*Nq*F entries"
    if shapes.bev and shapes.pers and isinstance(shapes.bias_window, int) and None not in shapes.bev \
            and None not in shapes.pers:
        f = shapes.bev[0] * shapes.bev[1] + math.prod(shapes.pers)
        inside = 2 * shapes.bias_window ** 2 / f
        detail = {"features": f, "in_window_share": inside}
        msg += f", of which at most {100 * inside:.2f}% lie in a window"
    return Finding("Q11", "info", msg + ", so 'near-zero' and 'negative' read about 99% whatever "
                   "the weights are.", detail)


def _q12(ctx: CheckpointContext) -> Finding | None:
    cfg = ctx.cfg
    if not ctx.bias_path or cfg is None:
        return None
    if _value(cfg, "attention_bias_config", "learnable_scale", True):
        return None
    if not _value(cfg, "attention_bias_config", "debug_print", False):
        return None
    n = _value(cfg, "attention_bias_config", "print_interval", 1000)
    return Finding("Q12", "error", f"learnable_scale=False with debug_print=True: every {n}th call "
                   "of the bias generator raises TypeError in its print, so those steps run with no "
                   "bias at all.", {"print_interval": n})


def _q13(ctx: CheckpointContext) -> Finding | None:
    b = ctx.report.bias_scale
    if b is None:
        return None
    final = min(5.0, b.max)
    if b.learnable and (b.raw < b.min or b.raw > b.max):
        return Finding("Q13", "warning", f"raw bias_scale {_fmt(b.raw)} is outside [{b.min}, "
                       f"{b.max}]: it acts as {_fmt(b.effective)} and the clamp gives it zero "
                       "gradient, so it is stuck at the bound.",
                       {"raw": b.raw, "effective": b.effective})
    if abs(b.effective) > final:
        return Finding("Q13", "warning", f"bias_scale {_fmt(b.effective)} exceeds the final clamp "
                       f"+-{final}: bias values are cut at +-{final}, so the strongest weights "
                       "saturate.", {"effective": b.effective, "final_clamp": final})
    return None


def _q14(ctx: CheckpointContext) -> Finding | None:
    if not ctx.bias_path:
        return None
    sd, pre = ctx.state_dict, ctx.prefix + "attention_bias_generator."
    parts = []
    scale = sd.get(pre + "bias_scale")
    if scale is not None and scale.dim() == 0:
        parts.append("bias_scale is 0-d")
    if pre + "gaussian_weights" not in sd:
        parts.append("gaussian_weights is missing")
    ws = ctx.report.shapes.bias_window
    if ctx.report.shapes.state_dict.get("bias_window_parity") == "symmetric" and isinstance(ws, int) \
            and ws % 2 == 0:
        parts.append(f"the offsets are symmetric ({(ws + 1) ** 2} for window {ws})")
    if not parts:
        return None
    return Finding("Q14", "warning", "; ".join(parts) + ": this is the CMTTEST/bias generation, "
                   "whose head never produced an effective bias; aqr uses the stored offsets.",
                   {"parts": parts})


def _q15(ctx: CheckpointContext) -> Finding | None:
    if not ctx.bias_path:
        return None
    cross = _types(getattr(ctx.cfg, "decoder_cross_attention", None))
    dropping = [t for t in cross if t in BIAS_DROPPING]
    b, meta = ctx.report.bias_scale, ctx.report.meta
    trained = bool((meta.get("iter") or 0) > 0 or (meta.get("epoch") or 0) > 0)
    unchanged = b is not None and b.equals_init and trained
    detail: dict[str, Any] = {"cross_attention": cross or None}
    if b is not None:
        detail.update(bias_scale=b.raw, init=b.init, trained=trained)
    if dropping:
        kind = dropping[0]
        how = ("at HEAD it cannot broadcast the [Nq, B, F] bias (the head catches the error and "
               "runs without bias) and in the CMTTEST/bias snapshot it drops the bias"
               if kind == FLASH else f"{kind} swallows attention_bias in **kwargs")
        msg = f"decoder cross-attention is {kind} (config): {how}, so the bias never reaches " \
              "attention and bias_scale gets no gradient"
        if unchanged:
            msg += f"; consistent with bias_scale still exactly {b.init} after training"
        elif b is not None and trained:
            msg += f"; yet bias_scale moved from {b.init} to {_fmt(b.raw)}, so the checkpoint and " \
                   "this config may come from different code"
        return Finding("Q15", "error", msg + ".", detail)
    if unchanged and not cross:
        return Finding("Q15", "warning", f"bias_scale is still exactly its initial {b.init} in a "
                       "trained checkpoint: the bias most likely never reached attention (no "
                       "gradient), so the run trained without it.", detail)
    return None


def _q16(ctx: CheckpointContext) -> Finding | None:
    if ctx.cfg is None or not ctx.aqr_enabled:
        return None
    parts, sev, detail = [], "info", {}
    if FLASH in _types(ctx.cfg.encoder_attention):
        parts.append("the AQR encoder uses PETRMultiheadFlashAttention, which drops the local "
                     "attention mask, so every query attends to all F tokens and window_sizes has "
                     "no effect")
        sev = "warning"
        detail["encoder"] = FLASH
    if FLASH in _types(ctx.cfg.decoder_self_attention):
        parts.append("the decoder self-attention is PETRMultiheadFlashAttention, so the DN "
                     "self-attention mask is lost (DN groups see each other and the matching "
                     "queries) and the bias is handed to self-attention too")
        sev = "error"
        detail["decoder_self"] = FLASH
    if not parts:
        return None
    return Finding("Q16", sev, "; ".join(parts) + ".", detail)


def _q17(ctx: CheckpointContext) -> Finding | None:
    if not ctx.bias_path or PETR_MHA not in _types(getattr(ctx.cfg, "decoder_cross_attention", None)):
        return None
    if not _value(ctx.cfg, "attention_bias_config", "fp16", True):
        return None
    tv = ctx.torch_version
    if tv is None:
        sev, when = "warning", "on PyTorch >= 2 (the run's version is not recorded)"
    elif tv >= (2, 0):
        sev, when = "error", f"on the run's PyTorch {tv[0]}.{tv[1]}"
    else:
        sev, when = "info", f"on PyTorch >= 2 (the run used {tv[0]}.{tv[1]}, which promoted it)"
    return Finding("Q17", sev, f"fp16=True feeds a float16 bias into PETRMultiheadAttention with "
                   f"float32 logits: nn.MultiheadAttention raises 'Input dtypes must be the same' "
                   f"{when}.", {"torch": list(tv) if tv else None})


def _cross_heads(parsed) -> int:
    layers = parsed.get("model.pts_bbox_head.transformer.decoder.transformerlayers") if parsed else None
    layers = layers[0] if isinstance(layers, list) and layers else layers
    if isinstance(layers, Mapping):
        order = [op for op in (layers.get("operation_order") or ()) if op in ("self_attn", "cross_attn")]
        attn = layers.get("attn_cfgs")
        if isinstance(attn, (list, tuple)) and "cross_attn" in order and len(attn) == len(order):
            cfg = attn[order.index("cross_attn")]
            if isinstance(cfg, Mapping) and isinstance(cfg.get("num_heads"), int):
                return cfg["num_heads"]
    return 8


def _q18(ctx: CheckpointContext) -> Finding | None:
    shapes = ctx.report.shapes
    if not ctx.bias_path or not shapes.bev or not shapes.pers or None in shapes.bev \
            or None in shapes.pers:
        return None
    f = shapes.bev[0] * shapes.bev[1] + math.prod(shapes.pers)
    b = ctx.parsed.get("data.samples_per_gpu") if ctx.parsed is not None else None
    b = b if isinstance(b, int) and b > 0 else 1
    heads = _cross_heads(ctx.parsed)
    nq = int(_value(ctx.cfg, None, "num_query", 900))
    gib = 2.0 ** 30
    dense = b * nq * f * 2 / 2 ** 20
    dn_q = nq + 830  # the design notes quote Nq = 1730 (900 + DN padding) for 800x320
    expanded = b * heads * dn_q * f * 2 / gib
    return Finding("Q18", "info", f"the bias is a dense [B={b}, Nq, F={f}] tensor: {dense:.0f} MiB "
                   f"in fp16 at Nq={nq}; PETRMultiheadAttention would expand it per cross-attention "
                   f"call to [B*{heads}, Nq, F], {expanded:.1f} GiB at Nq={dn_q} with DN queries, "
                   "before the float logits.",
                   {"batch": b, "features": f, "heads": heads, "dense_mib": dense,
                    "expanded_gib_at_dn": expanded, "nq_dn": dn_q})


def _q20(ctx: CheckpointContext) -> Finding | None:
    refs = ctx.report.reference_points
    if refs is None or not refs.outside_closed_count or not ctx.aqr_enabled:
        return None
    return Finding("Q20", "warning", f"{_share(refs.outside_closed_count, refs.count)} learned "
                   "reference points lie outside [0, 1]: AQR projects the raw values while the "
                   "query embedding clamps them, so the AQR windows and the query positions "
                   "disagree.", {"count": refs.outside_closed_count,
                                 "min": refs.min, "max": refs.max})


def _q21(ctx: CheckpointContext) -> Finding | None:
    cfg = ctx.cfg
    if cfg is None or not _value(cfg, None, "enable_aqr", False):
        return None
    enc = cfg.aqr_config.get("encoder_config")
    if enc is not None and enc.source == "default":
        return Finding("Q21", "error", "aqr_config sets no encoder_config, so CmtHead's default "
                       "with the misspelt 'MultiFheadFlashAttention' is used: building the head "
                       "fails (the type is not registered).")
    if enc is not None and enc.source == "file" and isinstance(enc.value, Mapping) \
            and "transformerlayers" not in enc.value:
        return Finding("Q21", "error", "aqr_config.encoder_config has no transformerlayers: "
                       "CmtHead's shallow dict.update replaces the default encoder wholesale, so "
                       "the encoder cannot be built.")
    return None


def _q22(ctx: CheckpointContext) -> Finding | None:
    pre = ctx.prefix + "aqr_weight_generator."
    keys = [k for k in ("bev_type_embed", "rv_type_embed") if pre + k in ctx.state_dict]
    if not keys:
        return None
    norms = {k: float(ctx.state_dict[pre + k].float().norm()) for k in keys}
    return Finding("Q22", "info", f"{' and '.join(keys)} are in the checkpoint but never used in "
                   "forward: they keep random values, get no gradient and need "
                   "find_unused_parameters=True under DDP.", {"norms": norms})


def _q23(ctx: CheckpointContext) -> Finding | None:
    cfg = ctx.cfg
    if cfg is None or not ctx.aqr_enabled:
        return None
    enc = _value(cfg, "aqr_config", "encoder_config")
    layer = enc.get("transformerlayers") if isinstance(enc, Mapping) else None
    layer = layer[0] if isinstance(layer, list) and layer else layer
    if not isinstance(layer, Mapping) or layer.get("type") != "PETRTransformerDecoderLayer":
        return None
    ffn = layer.get("ffn_cfgs")
    ffn = ffn[0] if isinstance(ffn, list) and ffn else ffn
    drop = ffn.get("ffn_drop") if isinstance(ffn, Mapping) else None
    if not isinstance(drop, (int, float)) or drop == 0:
        return None
    return Finding("Q23", "info", f"the AQR encoder asks ffn_drop={drop}, but "
                   "PETRTransformerDecoderLayer passes ffn_dropout=0.0 over it: the AQR FFN trains "
                   "without dropout.", {"ffn_drop": drop})


def _renderer_in_use(ctx: CheckpointContext) -> bool:
    return not ctx.bias_path and ctx.component("weight_renderer").present


def _q24(ctx: CheckpointContext) -> Finding | None:
    key = ctx.prefix + "weight_renderer.gaussian_kernel"
    if not _renderer_in_use(ctx) or key not in ctx.state_dict:
        return None
    k = ctx.state_dict[key].float()
    thr = float(_value(ctx.cfg, "renderer_config", "min_weight_threshold", 0.01))
    peak, cells = float(k.max()), int((k >= thr).sum())
    return Finding("Q24", "info", f"the renderer's Gaussian kernel sums to 1 (peak {peak:.3f}, "
                   f"{cells} cells >= {thr}): a lone weight-1 query adds at most {peak:.3f} to the "
                   "map, so large map values only appear where many queries overlap.",
                   {"peak": peak, "cells_above_threshold": cells})


def _q25(ctx: CheckpointContext) -> Finding | None:
    method = _value(ctx.cfg, "renderer_config", "render_method")
    if not (ctx.component("weight_renderer").present and not ctx.bias_path) \
            or method not in ("bilinear", "distance_weighted"):
        return None
    return Finding("Q25", "warning", f"render_method='{method}' renders nothing on the camera "
                   "maps (all zeros)" + (" and deposits each query on one cell, skipping the last "
                   "row/column" if method == "bilinear" else " and saturates the BEV map with 900 "
                   "queries") + ": the camera modulation only keeps its residual.",
                   {"render_method": method})


def _q26(ctx: CheckpointContext) -> Finding | None:
    if not _renderer_in_use(ctx) or not _value(ctx.cfg, "renderer_config", "normalize_weights", False):
        return None
    clamp = _value(ctx.cfg, "renderer_config", "max_weight_clamp", 1.5)
    return Finding("Q26", "info", f"renderer normalize_weights=True only clamps the maps to "
                   f"[0, {clamp}]: maps are not normalised, their scale follows query overlap.",
                   {"max_weight_clamp": clamp})


def _q27(ctx: CheckpointContext) -> Finding | None:
    if ctx.bias_path or ctx.cfg is None or _value(ctx.cfg, None, "use_simple_modulation", False):
        return None
    if not _value(ctx.cfg, None, "enable_aqr", False):
        return None
    if not _value(ctx.cfg, "modulator_config", "residual_connection", True):
        return None
    r = float(_value(ctx.cfg, "modulator_config", "residual_weight", 0.1))
    top = float(_value(ctx.cfg, "renderer_config", "max_weight_clamp", 1.5))
    if _value(ctx.cfg, "modulator_config", "normalize_weights", True):
        top = 1.0
    return Finding("Q27", "info", f"the modulator computes f*(m + {r}), not the notes' convex "
                   f"blend: cells no query reaches are scaled by {r} and the largest gain is "
                   f"{top + r:.2f}x.", {"residual_weight": r, "max_gain": top + r})


def _q32(ctx: CheckpointContext) -> Finding | None:
    if ctx.cfg is None or not ctx.cfg.model_assigned_twice:
        return None
    where = ", ".join(ctx.cfg.model_assignments)
    return Finding("Q32", "warning", f"`model` is assigned more than once in one config file "
                   f"({where}): only the last assignment survives, so the settings of the first "
                   "(e.g. backbone freezing or the AQR head) are silently discarded.",
                   {"assignments": list(ctx.cfg.model_assignments)})


_BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked", "gaussian_kernel",
                    "y_offsets", "x_offsets", "window_offsets_bev", "window_offsets_pers",
                    "gaussian_weights")


def _mults(entry: Any) -> tuple[float, float]:
    entry = entry if isinstance(entry, Mapping) else {}
    return float(entry.get("lr_mult", 1.0)), float(entry.get("decay_mult", 1.0))


def _q33(ctx: CheckpointContext) -> Finding | None:
    keys = ctx.parsed.get(("optimizer", "paramwise_cfg", "custom_keys")) if ctx.parsed else None
    params = [k for k in ctx.state_dict if not k.endswith(_BUFFER_SUFFIXES)]
    full = any(k.startswith("img_backbone.") for k in ctx.state_dict) and any(
        ".transformer." in k for k in ctx.state_dict)
    return custom_key_finding(keys, params, full=full)


def custom_key_finding(keys: Any, params: list[str], *, full: bool) -> Finding | None:
    """Q33 for optimizer ``custom_keys`` against parameter names (mmcv tries longer keys first).

    ``full``: ``params`` are all parameters of a detector, so keys matching none are reported.
    """
    if not isinstance(keys, Mapping) or not keys:
        return None
    order = sorted(sorted(str(k) for k in keys), key=len, reverse=True)  # mmcv's order
    shadowed: dict[str, tuple[str, str]] = {}
    matched: set[str] = set()
    for name in params:
        hits = [k for k in order if k in name]
        matched.update(hits)
        if len(hits) < 2:
            continue
        winner = hits[0]
        for k in hits[1:]:
            if k not in winner and _mults(keys[k]) != _mults(keys[winner]):
                shadowed.setdefault(k, (winner, name))
    unmatched = [k for k in order if k not in matched] if full else []
    if not shadowed and not unmatched:
        return None
    parts = []
    for k, (winner, name) in shadowed.items():
        lr_k, lr_w = _mults(keys[k])[0], _mults(keys[winner])[0]
        parts.append(f"custom key '{k}' (lr_mult {lr_k}) never applies to {name}: mmcv tries "
                     f"longer keys first and '{winner}' (lr_mult {lr_w}) matches it")
    if unmatched:
        parts.append("custom keys matching no parameter: " + ", ".join(repr(k) for k in unmatched))
    return Finding("Q33", "warning", "; ".join(parts) + ", so those parameters train with other "
                   "learning rates than the config suggests.",
                   {"shadowed": {k: list(v) for k, v in shadowed.items()}, "unmatched": unmatched})


def _q34(ctx: CheckpointContext) -> Finding | None:
    if ctx.cfg is None or not ctx.cfg.val_in_train:
        return None
    return Finding("Q34", "warning", "the training ann_files include the validation infos ("
                   + ", ".join(ctx.cfg.val_ann_files) + "): a val evaluation of this model "
                   "measures performance on its own training data.",
                   {"train": list(ctx.cfg.train_ann_files), "val": list(ctx.cfg.val_ann_files)})


def _q35(ctx: CheckpointContext) -> Finding | None:
    if ctx.cfg is None or ctx.cfg.head_type.value != "CmtAQRHead":
        return None
    return Finding("Q35", "error", "the head type is CmtAQRHead: it passes `type` into "
                   "AQRWeightGenerator (TypeError) and reshapes the camera memory wrongly, so this "
                   "config cannot have trained a working AQR head.")


def _q37(ctx: CheckpointContext) -> Finding | None:
    bev = ctx.report.shapes.bev
    if not bev or None in bev or bev[0] == bev[1]:
        return None
    return Finding("Q37", "warning", f"the BEV grid is {bev[0]}x{bev[1]}: coords_bev crosses its "
                   "x/y names and divisors, which is harmless only for square grids, so the BEV "
                   "position embedding is wrong here.", {"bev": list(bev)})


_Q40_SURPRISING = {
    ("aqr_config", "window_sizes"), ("aqr_config", "bev_feature_shape"),
    ("aqr_config", "pers_feature_shape"), ("aqr_config", "encoder_config"),
    ("renderer_config", "gaussian_sigma"), ("renderer_config", "bev_feature_shape"),
    ("renderer_config", "pers_feature_shape"), ("modulator_config", "residual_weight"),
    ("modulator_config", "normalize_weights"), ("attention_bias_config", "window_size"),
    ("attention_bias_config", "bev_feature_shape"), ("attention_bias_config", "pers_feature_shape"),
    ("attention_bias_config", "gaussian_sigma"),
}
_Q40_PASSED_BY_HEAD = {("aqr_config", "pc_range"), ("aqr_config", "embed_dims")}


def _q40(ctx: CheckpointContext) -> Finding | None:
    cfg = ctx.cfg
    if cfg is None or not _value(cfg, None, "enable_aqr", False):
        return None
    taken = []
    if cfg.head["hidden_dim"].source == "default":
        taken.append((None, "hidden_dim", cfg.head["hidden_dim"].value))
    for comp in ("aqr_config", "renderer_config", "modulator_config", "attention_bias_config"):
        for key, item in getattr(cfg, comp).items():
            if item.source == "default" and (comp, key) not in _Q40_PASSED_BY_HEAD:
                taken.append((comp, key, item.value))
    if not taken:
        return None
    surprising = [t for t in taken if t[0] is None or (t[0], t[1]) in _Q40_SURPRISING]
    names = [f"{c + '.' if c else ''}{k}={v!r}" if k != "encoder_config" else f"{c}.{k}"
             for c, k, v in taken]
    if surprising:
        return Finding("Q40", "warning", f"{len(taken)} AQR settings come from hidden CmtHead "
                       f"defaults ({', '.join(names)}), some of which differ from both reference "
                       "configs: the model silently runs with them.",
                       {"defaults": [f"{c + '.' if c else ''}{k}" for c, k, _ in taken]})
    return Finding("Q40", "info", f"{len(taken)} AQR setting(s) come from CmtHead defaults "
                   f"({', '.join(names)}), as in the reference configs.",
                   {"defaults": [f"{c + '.' if c else ''}{k}" for c, k, _ in taken]})


def _nonfinite(report) -> Finding | None:
    nf = report.nonfinite
    if not nf.bad:
        return None
    first = ", ".join(f"{b['key']} ({b['nan']} NaN, {b['inf']} Inf)" for b in nf.bad[:3])
    more = f" and {len(nf.bad) - 3} more" if len(nf.bad) > 3 else ""
    return Finding("NONFINITE", "error", f"{len(nf.bad)} tensor(s) hold NaN or Inf: {first}{more}; "
                   "every output computed from them is invalid.", {"tensors": list(nf.bad)})


CHECKPOINT_RULES: tuple[Rule, ...] = (
    _q2, _q3, _q4, _q5, _q6, _q7, _q8, _q9, _q10, _q11, _q12, _q13, _q14, _q15, _q16, _q17, _q18,
    _q20, _q21, _q22, _q23, _q24, _q25, _q26, _q27, _q32, _q33, _q34, _q35, _q37, _q40,
)


def checkpoint_findings(ctx: CheckpointContext) -> list[Finding]:
    """Every checkpoint rule that fires, sorted (errors first)."""
    found = [f for rule in CHECKPOINT_RULES if (f := rule(ctx)) is not None]
    nf = _nonfinite(ctx.report)
    if nf is not None:
        found.append(nf)
    return sort_findings(found)


# ---------------------------------------------------------------- debug dumps


def dump_findings(report) -> list[Finding]:
    """Every dump rule that fires on a :class:`aqr_cli.analysis.inspect.DumpReport`, sorted."""
    found: list[Finding] = []
    w = report.weights
    lid, cam = w.get("lidar"), w.get("camera")
    if lid and cam and lid["min"] >= 0 and cam["min"] < 0:
        found.append(Finding(
            "Q1", "warning", f"lidar_weights min {_fmt(lid['min'])} while camera_weights min "
            f"{_fmt(cam['min'])} ({100 * cam['share_negative']:.1f}% negative): the BEV renderer "
            "clamped the LiDAR weights to [0, 1] in place before the dump, so negative "
            "(suppressing) LiDAR weights are lost.",
            {"lidar_min": lid["min"], "camera_min": cam["min"],
             "camera_share_negative": cam["share_negative"]}))
    if report.bev_outside_grid:
        n, total = report.bev_outside_grid, report.queries["num_queries"] * (report.batch_size or 1)
        found.append(Finding(
            "Q2", "warning", f"{_share(n, total)} pts_bev cells lie outside the "
            f"{report.shapes['bev'][0]}x{report.shapes['bev'][1]} BEV grid: the renderer skipped "
            "them, the LAM/bias keep partial windows.", {"count": n}))
    s = report.sentinel
    if s.get("decidable") and s.get("count"):
        found.append(Finding(
            "Q3", "warning", f"{_share(s['count'], s['total'])} matching queries (reference points "
            f"from {s['checkpoint']}) are seen by no camera of this dump's rig: their camera "
            "weights went to CAM_FRONT cell (0, 0) of the camera map.",
            {"count": s["count"], "total": s["total"], "per_sample": s.get("per_sample")}))
    shapes = report.img_metas.get("img_shapes") or []
    if len(shapes) > 1:
        found.append(Finding(
            "Q4", "warning", f"img_shape differs between samples/views ({shapes}): upstream tests "
            "the FOV of every sample and view against sample 0, camera 0.", {"img_shapes": shapes}))
    q = report.queries
    if q["num_dn"] > 0:
        found.append(Finding(
            "Q19", "warning", f"{q['num_queries']} queries per sample, the first {q['num_dn']} "
            f"({100 * q['dn_share']:.1f}%) are denoising queries: statistics over all rows mix DN "
            "and matching queries.", dict(q)))
    found.append(Finding(
        "Q28", "info", "old-scheme dumps hold no pts_pers, pad_size or reference points, and every "
        "DDP rank writes the same file name: camera cells and the DN split must be recovered "
        "from elsewhere, and the file is the last rank's batch."))
    parts, sev = [], "info"
    bev, pers = report.shapes.get("bev"), report.shapes.get("pers")
    if (bev and list(bev) != [180, 180]) or (pers and list(pers) != [6, 40, 100]):
        bev_text = "x".join(map(str, bev)) if bev else "(no BEV map)"
        pers_text = "x".join(map(str, pers)) if pers else "(no camera maps)"
        parts.append(f"the maps are {bev_text} / {pers_text}, but upstream "
                     "plot_aqr_weights.py hard-codes 180x180 / 6x40x100, so its GT boxes are drawn "
                     "at the wrong scale")
    if report.gt_boxes.get("in_data_container"):
        parts.append("the GT boxes are wrapped in DataContainer, on which plot_aqr_weights.py "
                     "crashes (len() raises TypeError)")
        sev = "warning"
    if parts:
        found.append(Finding("Q29", sev, "; ".join(parts) + "."))
    found.append(Finding(
        "Q38", "info", f"iteration {report.iteration} is the head's per-process forward counter "
        "(evaluation forwards included), not the optimizer iteration."))
    nf = _nonfinite(report)
    if nf is not None:
        found.append(nf)
    return sort_findings(found)


def torch_version_from_env(env_info: Any) -> tuple[int, int] | None:
    """(major, minor) of ``PyTorch: X.Y...`` in mmcv's ``env_info`` text, if present."""
    if not isinstance(env_info, str):
        return None
    m = re.search(r"^PyTorch:\s*(\d+)\.(\d+)", env_info, re.M)
    return (int(m.group(1)), int(m.group(2))) if m else None


def finding_ids(findings, empty: str = "-") -> str:
    """``E Q15  W Q3 Q9  +9 info``: error and warning ids, info findings counted."""
    err = [f.id for f in findings if f.severity == "error"]
    warn = [f.id for f in findings if f.severity == "warning"]
    info = sum(f.severity == "info" for f in findings)
    parts = (["E " + " ".join(err)] if err else []) + (["W " + " ".join(warn)] if warn else []) \
        + ([f"+{info} info"] if info else [])
    return "  ".join(parts) or empty
