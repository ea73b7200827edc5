"""Checkpoint rules on the training setup in the config file: ``model`` assigned twice, the
optimizer's ``custom_keys`` and validation infos among the training data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aqr_cli.analysis.findings.context import CheckpointContext
from aqr_cli.analysis.findings.registry import Finding, quirk_rule


@quirk_rule("Q32", ("checkpoint", "config"),
            inputs="`--config` file",
            fires="`model` assigned twice in one config file (warning); `meta['config']` is "
                  "already merged, so only `--config` can show it")
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


@quirk_rule("Q33", ("checkpoint", "config"),
            inputs="config `custom_keys` + checkpoint parameter names",
            fires="a custom key with another `lr_mult`/`decay_mult` loses to a longer, unrelated "
                  "key for some parameter (mmcv tries longer keys first); keys matching no "
                  "parameter when the checkpoint is a full detector (warning)")
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


@quirk_rule("Q34", ("checkpoint", "config"),
            inputs="config",
            fires="a val info file among the training `ann_file`s (warning)")
def _q34(ctx: CheckpointContext) -> Finding | None:
    if ctx.cfg is None or not ctx.cfg.val_in_train:
        return None
    return Finding("Q34", "warning", "the training ann_files include the validation infos ("
                   + ", ".join(ctx.cfg.val_ann_files) + "): a val evaluation of this model "
                   "measures performance on its own training data.",
                   {"train": list(ctx.cfg.train_ann_files), "val": list(ctx.cfg.val_ann_files)})


