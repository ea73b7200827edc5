"""``inspect-checkpoint`` of one checkpoint: the :class:`CheckpointReport` of an opened file."""

from __future__ import annotations

import os

from aqr_cli.analysis.findings import CheckpointContext, checkpoint_findings, torch_version_from_env
from aqr_cli.analysis.inspection.components import components, enable_check
from aqr_cli.analysis.inspection.projection import reference_points_report
from aqr_cli.analysis.inspection.reports import CheckpointReport, meta_dict
from aqr_cli.analysis.inspection.tensors import bias_scale_report, nonfinite_report, weight_head_report
from aqr_cli.core.geometry import CameraRig
from aqr_cli.io.rig import default_rig, load_rig
from aqr_cli.inputs.opened import OpenedCheckpoint, Source, open_checkpoint


def _rig(rig: CameraRig | str | os.PathLike | None) -> tuple[CameraRig, str]:
    if rig is None:
        return default_rig(), "default"
    if isinstance(rig, CameraRig):
        return rig, "given"
    return load_rig(rig), os.fspath(rig)


def inspect_checkpoint(opened: OpenedCheckpoint | Source, *,
                       rig: CameraRig | str | os.PathLike | None = None,
                       config_path: str | os.PathLike | None = None) -> CheckpointReport:
    """Inspect one checkpoint: components, shapes vs config, bias scale, weight head, reference
    points under ``rig`` (default: the packaged 800x320 rig), NaN/Inf and the quirk findings.

    ``opened`` is an :class:`OpenedCheckpoint` (its settings and checks are used as they are);
    a path or loaded file is opened here with ``config_path`` (parsed, never executed) in place
    of ``meta['config']``. Raises :class:`LoadError` for unreadable files and
    :class:`ShapeMismatchError` when the config does not describe the tensors.
    """
    ck = opened if isinstance(opened, OpenedCheckpoint) else open_checkpoint(opened, config_path)
    lf, settings, cfg = ck.file, ck.settings, ck.settings.config
    rig_obj, rig_label = _rig(rig)
    notes = list(lf.notes) + list(settings.notes)
    sd = lf.state_dict
    comps = components(sd, ck.prefix, cfg)
    checks = list(ck.checks)
    enable_check(comps, cfg, checks)
    pre = ck.prefix or ""
    if not any(c.evidence == "state_dict" for c in comps.values()):
        notes.append("no AQR component keys: a baseline (enable_aqr=False) or non-CMT checkpoint")
    if cfg is None:
        notes.append("no config (neither meta['config'] nor --config): shapes are read from the "
                     "tensors and bias_scale settings are the upstream defaults")
    report = CheckpointReport(
        path=os.fspath(lf.path), name=lf.name, format=lf.format, size_bytes=lf.size_bytes,
        container=lf.container, mmapped=lf.mmapped, trusted=lf.trusted,
        has_optimizer=lf.has_optimizer, meta=meta_dict(lf), num_tensors=len(sd),
        head_prefix=ck.prefix, config_source=settings.source, config=cfg, components=comps,
        shapes=ck.shapes, checks=checks, bias_scale=bias_scale_report(sd, pre, cfg),
        weight_head=weight_head_report(sd, pre),
        reference_points=reference_points_report(sd, pre, cfg, ck.shapes, rig_obj, rig_label),
        nonfinite=nonfinite_report(sd), notes=notes, inert_records=list(lf.records))
    if report.reference_points is not None and report.reference_points.error:
        notes.append(f"reference points: {report.reference_points.error}")
    ctx = CheckpointContext(report, cfg, settings.parsed, sd, pre,
                            torch_version_from_env(lf.meta.raw.get("env_info")))
    report.findings = _with_bias_health(checkpoint_findings(ctx), report)
    return report


def _with_bias_health(findings: list, report) -> list:
    """The quirk findings plus the bias-health ones (README "Reading bands"), by severity."""
    from aqr_cli.analysis.findings import Finding, sort_findings
    from aqr_cli.analysis.health import scale_health

    b, m = report.bias_scale, report.meta
    if b is None:
        return findings
    trained = bool(m.get("epoch") or m.get("iter"))
    extra = [Finding(**f) for f in scale_health(b.effective, raw=b.raw, learnable=b.learnable,
                                                  min_scale=b.min, max_scale=b.max, init=b.init,
                                                  trained=trained)]
    return sort_findings(findings + extra)
