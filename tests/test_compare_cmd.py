"""``aqr compare-modes``: three paths, outputs, dumps with sliced channels, bad input."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import aqr_cli.cli.commands  # noqa: F401  (registers the commands)
from aqr_cli.cli.app import app

from conftest import CHECKPOINT, DUMP

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    out = tmp_path_factory.mktemp("cmp") / "out"
    res = invoke("compare-modes", "--synthetic", "--weights", "scene", "--scales", "1,5",
                 "--out", out, "--json")
    assert res.exit_code == 0, res.output
    return out, json.loads(res.stdout)


def test_summary_keys_and_feature_paths(synthetic):
    out, doc = synthetic
    assert {"features", "attention", "sweep", "settings", "quirks", "files"} <= set(doc)
    add, mult = doc["features"]["additive"], doc["features"]["multiplicative"]
    for mod in ("bev", "camera"):
        assert add[mod]["identical"] is True and add[mod]["max_change"] == 0.0
        assert add[mod]["relative_change"] == 0.0
        assert mult[mod]["relative_change"] > 0.05          # residual 0.7: cells with no query lose 30%
        g = mult[mod]["gain"]
        assert g["min"] == pytest.approx(0.7, abs=1e-6)     # f * (m + r), m = 0 -> r (Q27)
        assert g["share_attenuated"] + g["share_unity"] + g["share_amplified"] == pytest.approx(1.0)
    assert json.loads((out / "summary.json").read_text()) == doc


def test_attention_three_paths(synthetic):
    _, doc = synthetic
    att = doc["attention"]
    base, mult, add = att["baseline"]["overall"], att["multiplicative"]["overall"], att["additive"]["overall"]
    assert base["kl_from_reference"]["mean"] == 0.0 and base["topk_overlap"]["mean"] == 1.0
    assert add["kl_from_reference"]["mean"] > 0 and mult["kl_from_reference"]["mean"] > 0
    assert add["window_mass"]["mean"] > base["window_mass"]["mean"]
    for p in (base, mult, add):
        assert p["lidar_share"]["mean"] + p["camera_share"]["mean"] == pytest.approx(1.0, abs=1e-4)
    assert att["settings"]["num_keys"] == 22384
    assert "identity" in json.dumps(doc["settings"]["attention_weights"])


def test_sweep_and_files(synthetic):
    out, doc = synthetic
    assert doc["sweep"]["scales"] == [1.0, 5.0]
    names = {p.name for p in out.iterdir()}
    assert {"feature_histograms.png", "gain_map.png", "sweep.png", "summary.png", "summary.json"} <= names
    assert len([n for n in names if n.startswith("attention_query")]) == 3


def test_dump_with_sliced_channels_zero_pads_or_skips(tmp_path):
    res = invoke("compare-modes", DUMP, "--checkpoint", CHECKPOINT, "--scales", "", "--out",
                 tmp_path / "a", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["settings"]["feature_width"] == 16 and doc["settings"]["embedding_width"] == 256
    assert doc["attention"]["settings"]["status"] == "ok"
    assert doc["features"]["multiplicative"]["bev"]["relative_change"] > 0
    res = invoke("compare-modes", DUMP, "--checkpoint", CHECKPOINT, "--width", "skip", "--out",
                 tmp_path / "b", "--json")
    assert res.exit_code == 0
    doc = json.loads(res.stdout)
    assert doc["attention"]["settings"]["status"] == "skipped" and doc["attention"]["settings"]["reason"]
    assert doc["attention"]["additive"] is None and doc["sweep"] is None


def test_dump_without_checkpoint_is_one_line_error(tmp_path):
    res = invoke("compare-modes", DUMP, "--out", tmp_path / "o")
    assert res.exit_code == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "--checkpoint" in lines[0]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args", [["--scales", "1,x"], ["--scales", "-1"], ["--width", "wide"],
                                  ["--method", "all"]])
def test_usage_errors(tmp_path, args):
    res = runner.invoke(app, ["compare-modes", "--synthetic", *args, "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
