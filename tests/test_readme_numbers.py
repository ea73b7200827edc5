"""Numbers the README quotes about command output, re-measured so they cannot go stale."""

from __future__ import annotations

import json
import re

from typer.testing import CliRunner

import aqr_cli.cli.commands  # noqa: F401  (registers the commands)
from aqr_cli.cli.app import app
from conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
RANDOM_INIT = re.compile(
    r"--synthetic`, 800x320, seed 0: LiDAR mean ([+-]\d\.\d\d), std (\d\.\d\d); camera mean "
    r"([+-]\d\.\d\d), std (\d\.\d\d); LiDAR preferred by (\d+)% of queries")


def test_random_init_generator_numbers_match_the_command(tmp_path):
    """The README's description of the random-init generator is what `--synthetic` gives."""
    found = RANDOM_INIT.search(" ".join(README.split()))   # line breaks are spaces
    assert found, "README lost its measured random-init sentence"
    res = CliRunner().invoke(app, ["render-weights", "--synthetic", "--out", str(tmp_path / "o"), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    w = doc["weights"]
    measured = (f"{w['lidar']['mean']:+.2f}", f"{w['lidar']['std']:.2f}", f"{w['camera']['mean']:+.2f}",
                f"{w['camera']['std']:.2f}", f"{100 * doc['preference']['prefer_lidar']:.0f}")
    assert found.groups() == measured
    assert doc["caption"]["config"].startswith("800x320") and "seed 0" in doc["caption"]["source"]
