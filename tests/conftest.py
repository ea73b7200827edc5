"""Shared test fixtures: the upstream golden data in ../shared/fixtures (always present)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("AQR_FIXTURES", ROOT.parent / "shared" / "fixtures"))
GOLDEN = FIXTURES / "golden_800x320.npz"
CHECKPOINT = FIXTURES / "cmt_aqr_800x320_head.pth"
DUMP = FIXTURES / "weights_iter_100.pth"
DUMP_TRAIN = FIXTURES / "weights_iter_200_train.pth"
RIG = FIXTURES / "camera_rig_800x320.json"


def pytest_sessionstart(session):
    if not GOLDEN.exists():
        raise pytest.UsageError(f"golden fixtures not found at {FIXTURES} (set AQR_FIXTURES)")


@pytest.fixture(scope="session")
def golden():
    """The golden npz as a dict of numpy arrays."""
    with np.load(GOLDEN) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="session")
def head_state_dict():
    """``pts_bbox_head.*`` state_dict of the fixture checkpoint, prefix removed."""
    import torch

    ckpt = torch.load(CHECKPOINT, map_location="cpu", weights_only=True)
    pre = "pts_bbox_head."
    return {k[len(pre):]: v for k, v in ckpt["state_dict"].items() if k.startswith(pre)}
