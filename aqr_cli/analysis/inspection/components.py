"""Which AQR submodules a checkpoint (or a config alone) holds, and their role at HEAD."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aqr_cli.analysis.inspection.reports import ComponentReport
from aqr_cli.inputs.checks import COMPONENTS, Check, decisive, sourced
from aqr_cli.io.config_parse import AQRConfig

USED_AT_HEAD = {"aqr_weight_generator": True, "weight_renderer": False, "feature_modulator": False,
                "attention_bias_generator": True}
_BUFFERS = ("gaussian_kernel", "y_offsets", "x_offsets", "window_offsets_bev",
            "window_offsets_pers", "gaussian_weights", "running_mean", "running_var",
            "num_batches_tracked")


def _is_buffer(key: str, learnable_scale: bool) -> bool:
    if key.endswith("bias_scale"):
        return not learnable_scale
    return key.rsplit(".", 1)[-1] in _BUFFERS


def components(sd: Mapping[str, Any], prefix: str | None, cfg: AQRConfig | None
               ) -> dict[str, ComponentReport]:
    """One :class:`ComponentReport` per AQR submodule: from the state dict's keys, plus the
    parameter-free ones the config builds; the old-scheme pair is marked legacy beside the bias."""
    learnable = sourced(cfg, "attention_bias_config", "learnable_scale")
    learn = True if learnable is None or learnable.value is None else bool(learnable.value)
    out: dict[str, ComponentReport] = {}
    for comp in COMPONENTS:
        pre = f"{prefix or ''}{comp}."
        keys = [k for k in sd if k.startswith(pre)]
        params = sum(int(sd[k].numel()) for k in keys if not _is_buffer(k, learn))
        buffers = sum(int(sd[k].numel()) for k in keys if _is_buffer(k, learn))
        out[comp] = ComponentReport(comp, bool(keys), "state_dict" if keys else "absent", params,
                                    buffers, keys, USED_AT_HEAD[comp], False)
    _add_config_built(out, cfg)
    if out["attention_bias_generator"].present:
        for comp in ("weight_renderer", "feature_modulator"):
            if out[comp].present:
                out[comp].legacy = True
                out[comp].note = ("legacy: unused at HEAD (the head takes the bias path)"
                                  + (f"; {out[comp].note}" if out[comp].note else ""))
    return out


def _add_config_built(out: dict[str, ComponentReport], cfg: AQRConfig | None) -> None:
    """Mark the submodules ``CmtHead`` builds per config without any state (renderer, modulator)."""
    enable = sourced(cfg, None, "enable_aqr")
    if not (any(c.present for c in out.values()) and cfg is not None and enable is not None
            and enable.value):
        return
    simple = sourced(cfg, None, "use_simple_modulation")
    builds = {"feature_modulator": not (simple and simple.value), "weight_renderer": True}
    for comp, built in builds.items():
        if built and not out[comp].present:
            out[comp].present, out[comp].evidence = True, "config"
            out[comp].note = "built per config, holds no parameters or buffers"


def enable_check(comps: dict[str, ComponentReport], cfg: AQRConfig | None, checks: list[Check]) -> None:
    """Append the ``enable_aqr`` check: AQR keys in the file against the config's switch."""
    enable = sourced(cfg, None, "enable_aqr")
    has = any(c.evidence == "state_dict" for c in comps.values())
    if enable is not None and decisive(enable):
        ok = bool(enable.value) == has
        checks.append(Check("enable_aqr", "ok" if ok else "mismatch",
                            f"AQR keys {'present' if has else 'absent'}, enable_aqr={enable.value}"))
