"""One model of an input: each file opened once per command, settings with their origins, one
verdict per malformed dump."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import aqr_cli.cli.commands  # noqa: F401  (registers the commands)
import aqr_cli.io.checkpoint as checkpoint_io
from aqr_cli.cli.app import app
from aqr_cli.inputs.checks import ShapeMismatchError
from aqr_cli.inputs.opened import (
    OpenedCheckpoint,
    OpenedDump,
    Opener,
    open_checkpoint,
    open_dump,
    open_input,
)
from aqr_cli.inputs.settings import (
    Overrides,
    checkpoint_settings,
    dump_settings,
    reference_settings,
)
from aqr_cli.io import LoadError, load_file
from conftest import CHECKPOINT, DUMP
from hostile_files import dump_obj

PRE = "pts_bbox_head."


@pytest.fixture
def loads(monkeypatch):
    """Real paths of every file the one loader (``safe_torch_load``) reads, counted."""
    seen: Counter = Counter()
    real = checkpoint_io.safe_torch_load

    def counting(path, **kw):
        seen[os.path.realpath(path)] += 1
        return real(path, **kw)

    monkeypatch.setattr(checkpoint_io, "safe_torch_load", counting)
    return seen


def _invoke(*args):
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert "Traceback" not in res.stderr, res.stderr
    return res


def test_inspect_opens_each_file_once(loads):
    res = _invoke("inspect-checkpoint", DUMP, CHECKPOINT, "--checkpoint", CHECKPOINT, "--json")
    assert res.exit_code == 0, res.stderr
    # the checkpoint is both a source and the dumps' --checkpoint: loaded once all the same
    assert loads == Counter({os.path.realpath(DUMP): 1, os.path.realpath(CHECKPOINT): 1})


def test_compare_opens_the_checkpoint_once(loads, tmp_path):
    """compare-modes renders the dump with the checkpoint and inspects the same checkpoint for
    the run's semantics (Q15-Q17): one load of each file."""
    # the attention measurement and the sweep are skipped: they read no file
    res = _invoke("compare-modes", DUMP, "--checkpoint", CHECKPOINT, "--width", "skip", "--scales", "",
                  "--json", "-o", tmp_path / "c")
    assert res.exit_code == 0, res.stderr
    assert loads == Counter({os.path.realpath(DUMP): 1, os.path.realpath(CHECKPOINT): 1})


def test_render_sources_open_each_file_once(loads):
    """A checkpoint given as a source and as --checkpoint is read once for the whole run."""
    from aqr_cli.cli import _options, _sources
    from aqr_cli.cli.output import Sink

    flags = _options.SourceFlags(out=Path("unused"), checkpoint=CHECKPOINT, synthetic=True)
    out = _sources.load_sources([DUMP, CHECKPOINT], flags, Sink(quiet=True), lambda: None)
    assert len(out) == 2  # the synthetic scene and the dump; the checkpoint applies to the dump
    assert loads == Counter({os.path.realpath(DUMP): 1, os.path.realpath(CHECKPOINT): 1})
    assert out[0][0].checkpoint_file is out[1][0].checkpoint_file


def test_opener_shares_one_load():
    opener = Opener()
    ck = opener.checkpoint(CHECKPOINT)
    assert opener.checkpoint(str(CHECKPOINT)) is ck
    assert opener.file(CHECKPOINT) is ck.file
    assert isinstance(opener.dump(DUMP), OpenedDump)


def test_open_input_sniffs_the_kind():
    assert isinstance(open_input(CHECKPOINT), OpenedCheckpoint)
    assert isinstance(open_input(DUMP), OpenedDump)
    with pytest.raises(LoadError, match="expected a checkpoint, but the file is an AQR debug dump"):
        open_checkpoint(DUMP)
    with pytest.raises(LoadError, match="expected an AQR debug dump, but the file is a checkpoint"):
        open_dump(CHECKPOINT)


CONFIG = """\
model = dict(
    pts_bbox_head=dict(
        type='CmtHead',
        enable_aqr=True,
        hidden_dim=256,
        renderer_config=dict(gaussian_sigma=1.5),
    ))
"""


def test_settings_origins_override_beats_config_beats_tensors_beats_default(tmp_path):
    cfg_file = tmp_path / "c.py"
    cfg_file.write_text(CONFIG)
    lf = load_file(CHECKPOINT)

    settings = checkpoint_settings(lf, cfg_file)
    sigma_line = CONFIG.splitlines().index("        renderer_config=dict(gaussian_sigma=1.5),") + 1
    # the config file, with its line
    got = settings.lookup("renderer_config", "gaussian_sigma")
    assert got.value == 1.5 and got.origin == f"{cfg_file}:{sigma_line}"
    # a key the config leaves out: CmtHead's default
    got = settings.lookup("renderer_config", "render_method")
    assert got.origin == "CmtHead default"
    # a command-line override beats the config
    over = settings.with_overrides(Overrides(sigma=3.0, method="bilinear"))
    got = over.lookup("renderer_config", "gaussian_sigma")
    assert got.value == 3.0 and got.origin == "override"
    ref = over.reference()
    assert ref.renderer_config["gaussian_sigma"] == 3.0
    assert ref.renderer_config["render_method"] == "bilinear"
    # no config: what the checkpoint's tensors imply (its bias offsets give the BEV width)
    bare = checkpoint_settings(load_file(CHECKPOINT)) if not lf.meta.config_text else None
    if bare is not None:
        got = bare.lookup("aqr_config", "bev_feature_shape")
        assert got.origin == f"{lf.name} tensors (reference 800x320)"
    # nothing at all: the reference config's defaults
    got = reference_settings("800x320").lookup(None, "hidden_dim")
    assert got.value == 256 and got.origin == "reference 800x320"


def test_settings_from_tensors_and_embedded_config(tmp_path):
    """A state dict alone gives its reference from the bias offsets; an embedded config then
    beats the tensors, and the settings name it."""
    sd = dict(load_file(CHECKPOINT).state_dict)
    bare = tmp_path / "bare.pth"
    torch.save({"state_dict": sd}, bare)
    settings = checkpoint_settings(load_file(bare))
    got = settings.lookup("aqr_config", "bev_feature_shape")
    assert got.origin == "bare.pth tensors (reference 800x320)"
    assert settings.where == "reference 800x320 (the checkpoint holds no config)"

    with_cfg = tmp_path / "with_cfg.pth"
    torch.save({"state_dict": sd, "meta": {"config": CONFIG, "epoch": 1}}, with_cfg)
    settings = checkpoint_settings(load_file(with_cfg))
    got = settings.lookup("renderer_config", "gaussian_sigma")
    assert got.value == 1.5 and got.origin == "with_cfg.pth:meta['config']"
    assert settings.where == "with_cfg.pth config"
    assert settings.reference().renderer_config["gaussian_sigma"] == 1.5


def test_dump_settings_follow_the_maps_or_the_checkpoint():
    od = open_dump(DUMP)
    bev, pers = od.map_shapes()
    alone = dump_settings(bev, pers, None, "800x320")
    assert tuple(alone.reference().bev_shape) == bev
    assert alone.lookup(None, "hidden_dim").origin.startswith("the dump's map shapes")
    ck = open_checkpoint(CHECKPOINT)
    assert dump_settings(bev, pers, ck.settings, "800x320") is ck.settings
    with pytest.raises(ShapeMismatchError, match=r"dump maps are BEV \[9, 9\]"):
        dump_settings((9, 9), pers, ck.settings, "800x320")


def test_shape_mismatch_is_one_load_error(tmp_path):
    cfg_file = tmp_path / "c.py"
    cfg_file.write_text(CONFIG.replace("hidden_dim=256", "hidden_dim=256, num_query=17"))
    with pytest.raises(ShapeMismatchError, match="shapes disagree with the config"):
        open_checkpoint(CHECKPOINT, cfg_file)
    assert issubclass(ShapeMismatchError, LoadError)


def _bad_dump(tmp_path):
    """A tiny dump (16x16 BEV, 6x8x10 cameras, 20 queries) whose pts_bev is [1, 20, 3]."""
    g = torch.Generator().manual_seed(0)
    q = 20
    d = {"iteration": 7, "weight_map_bev": torch.rand(1, 16, 16, generator=g),
         "weight_map_pers": torch.rand(1, 6, 8, 10, generator=g),
         "lidar_weights": torch.rand(1, q, generator=g), "camera_weights": torch.rand(1, q, generator=g),
         "pts_bev": torch.zeros(1, q, 3), "img_metas": dump_obj()["img_metas"]}
    p = tmp_path / "bad_dump.pth"
    torch.save(d, p)
    return p


def test_malformed_dump_same_error_everywhere(tmp_path):
    p = _bad_dump(tmp_path)
    with pytest.raises(LoadError) as err:
        open_dump(p)
    lines = set()
    for cmd in (["inspect-checkpoint", p],
                ["render-weights", p, "--out", tmp_path / "r"],
                ["compare-modes", p, "--out", tmp_path / "c"]):
        res = _invoke(*cmd)
        errors = [line for line in res.stderr.splitlines() if line.startswith("aqr: error: ")]
        assert res.exit_code == 1 and len(errors) == 1, res.stderr
        lines.add(errors[0])
    assert lines == {f"aqr: error: {err.value}"}


def test_parameters_present_exactly_when_the_config_says():
    """Type embeddings and learnable modulation parameters are checked against the config's
    flags: the fixture agrees (type embeddings present, use_type_embed=True; no modulation
    scale, learnable_modulation=False); flipping what the tensors hold makes both mismatches."""
    from aqr_cli.inputs.checks import shapes_and_checks

    ck = open_checkpoint(CHECKPOINT)
    before = {c.name: c for c in ck.checks}
    assert before["type embeddings"].message == "type embeddings present, use_type_embed=True"
    assert before["modulator parameters"].message == ("feature_modulator parameters absent, "
                                                      "learnable_modulation=False")
    assert all(before[n].status == "ok" for n in ("type embeddings", "modulator parameters"))
    pre = ck.prefix or ""
    sd = {k: v for k, v in ck.state_dict.items() if not k.endswith("type_embed")}
    sd[pre + "feature_modulator.modulation_scale"] = torch.ones(1)
    _, checks = shapes_and_checks(sd, pre, ck.settings.config)
    after = {c.name: c for c in checks}
    assert (after["type embeddings"].status, after["type embeddings"].message) == (
        "mismatch", "type embeddings absent, use_type_embed=True")
    assert (after["modulator parameters"].status, after["modulator parameters"].message) == (
        "mismatch", "feature_modulator parameters present, learnable_modulation=False")
