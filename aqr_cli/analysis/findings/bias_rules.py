"""Checkpoint rules on the attention-bias path: debug pictures and prints, the bias window and
scale, the attention types the bias passes through, and the size of the dense bias."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from aqr_cli.analysis.findings.context import (
    BIAS_DROPPING,
    FLASH,
    PETR_MHA,
    CheckpointContext,
    attention_types,
    fmt,
    setting,
)
from aqr_cli.analysis.findings.registry import Finding, quirk_rule


def _debug_pictures(ctx: CheckpointContext) -> bool:
    return ctx.bias_path and bool(setting(ctx.cfg, None, "debug_mode", False))


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

    return rule


for _qid, _fires in (
        ("Q6", "`debug_mode=True` with the bias path: upstream's bias pictures swap the names of "
               "FRONT_LEFT and BACK_RIGHT (info)"),
        ("Q7", "`debug_mode=True` with the bias path: overlays ignore resize, crop and flip (info)"),
        ("Q8", "`debug_mode=True` with the bias path: the legend's colours are inverted (info)")):
    quirk_rule(_qid, ("checkpoint", "config"), inputs="config", fires=_fires)(_picture_rule(_qid))


@quirk_rule("Q9", ("checkpoint", "config"),
            inputs="config, stored offsets",
            fires="even bias window with HEAD offsets (−ws/2+1..ws/2), or LAM camera window and "
                  "bias window of different sizes (warning)")
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


@quirk_rule("Q11", ("checkpoint", "config"),
            inputs="config",
            fires="`attention_bias_config.debug_print=True` with a local window: the printed "
                  "ratios are over all B·Nq·F entries (info)")
def _q11(ctx: CheckpointContext) -> Finding | None:
    if not ctx.bias_path or not setting(ctx.cfg, "attention_bias_config", "debug_print", False):
        return None
    if not setting(ctx.cfg, "attention_bias_config", "use_local_bias", True):
        return None
    if not setting(ctx.cfg, "attention_bias_config", "learnable_scale", True):
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


@quirk_rule("Q12", ("checkpoint", "config"),
            inputs="config",
            fires="`debug_print=True` with `learnable_scale=False`: the print raises TypeError "
                  "every `print_interval` calls, the head then runs without bias (error)")
def _q12(ctx: CheckpointContext) -> Finding | None:
    cfg = ctx.cfg
    if not ctx.bias_path or cfg is None:
        return None
    if setting(cfg, "attention_bias_config", "learnable_scale", True):
        return None
    if not setting(cfg, "attention_bias_config", "debug_print", False):
        return None
    n = setting(cfg, "attention_bias_config", "print_interval", 1000)
    return Finding("Q12", "error", f"learnable_scale=False with debug_print=True: every {n}th call "
                   "of the bias generator raises TypeError in its print, so those steps run with no "
                   "bias at all.", {"print_interval": n})


@quirk_rule("Q13", "checkpoint",
            inputs="checkpoint `bias_scale` + config",
            fires="learnable raw `bias_scale` outside [`min_scale`, `max_scale`] (stuck, zero "
                  "gradient), or a scale above the final clamp `min(5, max_scale)` (warning)")
def _q13(ctx: CheckpointContext) -> Finding | None:
    b = ctx.report.bias_scale
    if b is None:
        return None
    final = min(5.0, b.max)
    if b.learnable and (b.raw < b.min or b.raw > b.max):
        return Finding("Q13", "warning", f"raw bias_scale {fmt(b.raw)} is outside [{b.min}, "
                       f"{b.max}]: it acts as {fmt(b.effective)} and the clamp gives it zero "
                       "gradient, so it is stuck at the bound.",
                       {"raw": b.raw, "effective": b.effective})
    if abs(b.effective) > final:
        return Finding("Q13", "warning", f"bias_scale {fmt(b.effective)} exceeds the final clamp "
                       f"+-{final}: bias values are cut at +-{final}, so the strongest weights "
                       "saturate.", {"effective": b.effective, "final_clamp": final})
    return None


@quirk_rule("Q14", "checkpoint",
            inputs="checkpoint buffers",
            fires="0-d `bias_scale`, no `gaussian_weights`, or symmetric offsets for an even "
                  "window: the CMTTEST/bias generation (warning)")
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


@quirk_rule("Q15", ("checkpoint", "config"),
            inputs="config, checkpoint `bias_scale`",
            fires="decoder cross-attention is `PETRMultiheadFlashAttention` or mmcv "
                  "`MultiheadAttention`, so the bias never reaches attention (error; the message "
                  "adds whether `bias_scale` still equals its initial value or moved); without a "
                  "config: `bias_scale` exactly equal to its initial value in a trained "
                  "checkpoint (warning)")
def _q15(ctx: CheckpointContext) -> Finding | None:
    if not ctx.bias_path:
        return None
    cross = attention_types(getattr(ctx.cfg, "decoder_cross_attention", None))
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
            msg += f"; yet bias_scale moved from {b.init} to {fmt(b.raw)}, so the checkpoint and " \
                   "this config may come from different code"
        return Finding("Q15", "error", msg + ".", detail)
    if unchanged and not cross:
        return Finding("Q15", "warning", f"bias_scale is still exactly its initial {b.init} in a "
                       "trained checkpoint: the bias most likely never reached attention (no "
                       "gradient), so the run trained without it.", detail)
    return None


@quirk_rule("Q16", ("checkpoint", "config"),
            inputs="config",
            fires="AQR encoder attention is `PETRMultiheadFlashAttention` (LAM dropped: warning) "
                  "or the decoder self-attention is (DN mask lost: error)")
def _q16(ctx: CheckpointContext) -> Finding | None:
    if ctx.cfg is None or not ctx.aqr_enabled:
        return None
    parts, sev, detail = [], "info", {}
    if FLASH in attention_types(ctx.cfg.encoder_attention):
        parts.append("the AQR encoder uses PETRMultiheadFlashAttention, which drops the local "
                     "attention mask, so every query attends to all F tokens and window_sizes has "
                     "no effect")
        sev = "warning"
        detail["encoder"] = FLASH
    if FLASH in attention_types(ctx.cfg.decoder_self_attention):
        parts.append("the decoder self-attention is PETRMultiheadFlashAttention, so the DN "
                     "self-attention mask is lost (DN groups see each other and the matching "
                     "queries) and the bias is handed to self-attention too")
        sev = "error"
        detail["decoder_self"] = FLASH
    if not parts:
        return None
    return Finding("Q16", sev, "; ".join(parts) + ".", detail)


@quirk_rule("Q17", ("checkpoint", "config"),
            inputs="config, `meta['env_info']`",
            fires="cross-attention `PETRMultiheadAttention` with `fp16=True`: error on the run's "
                  "PyTorch >= 2, info on 1.x, warning when the version is unknown")
def _q17(ctx: CheckpointContext) -> Finding | None:
    if not ctx.bias_path or PETR_MHA not in attention_types(getattr(ctx.cfg, "decoder_cross_attention", None)):
        return None
    if not setting(ctx.cfg, "attention_bias_config", "fp16", True):
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


@quirk_rule("Q18", ("checkpoint", "config"),
            inputs="config",
            fires="size of the dense [B, Nq, F] bias and of its per-head expansion, with "
                  "`samples_per_gpu` from the config (info)")
def _q18(ctx: CheckpointContext) -> Finding | None:
    shapes = ctx.report.shapes
    if not ctx.bias_path or not shapes.bev or not shapes.pers or None in shapes.bev \
            or None in shapes.pers:
        return None
    f = shapes.bev[0] * shapes.bev[1] + math.prod(shapes.pers)
    b = ctx.parsed.get("data.samples_per_gpu") if ctx.parsed is not None else None
    b = b if isinstance(b, int) and b > 0 else 1
    heads = _cross_heads(ctx.parsed)
    nq = int(setting(ctx.cfg, None, "num_query", 900))
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


