"""``inspect-checkpoint`` of one upstream debug dump: the :class:`DumpReport` of an opened dump."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from aqr_cli.analysis.findings import dump_findings
from aqr_cli.analysis.inspection.projection import DEFAULT_PC_RANGE, projector
from aqr_cli.analysis.inspection.reports import DumpReport
from aqr_cli.analysis.inspection.tensors import nonfinite_report
from aqr_cli.analysis.objects import weights_by_query_group
from aqr_cli.analysis.stats import map_stats, split_dn, weight_stats
from aqr_cli.core.errors import AQRInputError, QuirkWarning
from aqr_cli.inputs.checks import Check, check_dump_shapes, sourced, tensor_at
from aqr_cli.inputs.opened import OpenedCheckpoint, OpenedDump, Source, open_checkpoint, open_dump
from aqr_cli.inputs.settings import read_config
from aqr_cli.io.config_parse import AQRConfig
from aqr_cli.io.placeholders import DataContainer


def _dump_config(ck: OpenedCheckpoint | None, config_path: str | os.PathLike | None
                 ) -> tuple[AQRConfig | None, dict | None, list[str]]:
    """The config a dump is read with: ``config_path``, else the checkpoint's (its settings)."""
    if config_path is not None or ck is None:
        cfg, _, source, notes, _ = read_config(None if ck is None else ck.file, config_path)
        return cfg, source, notes
    source = ck.settings.source
    if source is not None and source["kind"] == "meta":
        source = {"kind": "meta", "label": f"{ck.name}:meta['config']"}
    return ck.settings.config, source, list(ck.settings.notes)


def _describe_value(v: Any) -> dict[str, Any]:
    if isinstance(v, torch.Tensor):
        return {"type": "tensor", "shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")}
    if isinstance(v, np.ndarray):
        return {"type": "ndarray", "shape": list(v.shape), "dtype": str(v.dtype)}
    if isinstance(v, (list, tuple)):
        return {"type": type(v).__name__, "len": len(v)}
    if isinstance(v, Mapping):
        return {"type": "dict", "len": len(v)}
    if isinstance(v, (bool, int, float)) or v is None:
        return {"type": type(v).__name__, "value": v}
    return {"type": type(v).__name__}


def _dump_metas(od: OpenedDump) -> tuple[dict, list[dict]]:
    dump = od.dump
    metas = [m for m in dump.img_metas if isinstance(m, Mapping)]
    shapes = set()
    for m in metas:
        img_shape = m.get("img_shape")
        for s in (img_shape if isinstance(img_shape, (list, tuple)) else []):
            if isinstance(s, (list, tuple)) and len(s) >= 2 and all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in s[:2]):
                shapes.add((int(s[0]), int(s[1])))
    summary = {
        "count": len(dump.img_metas),
        "keys": list(metas[0].keys()) if metas else [],
        "img_shapes": [list(s) for s in sorted(shapes)],
        "has_lidar2img": bool(metas) and all("lidar2img" in m for m in metas),
        "box_mode": [m.name if m is not None else None for m in dump.box_mode],
    }
    return summary, metas


def _gt_boxes(od: OpenedDump) -> dict:
    dump, raw = od.dump, od.file.raw
    raw_metas = raw.get("img_metas") if isinstance(raw, Mapping) else None
    raw_metas = raw_metas if isinstance(raw_metas, (list, tuple)) else []
    in_dc = any(isinstance(m, Mapping) and isinstance(m.get("gt_bboxes_3d"), DataContainer)
                for m in raw_metas)
    per = [None if b is None else int(b.shape[0]) for b in dump.gt_boxes]
    present = any(p is not None for p in per)
    labels = [None if lab is None else [int(x) for x in lab.reshape(-1)] for lab in dump.gt_labels]
    return {"present": present, "count": sum(p for p in per if p) if present else 0,
            "per_sample": per, "labels": labels, "in_data_container": in_dc}


def _dump_shapes(tensors: Mapping[str, Any]) -> tuple[dict, int, int]:
    """Shapes of a dump and its (B, Nq); their consistency was checked when the file was loaded
    (:mod:`aqr_cli.io.validate`, the same verdict for every command)."""
    lw = tensors["lidar_weights"]
    b, nq = int(lw.shape[0]), int(lw.shape[1])
    shapes: dict[str, Any] = {"bev": None, "pers": None, "aqr_window_sizes": None,
                              "bias_window": None, "source": "dump"}
    mb, mp = tensors.get("weight_map_bev"), tensors.get("weight_map_pers")
    if mb is not None:
        shapes["bev"] = [int(mb.shape[1]), int(mb.shape[2])]
    if mp is not None:
        shapes["pers"] = [int(s) for s in mp.shape[1:]]
    return shapes, b, nq


def _sentinel(od: OpenedDump, metas: list[dict], shapes: dict, b: int, nq: int,
              ckpt: OpenedCheckpoint | None, ckpt_cfg: AQRConfig | None, notes: list[str]) -> dict:
    """Q3 for a dump: the exact count needs the checkpoint's reference points (not in dumps)."""
    mp = od.tensors.get("weight_map_pers")
    cell = [float(mp[i, 0, 0, 0]) for i in range(b)] if mp is not None and mp.numel() else None
    out: dict[str, Any] = {"decidable": False, "count": None, "total": None, "per_sample": None,
                           "checkpoint": None, "matches_dump": None, "cell_value": cell,
                           "reason": "the dump holds no pts_pers or reference points; pass "
                                     "--checkpoint with the run's checkpoint to count them"}
    if ckpt is None:
        return out
    out["checkpoint"] = ckpt.name
    pre = ckpt.prefix or ""
    ref = tensor_at(ckpt.state_dict, pre + "reference_points.weight")
    if ref is None or ref.dim() != 2 or ref.shape[1] != 3:
        out["reason"] = f"{ckpt.name} holds no reference_points.weight [N, 3]"
        return out
    if nq < ref.shape[0] or not metas or len(metas) != b or shapes["bev"] is None \
            or shapes["pers"] is None:
        out["reason"] = "the dump's queries, img_metas or maps do not fit the reference points"
        return out
    pc_item = sourced(ckpt_cfg, None, "pc_range")
    pc = list(pc_item.value) if pc_item is not None and isinstance(pc_item.value, (list, tuple)) \
        else list(DEFAULT_PC_RANGE)
    refs = ref.detach().float()[None].expand(b, -1, -1).contiguous()
    try:
        gen = projector(pc, shapes["bev"], shapes["pers"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", QuirkWarning)
            pts_bev = gen.project_3d_to_features(refs, metas)[0]
            view = gen.first_valid_view(refs, metas)
    except AQRInputError as e:
        out["reason"] = f"projection with the dump's img_metas failed: {e}"
        return out
    n = int(ref.shape[0])
    dump_bev = od.tensors.get("pts_bev")
    match = None if dump_bev is None else bool(torch.equal(dump_bev[:, nq - n:].float(), pts_bev))
    if match is False:
        notes.append(f"the reference points of {ckpt.name} do not reproduce this dump's pts_bev: "
                     "the Q3 count is for that checkpoint, not necessarily for this dump")
    per = [int((view[i] == -1).sum()) for i in range(b)]
    out.update(decidable=True, count=sum(per), total=n * b, per_sample=per, matches_dump=match,
               reason=None)
    return out


def inspect_dump(opened: OpenedDump | Source, *,
                 checkpoint: OpenedCheckpoint | Source | None = None,
                 config_path: str | os.PathLike | None = None) -> DumpReport:
    """Inspect one upstream debug dump: contents, iteration, queries and DN share (Q19), weight
    and map statistics, GT boxes, and the dump quirks (Q1, Q2, Q3 with ``checkpoint``, Q4, Q19,
    Q28, Q29, Q38).

    ``checkpoint`` supplies the reference points (for the exact Q3 count) and, unless
    ``config_path`` is given, the config (for ``num_query`` and the shape cross-check).
    """
    od = opened if isinstance(opened, OpenedDump) else open_dump(opened)
    lf = od.file
    ck = checkpoint
    if ck is not None and not isinstance(ck, OpenedCheckpoint):
        ck = open_checkpoint(ck)
    cfg, cfg_source, notes = _dump_config(ck, config_path)
    notes = list(lf.notes) + notes
    dump = od.dump
    shapes, b, nq = _dump_shapes(dump.tensors)
    checks: list[Check] = []
    check_dump_shapes(shapes, cfg, lf.path, checks)
    nq_item = sourced(cfg, None, "num_query")
    num_query = int(nq_item.value) if nq_item is not None and isinstance(nq_item.value, int) else 900
    queries = split_dn(nq, num_query)
    queries["num_query"] = num_query
    if nq < num_query:
        notes.append(f"{nq} queries per sample, fewer than num_query={num_query}")
    meta_summary, metas = _dump_metas(od)
    pb = dump.tensors.get("pts_bev")
    outside = 0
    if pb is not None and shapes["bev"] is not None:
        h, w = shapes["bev"]
        outside = int(((pb[..., 0] < 0) | (pb[..., 0] >= h) | (pb[..., 1] < 0) | (pb[..., 1] >= w)).sum())
    weights = {"lidar": weight_stats(dump.tensors["lidar_weights"]),
               "camera": weight_stats(dump.tensors["camera_weights"]),
               "by_query_group": weights_by_query_group(dump.tensors["lidar_weights"].float(),
                                                        dump.tensors["camera_weights"].float(),
                                                        num_query)}
    maps = {}
    if "weight_map_bev" in dump.tensors:
        maps["bev"] = map_stats(dump.tensors["weight_map_bev"], dump.tensors["lidar_weights"])
    if "weight_map_pers" in dump.tensors:
        maps["pers"] = map_stats(dump.tensors["weight_map_pers"], dump.tensors["camera_weights"])
    contents = [{"key": str(k), **_describe_value(v)}
                for k, v in (lf.raw.items() if isinstance(lf.raw, Mapping) else [])]
    report = DumpReport(
        path=os.fspath(lf.path), name=lf.name, format=lf.format, size_bytes=lf.size_bytes,
        container=lf.container, trusted=lf.trusted, iteration=dump.iteration, contents=contents,
        batch_size=b, queries=queries, shapes=shapes, weights=weights, maps=maps,
        gt_boxes=_gt_boxes(od),
        sentinel=_sentinel(od, metas, shapes, b, nq, ck, cfg, notes),
        img_metas=meta_summary, bev_outside_grid=outside, config_source=cfg_source, config=cfg,
        nonfinite=nonfinite_report(dump.tensors), checks=checks, notes=notes,
        inert_records=list(lf.records))
    report.findings = dump_findings(report)
    return report
