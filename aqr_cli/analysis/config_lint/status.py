"""Whether AQR ends up on, off or half-configured after mmcv's merge, naming the lines
involved (a later ``model = dict(...)`` replacing the block that set it, ``_delete_=True``
dicts, AQR blocks configured while ``enable_aqr`` is off)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from aqr_cli.analysis.findings import Finding
from aqr_cli.io import AQRConfig
from aqr_cli.io.config_origins import OriginIndex, Replaced
from aqr_cli.io.config_parse import AQR_COMPONENTS

HEAD = "model.pts_bbox_head"


@dataclass
class AQRStatus:
    """Whether AQR ends up on after the merge, and whether that is what the files say.

    ``state``: ``'on'``, ``'off'``, ``'half'`` (enabled with parts left to defaults or settings
    discarded) or ``'unknown'`` (the model settings were not fully read). ``ok`` is False when
    the merged result contradicts what a file sets. ``lines``: ``file:line: what`` of each line
    involved.
    """

    state: str
    ok: bool
    message: str
    lines: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "ok": self.ok, "message": self.message,
                "lines": list(self.lines)}


def enabled(cfg: AQRConfig) -> bool:
    """``enable_aqr`` is True after the merge."""
    return cfg.head["enable_aqr"].value is True


def _where(origin_file: str | None, line: int | None) -> str:
    """``name.py:line`` (the base name: messages stay readable in JSON and on a terminal)."""
    if origin_file is None:
        return "?"
    return f"{os.path.basename(origin_file)}:{'?' if line is None else line}"


def _aqr_key(path: str) -> str | None:
    """The AQR head key (``enable_aqr``, ``aqr_config`` ...) a dotted path lies under, if any."""
    parts = path.split(".")
    if parts[:2] != ["model", "pts_bbox_head"]:
        return None
    if len(parts) == 2:
        return "pts_bbox_head"
    key = parts[2]
    return key if key in ("enable_aqr", "use_simple_modulation", "debug_mode",
                          "visualization_interval") + AQR_COMPONENTS else None


def _lost_aqr(index: OriginIndex) -> list[tuple[str, Any, dict[str, Any]]]:
    """(how, record, {aqr key: origin}) for each discarded assignment that held AQR settings."""
    out = []
    for rec in list(index.replaced) + list(index.deleted):
        keys: dict[str, Any] = {}
        for path, origin in rec.lost.items():
            k = _aqr_key(path)
            if k is not None and k not in keys:
                keys[k] = rec.origin_of(f"{HEAD}.{k}") or origin
        if keys:
            out.append(("replaced" if isinstance(rec, Replaced) else "deleted", rec, keys))
    return out


def _discard_text(how: str, rec, keys: dict[str, Any]) -> tuple[str, list[str]]:
    names = ", ".join(keys)
    lines = [f"{_where(o.file, o.line)}: {k}"
             + (f"={o.value!r}" if o.value is not None else "") + " (discarded)"
             for k, o in keys.items()]
    if how == "replaced":
        f = _where(rec.file, rec.line)
        by = _where(rec.file, rec.by_line)
        lines.append(f"{by}: `{rec.name} = ...` replaces the one at {f}")
        return (f"{names} set in the `{rec.name} = dict(...)` at {f} are discarded, because the "
                f"`{rec.name} = dict(...)` at {by} replaces it (mmcv keeps only the last "
                "assignment of a name in a file)"), lines
    at = _where(rec.origin.file, rec.origin.line)
    lines.append(f"{at}: {rec.path} with _delete_=True")
    return (f"{names} set in a _base_ are discarded, because {rec.path} at {at} has "
            "_delete_=True and does not set them again"), lines


@dataclass
class _Merge:
    """What the merge did to AQR: how ``enable_aqr`` reads (``en_where``), the lines involved,
    the discarded AQR settings (text per discard, joined in ``lost_text``) and the AQR
    components some file configures."""

    en_where: str
    lines: list[str]
    discarded: list[tuple[str, list[str]]]
    lost_text: str
    configured: list[str]


def aqr_status(cfg: AQRConfig, index: OriginIndex, complete: bool) -> AQRStatus:
    """On, off, half or unknown, with the lines involved (README, section ``Linting a config``)."""
    unknown = _unknown_status(cfg, complete)
    if unknown is not None:
        return unknown
    merge = _merge(cfg, index)
    if enabled(cfg):
        return _enabled_status(merge)
    return _disabled_status(cfg, index, merge)


def _unknown_status(cfg: AQRConfig, complete: bool) -> AQRStatus | None:
    if "model" in cfg.unparsed or (not complete and not enabled(cfg)):
        why = cfg.unparsed.get("model") or "a _base_ file could not be read"
        return AQRStatus("unknown", False, f"the model settings were not read completely ({why}), "
                         "so whether AQR is on cannot be decided")
    if cfg.head_type.source not in ("file", "default") or cfg.head_type.value is None:
        return AQRStatus("unknown", parsed_ok(cfg), "model.pts_bbox_head is not set: not a CMT "
                         "detector config (e.g. a _base_ holding only data settings), or its "
                         "head comes from a _base_ that was not read")
    return None


def _merge(cfg: AQRConfig, index: OriginIndex) -> _Merge:
    enable = cfg.head["enable_aqr"]
    en_origin = index.lookup(enable.key) if enable.key else None
    en_where = (f"enable_aqr={enable.value!r} at {_where(en_origin.file, en_origin.line)}"
                if enable.source == "file" and en_origin is not None else
                f"enable_aqr={enable.value!r}" if enable.source == "file" else
                "enable_aqr not set (CmtHead default False)")
    lines = [f"{_where(en_origin.file, en_origin.line)}: enable_aqr={enable.value!r}"] \
        if en_origin is not None else []
    discarded = [_discard_text(how, rec, keys) for how, rec, keys in _lost_aqr(index)]
    for _, extra in discarded:
        lines += extra
    configured = [c for c in AQR_COMPONENTS
                  if any(v.source == "file" for v in getattr(cfg, c).values())]
    return _Merge(en_where, lines, discarded, "; ".join(t for t, _ in discarded), configured)


def _enabled_status(m: _Merge) -> AQRStatus:
    missing = [c for c in ("aqr_config", "attention_bias_config") if c not in m.configured]
    if not missing and not m.discarded:
        return AQRStatus("on", True, f"AQR is on ({m.en_where}); aqr_config and "
                         "attention_bias_config are set", m.lines)
    parts = []
    if missing:
        parts.append(f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not "
                     "set, so CmtHead fills them from its defaults (window 15, 180x180 / "
                     "6x40x100 maps; Q40, Q21)")
    if m.lost_text:
        parts.append(m.lost_text)
    return AQRStatus("half", False, f"AQR is half-configured: {m.en_where}, but "
                     + "; ".join(parts), m.lines)


def _disabled_status(cfg: AQRConfig, index: OriginIndex, m: _Merge) -> AQRStatus:
    lost_enable = any(keys.get("enable_aqr") is not None and keys["enable_aqr"].value is True
                      for _, _, keys in _lost_aqr(index))
    if lost_enable:
        return AQRStatus("off", False, f"AQR is OFF although a file turns it on: {m.lost_text}; "
                         f"the merged config has {m.en_where}", m.lines)
    if m.configured:
        lines = m.lines
        for c in m.configured:
            o = index.lookup(f"{HEAD}.{c}")
            if o is not None:
                lines.append(f"{_where(o.file, o.line)}: {c} (ignored)")
        return AQRStatus("off", False, f"AQR settings are configured ({', '.join(m.configured)}) "
                         f"but {m.en_where}: CmtHead builds no AQR component and ignores them"
                         + (f"; {m.lost_text}" if m.lost_text else ""), lines)
    if m.discarded:
        return AQRStatus("off", False, f"AQR is off ({m.en_where}); {m.lost_text}", m.lines)
    return AQRStatus("off", True, f"AQR is off ({m.en_where}): a baseline CMT config", m.lines)


def parsed_ok(cfg: AQRConfig) -> bool:
    """No AQR-relevant assignment was refused by the reader."""
    return "model" not in cfg.unparsed


def with_lost_settings(f: Finding, index: OriginIndex) -> Finding:
    """Q32 for a config file: name the settings the replaced assignment loses."""
    recs = [r for r in index.replaced if r.name == "model" and r.lost]
    if not recs:
        return f
    parts = []
    for r in recs:
        keys = list(dict.fromkeys(".".join(k.split(".")[1:3]) for k in r.lost))
        shown = ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")
        parts.append(f"the `model = dict(...)` at {_where(r.file, r.line)} is replaced by "
                     f"the one at {_where(r.file, r.by_line)}, losing {shown}")
    detail = dict(f.detail)
    detail["lost"] = {f"{r.file}:{r.line}": list(r.lost) for r in recs}
    return Finding(f.id, f.severity, "`model` is assigned more than once in one config file: "
                   + "; ".join(parts) + ". Only the last assignment survives, so those settings "
                   "are silently discarded.", detail)
