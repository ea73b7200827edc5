"""Checkpoint rules on how the head is built: the AQR encoder, unused embeddings, the legacy
renderer and modulator (old scheme), the head type and settings left to ``CmtHead`` defaults."""

from __future__ import annotations

from collections.abc import Mapping

from aqr_cli.analysis.findings.context import CheckpointContext, setting
from aqr_cli.analysis.findings.registry import Finding, quirk_rule


@quirk_rule("Q21", ("checkpoint", "config"),
            inputs="config",
            fires="`aqr_config` without `encoder_config` (the misspelt default does not build) or "
                  "an `encoder_config` without `transformerlayers` (error)")
def _q21(ctx: CheckpointContext) -> Finding | None:
    cfg = ctx.cfg
    if cfg is None or not setting(cfg, None, "enable_aqr", False):
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


@quirk_rule("Q22", "checkpoint",
            inputs="checkpoint keys",
            fires="`bev_type_embed` / `rv_type_embed` present: never used (info)")
def _q22(ctx: CheckpointContext) -> Finding | None:
    pre = ctx.prefix + "aqr_weight_generator."
    keys = [k for k in ("bev_type_embed", "rv_type_embed") if pre + k in ctx.state_dict]
    if not keys:
        return None
    norms = {k: float(ctx.state_dict[pre + k].float().norm()) for k in keys}
    return Finding("Q22", "info", f"{' and '.join(keys)} are in the checkpoint but never used in "
                   "forward: they keep random values, get no gradient and need "
                   "find_unused_parameters=True under DDP.", {"norms": norms})


@quirk_rule("Q23", ("checkpoint", "config"),
            inputs="config",
            fires="AQR encoder `ffn_drop != 0` in a `PETRTransformerDecoderLayer` (overridden to "
                  "0) (info)")
def _q23(ctx: CheckpointContext) -> Finding | None:
    cfg = ctx.cfg
    if cfg is None or not ctx.aqr_enabled:
        return None
    enc = setting(cfg, "aqr_config", "encoder_config")
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


@quirk_rule("Q24", "checkpoint",
            inputs="checkpoint `gaussian_kernel` + config",
            fires="renderer in use (no bias generator): peak of the sum-1 kernel and cells above "
                  "the threshold (info)")
def _q24(ctx: CheckpointContext) -> Finding | None:
    key = ctx.prefix + "weight_renderer.gaussian_kernel"
    if not _renderer_in_use(ctx) or key not in ctx.state_dict:
        return None
    k = ctx.state_dict[key].float()
    thr = float(setting(ctx.cfg, "renderer_config", "min_weight_threshold", 0.01))
    peak, cells = float(k.max()), int((k >= thr).sum())
    return Finding("Q24", "info", f"the renderer's Gaussian kernel sums to 1 (peak {peak:.3f}, "
                   f"{cells} cells >= {thr}): a lone weight-1 query adds at most {peak:.3f} to the "
                   "map, so large map values only appear where many queries overlap.",
                   {"peak": peak, "cells_above_threshold": cells})


@quirk_rule("Q25", "checkpoint",
            inputs="config",
            fires="renderer in use with `render_method` `bilinear` or `distance_weighted` "
                  "(warning)")
def _q25(ctx: CheckpointContext) -> Finding | None:
    method = setting(ctx.cfg, "renderer_config", "render_method")
    if not (ctx.component("weight_renderer").present and not ctx.bias_path) \
            or method not in ("bilinear", "distance_weighted"):
        return None
    return Finding("Q25", "warning", f"render_method='{method}' renders nothing on the camera "
                   "maps (all zeros)" + (" and deposits each query on one cell, skipping the last "
                   "row/column" if method == "bilinear" else " and saturates the BEV map with 900 "
                   "queries") + ": the camera modulation only keeps its residual.",
                   {"render_method": method})


@quirk_rule("Q26", "checkpoint",
            inputs="config",
            fires="renderer in use with `normalize_weights=True`, which only clamps (info)")
def _q26(ctx: CheckpointContext) -> Finding | None:
    if not _renderer_in_use(ctx) or not setting(ctx.cfg, "renderer_config", "normalize_weights", False):
        return None
    clamp = setting(ctx.cfg, "renderer_config", "max_weight_clamp", 1.5)
    return Finding("Q26", "info", f"renderer normalize_weights=True only clamps the maps to "
                   f"[0, {clamp}]: maps are not normalised, their scale follows query overlap.",
                   {"max_weight_clamp": clamp})


@quirk_rule("Q27", "checkpoint",
            inputs="config",
            fires="modulator in use with a residual connection: gain `m + r`, not the notes' "
                  "convex blend (info)")
def _q27(ctx: CheckpointContext) -> Finding | None:
    if ctx.bias_path or ctx.cfg is None or setting(ctx.cfg, None, "use_simple_modulation", False):
        return None
    if not setting(ctx.cfg, None, "enable_aqr", False):
        return None
    if not setting(ctx.cfg, "modulator_config", "residual_connection", True):
        return None
    r = float(setting(ctx.cfg, "modulator_config", "residual_weight", 0.1))
    top = float(setting(ctx.cfg, "renderer_config", "max_weight_clamp", 1.5))
    if setting(ctx.cfg, "modulator_config", "normalize_weights", True):
        top = 1.0
    return Finding("Q27", "info", f"the modulator computes f*(m + {r}), not the notes' convex "
                   f"blend: cells no query reaches are scaled by {r} and the largest gain is "
                   f"{top + r:.2f}x.", {"residual_weight": r, "max_gain": top + r})


@quirk_rule("Q35", ("checkpoint", "config"),
            inputs="config",
            fires="head type `CmtAQRHead` (error)")
def _q35(ctx: CheckpointContext) -> Finding | None:
    if ctx.cfg is None or ctx.cfg.head_type.value != "CmtAQRHead":
        return None
    return Finding("Q35", "error", "the head type is CmtAQRHead: it passes `type` into "
                   "AQRWeightGenerator (TypeError) and reshapes the camera memory wrongly, so this "
                   "config cannot have trained a working AQR head.")


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


@quirk_rule("Q40", ("checkpoint", "config"),
            inputs="config",
            fires="AQR constructor keys taken from `CmtHead` defaults (warning when a default "
                  "differs from both reference configs, e.g. `window_size` 15, σ 2.0, residual "
                  "0.1, `hidden_dim` 128; info otherwise)")
def _q40(ctx: CheckpointContext) -> Finding | None:
    cfg = ctx.cfg
    if cfg is None or not setting(cfg, None, "enable_aqr", False):
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


