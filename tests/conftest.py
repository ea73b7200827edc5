"""Shared test fixtures: the upstream golden data in ../shared/fixtures (always present)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Each xdist worker already has a core of its own: one torch thread and no figure-saving
    # processes per worker (two workers each using two threads and forking two savers on two
    # cores made the suite 1.6x slower). The worker code is tested with explicit counts
    # (test_atomic.py) and through a command (test_render_cmd.py::test_same_input_same_bytes).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("AQR_FIGURE_WORKERS", "1")

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("AQR_FIXTURES", ROOT.parent / "shared" / "fixtures"))
GOLDEN = FIXTURES / "golden_800x320.npz"
CHECKPOINT = FIXTURES / "cmt_aqr_800x320_head.pth"
DUMP = FIXTURES / "weights_iter_100.pth"
DUMP_TRAIN = FIXTURES / "weights_iter_200_train.pth"
RIG = FIXTURES / "camera_rig_800x320.json"


# The modules that take longest (seconds of CPU, most first), handed to the xdist workers first
# (pyproject: --no-loadscope-reorder keeps this order; xdist would order by test count): with
# whole files per worker, a long module handed out last leaves the other core idle at the end.
LONG_FIRST = ("test_output_contract.py", "test_hostile_corpus.py", "test_views_notebook.py",
              "test_generator.py", "test_compare_cmd.py", "test_render_cmd.py", "test_bias.py",
              "test_objects_health.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: file order kept


def pytest_collection_finish(session):
    """Every test module is imported now (torch, matplotlib, the package: objects that live as
    long as the session). Freeze them out of the garbage collector, so that a full collection
    during the tests scans only what the tests made: in a serial run of the render, compare and
    hostile-corpus tests, full collections took 2.4 s of 36 s (about 100 ms each), and 1.3 s
    with the imports frozen."""
    import gc

    gc.collect()
    gc.freeze()


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


def _run_once_per_session(tmp_path_factory, name: str, args: list, prepare=None):
    """Run an ``aqr`` command once per test session, however many xdist workers ask for it.

    The first worker to ask runs it (under a file lock, in the session's common temporary
    folder) and records the result; the others wait for the lock and read it. Returns
    ``(result, folder)``: ``result`` has ``exit_code``, ``stdout``, ``stderr`` and ``output``
    like a CliRunner result; ``folder`` is the ``-o`` folder (tests must only read it).
    ``prepare(folder)`` fills the folder before the run (a rerun over earlier output).
    """
    import fcntl
    import json
    from types import SimpleNamespace

    from typer.testing import CliRunner

    import aqr_cli.cli.commands  # noqa: F401  (registers the commands)
    from aqr_cli.cli.app import app

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # shared by the workers of this session
    base = root / f"shared-{name}"
    out, record = base / "out", base / "result.json"
    with open(root / f"shared-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not record.exists():
            base.mkdir(exist_ok=True)
            if prepare is not None:
                prepare(out)
            res = CliRunner().invoke(app, [*map(str, args), "-o", str(out)], env={"COLUMNS": "80"})
            record.write_text(json.dumps({"exit_code": res.exit_code, "stdout": res.stdout,
                                          "stderr": res.stderr, "output": res.output}))
    return SimpleNamespace(**json.loads(record.read_text())), out


def user_files(folder: Path) -> None:
    """The user's own files in an output folder: ``notes.txt`` and ``sub/keep.txt``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.txt").write_text("mine")
    (folder / "sub").mkdir(exist_ok=True)
    (folder / "sub" / "keep.txt").write_text("mine too")


EARLIER_ONLY = "render_methods.png"  # what an earlier run with --method all also wrote


def add_earlier_only_file(out: Path) -> None:
    """Make ``out`` (an earlier output) look as if its run had also written ``EARLIER_ONLY``,
    a file the rerun does not write: listed in the manifest and on disk."""
    import json

    from aqr_cli.io.outdir import MANIFEST

    (out / EARLIER_ONLY).write_bytes(b"earlier")
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["files"] = sorted([*manifest["files"], EARLIER_ONLY])
    (out / MANIFEST).write_text(json.dumps(manifest))


RENDER_SCENE_ARGS = ["render-weights", "--synthetic", "--weights", "scene", "--method", "all",
                     "--save-arrays"]


@pytest.fixture(scope="session")
def render_scene_run(tmp_path_factory):
    """``render-weights`` on the synthetic scene with scene-model weights, all four render
    methods and arrays, run once per session at 80 columns: ``(result, folder)``. Read by the
    render-weights and the readings tests."""
    return _run_once_per_session(tmp_path_factory, "render_scene", RENDER_SCENE_ARGS)


RENDER_BATCH_ARGS = ["render-weights", str(DUMP), str(DUMP_TRAIN), "--checkpoint", str(CHECKPOINT),
                     "--save-arrays", "--json"]


@pytest.fixture(scope="session")
def render_batch_run(tmp_path_factory):
    """``render-weights`` on both fixture dumps with the checkpoint, ``--json``, run once per
    session: ``(result, folder)``; each dump's subfolder holds what a run on that dump alone
    writes. Read by the batch-mode, warning-format, JSON-mode and notebook tests."""
    return _run_once_per_session(tmp_path_factory, "render_batch", RENDER_BATCH_ARGS)


COMPARE_DUMP_ARGS = ["compare-modes", str(DUMP), "--checkpoint", str(CHECKPOINT), "--scales", ""]


@pytest.fixture(scope="session")
def compare_dump_run(tmp_path_factory):
    """``compare-modes`` on the fixture dump with its checkpoint, run once into a fresh folder at
    80 columns (human output): ``(result, folder)``. It is the costliest command run of the suite
    (about 4 s), read by the output-contract, compare-modes and notebook tests."""
    return _run_once_per_session(tmp_path_factory, "compare_dump", COMPARE_DUMP_ARGS)


@pytest.fixture(scope="session")
def compare_dump_rerun(compare_dump_run, tmp_path_factory):
    """A rerun of ``compare-modes`` on the fixture dump into a copy of ``compare_dump_run``'s
    folder holding the user's files ``notes.txt``, ``sub/keep.txt`` and ``sub/extra.txt`` (and
    ``EARLIER_ONLY``, as if the first run had written it), with
    ``--width skip --json`` and the default scales (the attention measurement and the sweep
    skipped): ``(result, folder)``. It serves both the output-contract rerun and the
    compare-modes ``--width skip`` tests."""
    import shutil

    _, first = compare_dump_run

    def prepare(out):
        shutil.copytree(first, out)
        user_files(out)
        (out / "sub" / "extra.txt").write_text("x")
        add_earlier_only_file(out)

    # the default --scales: a skipped attention must skip the sweep too
    args = ["compare-modes", DUMP, "--checkpoint", CHECKPOINT, "--width", "skip", "--json"]
    return _run_once_per_session(tmp_path_factory, "compare_dump_rerun", args, prepare)
