"""Training logs the inspect-log tests build: mmcv text, mmcv JSON, mmengine, new-scheme prints.

Numbers of the baseline follow spec 10.2 (the run without AQR); the new-scheme attention-bias
print follows spec 5.3 line by line.
"""

from __future__ import annotations

import json
from pathlib import Path

from conftest import FIXTURES

FIXTURE_LOG = FIXTURES / "logs" / "AQRCMT800_320.log"

CLASSES = ("car", "truck", "bus", "trailer", "construction_vehicle", "pedestrian", "motorcycle",
           "bicycle", "traffic_cone", "barrier")
BASELINE_AP = dict(zip(CLASSES, (0.859, 0.609, 0.735, 0.423, 0.301, 0.840, 0.729, 0.641, 0.727,
                                 0.711)))
BASELINE_METRICS = {"mAP": 0.6575, "NDS": 0.6908, "mATE": 0.3353, "mASE": 0.2493,
                    "mAOE": 0.3339, "mAVE": 0.2715, "mAAE": 0.1899}


def _stamp(i: int) -> str:
    return f"2025-10-11 0{1 + i // 3600 % 9}:{i // 60 % 60:02d}:{i % 60:02d},123"


def mmcv_line(msg: str, i: int = 0) -> str:
    return f"{_stamp(i)} - mmdet - INFO - {msg}"


def val_fields(metrics: dict, ap: dict, prefix: str = "pts_bbox_NuScenes/") -> list[tuple[str, float]]:
    """Per-class AP_dist values whose mean is ``ap[cls]`` (spread +-0.1, +-0.05), then metrics."""
    out = []
    for cls, a in ap.items():
        for d, off in zip(("0.5", "1.0", "2.0", "4.0"), (-0.1, -0.05, 0.05, 0.1)):
            out.append((f"{prefix}{cls}_AP_dist_{d}", round(a + off, 4)))
        out.append((f"{prefix}{cls}_trans_err", 0.2))
        out.append((f"{prefix}{cls}_vel_err", float("nan") if cls == "barrier" else 0.3))
    out += [(f"{prefix}{k}", v) for k, v in metrics.items() if k not in ("mAP", "NDS")]
    out += [(f"{prefix}NDS", metrics["NDS"]), (f"{prefix}mAP", metrics["mAP"])]
    return out


def _fmt(v: float) -> str:
    return "nan" if v != v else f"{v:.4f}"


def baseline_text_log(records: int = 20, per_epoch: int = 4004, time: float = 0.647,
                      memory: int = 21587) -> str:
    """An mmcv 1.x text log of a run without AQR: header, tiny config, records, one val line."""
    lines = ["WARNING:torch.distributed.run:--use_env is deprecated",
             mmcv_line("Environment info:"), "-" * 60, "PyTorch: 1.9.0+cu111",
             "GPU 0,1,2,3,4,5,6,7: NVIDIA A100-PCIE-40GB", "MMCV: 1.6.0", "MMDetection: 2.24.0",
             "MMDetection3D: 1.0.0rc5+", "-" * 60, "", mmcv_line("Config:"),
             "model = dict(pts_bbox_head=dict(type='CmtHead', num_query=900, enable_aqr=False))",
             "work_dir = './work_dirs/cmt_voxel0100_r50_800x320_cbgs'", "",
             mmcv_line("Set random seed to 0, deterministic: False"), mmcv_line("Model:"),
             "CmtHead(", "  (transformer): CmtTransformer()", ")",
             mmcv_line("workflow: [('train', 1)], max: 1 epochs")]
    for k in range(records):
        it = (k + 1) * 200
        loss = 9.927 + 0.01 * (records - 1 - k)
        lines.append(mmcv_line(
            f"Epoch [1][{it}/{per_epoch}]\tlr: 1.000e-06, eta: 0:40:00, time: {time:.3f}, "
            f"data_time: 0.030, memory: {memory}, loss_cls: 0.0856, loss_bbox: 0.5839, "
            f"d0.loss_cls: 0.1000, dn_loss_cls: 0.3645, dn_loss_bbox: 0.5091, loss: {loss:.4f}, "
            f"grad_norm: 30.0000", k + 1))
    lines.append(mmcv_line("Exp name: cmt_voxel0100_r50_800x320_cbgs.py", 500))
    lines.append(mmcv_line("Epoch(val) [1][753]\t" + ", ".join(
        f"{k}: {_fmt(v)}" for k, v in val_fields(BASELINE_METRICS, BASELINE_AP)), 501))
    return "\n".join(lines) + "\n"


def json_log(records: int = 6) -> str:
    """An mmcv JSON log: header object, train lines (first grad_norm NaN), one val line."""
    rows = [json.dumps({"env_info": "sys.platform: linux\nPyTorch: 1.9.0+cu111\nMMCV: 1.6.0",
                        "config": "model = dict(pts_bbox_head=dict(enable_aqr=False))\n",
                        "seed": 0, "exp_name": "cmt_json.py"})]
    for k in range(records):
        rows.append(json.dumps({
            "mode": "train", "epoch": 1, "iter": (k + 1) * 50, "lr": 1e-6, "memory": 21000 + k,
            "data_time": 0.05, "loss_cls": 0.2 - 0.01 * k, "loss_bbox": 1.0, "loss": 12.0 - k,
            "grad_norm": float("nan") if k == 0 else 40.0 + k, "time": 0.7 + 0.01 * k}))
    val = {"mode": "val", "epoch": 1, "iter": 753, "lr": 1e-6}
    val.update(val_fields(BASELINE_METRICS, BASELINE_AP))
    rows.append(json.dumps(val))
    return "\n".join(rows) + "\n"


def mmengine_log(records: int = 5) -> str:
    """mmengine-style records (``Epoch(train)  [1][  50/4004]``, double-space separated)."""
    lines = ["10/12 02:26:35 - mmengine - WARNING - a warning without a date the parser ignores"]
    for k in range(records):
        it = (k + 1) * 50
        lines.append(
            f"2025/10/12 02:{29 + k}:02 - mmengine - INFO - Epoch(train)  [1][{it:>4}/4004]  "
            f"base_lr: 1.0000e-04 lr: 1.4290e-06  eta: 2:40:54  time: {1.9 + 0.01 * k:.4f}  "
            f"data_time: 0.1530  memory: {22547 + k}  grad_norm: {'nan' if k == 0 else '41.0'}  "
            f"loss: {18.4 - k:.4f}  loss_cls: 0.1936  loss_bbox: 1.0405")
    lines.append("2025/10/12 04:40:00 - mmengine - INFO - Epoch(val)  [1][ 50/753]    eta: 0:01:00  "
                 "time: 0.5000  data_time: 0.0100  memory: 1200")
    pre = "NuScenes metric/pred_instances_3d_NuScenes/"
    lines.append("2025/10/12 04:46:36 - mmengine - INFO - Epoch(val) [1][753/753]    " + "  ".join(
        f"{k}: {_fmt(v)}" for k, v in val_fields(BASELINE_METRICS, BASELINE_AP, prefix=pre))
        + "  data_time: 0.0100  time: 0.5000")
    return "\n".join(lines) + "\n"


def bias_monitor_block(it: int, scale: float = 2.5, lidar=(0.1234, 0.4567, -0.9, 0.95),
                       camera=(0.2, 0.3, -0.8, 0.9), prefer_lidar: float = 45.0) -> str:
    """The spec 5.3 print of ``AttentionBiasGenerator`` (learnable scale, gradient present)."""
    return "\n".join([
        "", "=" * 70,
        f"\U0001f4ca [AttentionBias] Monitoring Report (Iter {it}):",
        f"   \U0001f527 Learnable Bias Scale: {scale:.4f} (range: [0.5, 5.0])",
        "      \U0001f4c9 Gradient: +0.00001234",
        "      \U0001f50d requires_grad: True",
        "   \U0001f4c8 Bias Statistics:",
        "      Overall  - Mean: +0.0012, Std: 0.0345",
        "                 Range: [-2.5000, +2.5000]",
        "      BEV      - Mean: +0.0010, Std: 0.0300",
        "      Camera   - Mean: +0.0015, Std: 0.0400",
        "      Distribution:",
        "         Positive: 0.6% | Negative: 99.4%",
        "         Strong+ (>+2): 0.10% | Strong- (<-2): 0.05%",
        "         Near-zero (|bias|<0.1): 99.2%",
        "   \U0001f4ca Input Weights (from AQR):",
        f"      LiDAR    - Mean: {lidar[0]:+.4f}, Std: {lidar[1]:.4f}",
        f"                 Range: [{lidar[2]:+.4f}, {lidar[3]:+.4f}]",
        f"      Camera   - Mean: {camera[0]:+.4f}, Std: {camera[1]:.4f}",
        f"                 Range: [{camera[2]:+.4f}, {camera[3]:+.4f}]",
        "      Modality Preference (per query):",
        f"         Prefer LiDAR: {prefer_lidar:.1f}% (lidar_w > camera_w)",
        f"         Prefer Camera: {100 - prefer_lidar - 5:.1f}% (camera_w > lidar_w)",
        "         Balanced: 30.0% (|diff| < 0.2)",
        "=" * 70, ""])


def head_bias_block(it: int) -> str:
    """``CmtHead``'s ``AQR Attention Bias Debug (Iteration N)`` print (spec 5.3, last paragraph)."""
    return "\n".join([
        f"\n\U0001f525 AQR Attention Bias Debug (Iteration {it}):",
        "   LiDAR Weights: mean=0.1234, std=0.4567, min=-0.9000, max=0.9500",
        "   Camera Weights: mean=0.2000, std=0.3000, min=-0.8000, max=0.9000",
        "   Attention Bias: mean=0.0012, std=0.0345, min=-2.5000, max=2.5000", ""])


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    p = tmp_path / name
    if isinstance(text, str):
        p.write_text(text, encoding="utf-8")
    else:
        p.write_bytes(text)
    return p
