"""A log's printed config through the quirk rules of ``inspect-checkpoint``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aqr_cli.analysis.findings import Finding
from aqr_cli.logs.records import ConfigText

def config_quirks(text: ConfigText | None, parts: list[str] | None, name: str):
    """(AQRConfig, quirk findings, notes, ParsedConfig) of the printed config, or Nones.

    The quirk rules are those of ``inspect-checkpoint`` (:func:`checkpoint_findings`) on a
    context with no tensors: components come from the printed model (``Model:``), else from the
    config, so rules that need tensors stay silent.
    """
    if text is None:
        return None, [], [], None
    from aqr_cli.io.config_parse import extract_aqr_config, parse_config_text
    from aqr_cli.io.errors import ConfigParseError

    notes = []
    if text.truncated:
        notes.append("the printed config is longer than 4 MB: only its start was read")
    try:
        parsed = parse_config_text(text.text, label=f"{name}:Config")
    except ConfigParseError as e:
        return None, [], [f"the printed config could not be parsed ({e.reason}); config quirks "
                          "not checked"], None
    cfg = extract_aqr_config(parsed)
    for key, why in cfg.unparsed.items():
        notes.append(f"config: {key} not parsed ({why})")
    try:
        findings = _config_findings(cfg, parsed, parts)
    except Exception as e:  # noqa: BLE001 - a rule failing on an odd config must not sink the log
        notes.append(f"config quirk rules failed ({type(e).__name__}: {e}); none reported")
        findings = []
    return cfg, findings, notes, parsed


def _config_findings(cfg, parsed, parts: list[str] | None) -> list[Finding]:
    from aqr_cli.analysis.inspection.components import components
    from aqr_cli.analysis.inspection.reports import NonFiniteReport
    from aqr_cli.inputs.checks import shapes_and_checks
    from aqr_cli.analysis.findings import CheckpointContext, checkpoint_findings

    comps = components({}, None, cfg)
    for name in parts or ():
        if name in comps and not comps[name].present:
            comps[name].present, comps[name].evidence = True, "config"
            comps[name].note = "named in the printed model"
    shapes, _ = shapes_and_checks({}, None, cfg)
    report = _ConfigOnlyReport(components=comps, shapes=shapes,
                               nonfinite=NonFiniteReport(scanned=0, bad=[]))
    return checkpoint_findings(CheckpointContext(report, cfg, parsed, {}, ""))


@dataclass
class _ConfigOnlyReport:
    """The parts of a ``CheckpointReport`` the quirk rules read, for a log (no tensors)."""

    components: dict
    shapes: Any
    bias_scale: Any = None
    weight_head: Any = None
    reference_points: Any = None
    meta: dict = field(default_factory=dict)
    nonfinite: Any = None


