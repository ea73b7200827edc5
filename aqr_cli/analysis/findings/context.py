"""What the checkpoint and config rules read: :class:`CheckpointContext` and config access."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

FLASH = "PETRMultiheadFlashAttention"
MMCV_MHA = "MultiheadAttention"
PETR_MHA = "PETRMultiheadAttention"
BIAS_DROPPING = (FLASH, MMCV_MHA, "FlashMHA")
"""Cross-attention types through which the attention bias never reaches the logits (5.5, 5.6)."""


@dataclass
class CheckpointContext:
    """Everything the checkpoint rules may read.

    ``report`` is the :class:`aqr_cli.analysis.inspection.reports.CheckpointReport` under construction
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
        return bool(setting(self.cfg, None, "enable_aqr", False))


def setting(cfg, component: str | None, key: str, default: Any = None) -> Any:
    """A config value (``component`` None = head-level ``cfg.head``) or ``default``."""
    if cfg is None:
        return default
    table = cfg.head if component is None else getattr(cfg, component)
    item = table.get(key)
    return default if item is None or item.value is None else item.value


def attention_types(sourced) -> list[str]:
    """Attention type(s) of an ``AQRConfig`` attention field as a list."""
    if sourced is None or sourced.value is None:
        return []
    v = sourced.value
    return [str(x) for x in (v if isinstance(v, (list, tuple)) else [v])]


def fmt(x: float, digits: int = 4) -> str:
    """``x`` with ``digits`` decimals, as the messages print numbers."""
    return f"{x:.{digits}f}"


def share(n: int, total: int) -> str:
    """``n of total (p%)``, or ``n`` without a total."""
    return f"{n} of {total} ({100.0 * n / total:.1f}%)" if total else str(n)


def torch_version_from_env(env_info: Any) -> tuple[int, int] | None:
    """(major, minor) of ``PyTorch: X.Y...`` in mmcv's ``env_info`` text, if present."""
    if not isinstance(env_info, str):
        return None
    m = re.search(r"^PyTorch:\s*(\d+)\.(\d+)", env_info, re.M)
    return (int(m.group(1)), int(m.group(2))) if m else None


