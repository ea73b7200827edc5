"""``aqr inspect-log`` end to end: JSON document, output folder, 80 columns, bad inputs."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

import aqr_cli.cli.commands  # noqa: F401  (registers the commands)
from aqr_cli.cli.app import app
from aqr_cli.views.log import FIGURES, SUMMARY_JSON, TRAIN_CSV
from conftest import CHECKPOINT
from log_samples import FIXTURE_LOG, baseline_text_log, json_log, write

runner = CliRunner()


def invoke(*args, columns: int = 80):
    return runner.invoke(app, ["inspect-log", *map(str, args)], env={"COLUMNS": str(columns)})


@pytest.fixture(scope="module")
def base_log(tmp_path_factory):
    return write(tmp_path_factory.mktemp("base"), "base.log", baseline_text_log())


def test_json_document_with_baseline(base_log):
    res = invoke(FIXTURE_LOG, "--baseline", base_log, "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    json.dumps(doc, allow_nan=False)
    assert doc["baseline"] == str(base_log)
    base, aqr = doc["runs"]
    assert base["path"] == str(base_log) and base["aqr"] is False
    assert aqr["train"]["records"] == 80 and aqr["train"]["iters_per_epoch"] == 4004
    last = aqr["train"]["last"]
    assert (last["iter"], last["time"], last["memory"], last["loss"]) == (4000, 1.84, 22962, 10.1469)
    assert aqr["train"]["time_per_iter"]["median"] == pytest.approx(1.861, abs=5e-4)
    assert aqr["val"][0]["metrics"]["mAP"] == 0.6449
    assert aqr["val"][0]["per_class"]["barrier"]["vel_err"] is None  # nan -> null
    assert aqr["aqr_debug"]["blocks"] == 32
    assert aqr["aqr_debug"]["counters"]["modulation"] == {"1000": 8, "2000": 8, "3000": 8,
                                                          "4000": 8}
    assert len(aqr["aqr_debug"]["per_block"]) == 32
    assert aqr["header"]["mmcv"] == "1.6.0" and aqr["config"]["modulator_config"]
    assert {f["id"] for f in aqr["findings"]} >= {"Q26", "Q27"}
    assert aqr["skipped_lines"]["count"] == 0
    (c,) = doc["comparison"]
    assert c["path"] == str(FIXTURE_LOG)
    assert c["mAP_delta"] == pytest.approx(-0.0126) and c["NDS_delta"] == pytest.approx(-0.0059)
    assert c["per_class_ap_delta"]["traffic_cone"] == pytest.approx(0.69985 - 0.727)
    assert c["time_per_iter_ratio"] == pytest.approx(2.876, abs=2e-3)
    assert c["memory_delta"] == 1375


def _numbers(text: str) -> set[str]:
    return set(re.findall(r"\d+\.\d+|\d{3,}", text))


def test_human_output_fits_80_columns_and_keeps_numbers(base_log, tmp_path):
    third = write(tmp_path, "third.log.json", json_log())
    res = invoke(FIXTURE_LOG, third, "--baseline", base_log)
    assert res.exit_code == 0, res.output
    out = res.stdout
    lines = out.splitlines()
    assert max(len(ln) for ln in lines) <= 80
    for num in ("10.1469", "41.7388", "22962", "0.6449", "0.6849", "1.840", "0.6575",
                "0.6449 (-0.0126)", "22962 (+1375)", "0.609 (-0.032)", "1.861 (x2.88)"):
        assert num in out, num
    # three runs do not fit 80 columns: two groups of columns, row labels repeated
    heads = [ln.split() for ln in lines if ln.startswith(" ") and ln.strip().startswith("run ")]
    assert heads == [["run", "1", "run", "2"], ["run", "3"]]
    assert sum(ln.startswith("AP bicycle *") for ln in lines) == 2
    assert "AP pedestrian *" in out and "[baseline]" in out
    wide = invoke(FIXTURE_LOG, third, "--baseline", base_log, columns=200).stdout
    assert _numbers(wide) == _numbers(out)


def test_out_folder_files_and_determinism(base_log, tmp_path):
    outs = [tmp_path / "a", tmp_path / "b"]
    for o in outs:
        res = invoke(FIXTURE_LOG, "--baseline", base_log, "-o", o, "-q")
        assert res.exit_code == 0, res.output
    names = {SUMMARY_JSON, TRAIN_CSV, *FIGURES.values()}
    assert names <= {p.name for p in outs[0].iterdir()}
    for name in names:
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name
    doc = json.loads((outs[0] / SUMMARY_JSON).read_text())
    assert doc["comparison"][0]["memory_delta"] == 1375
    rows = (outs[0] / TRAIN_CSV).read_text().splitlines()
    assert len(rows) == 1 + 20 + 80
    header = rows[0].split(",")
    assert header[:3] == ["run", "epoch", "iter"] and "d4.dn_loss_bbox" in header
    last = dict(zip(header, rows[-1].split(",")))
    assert (last["iter"], last["time"], last["memory"], last["loss"]) == \
        ("4000", "1.84", "22962.0", "10.1469")
    first_aqr = dict(zip(header, rows[21].split(",")))
    assert first_aqr["grad_norm"] == "nan"


def test_baseline_alone_writes_no_debug_figure(base_log, tmp_path):
    res = invoke(base_log, "-o", tmp_path / "o")
    assert res.exit_code == 0
    names = {p.name for p in (tmp_path / "o").iterdir()}
    assert FIGURES["aqr_debug"] not in names and FIGURES["per_class"] in names
    assert "no AQR debug prints" in res.stderr


@pytest.mark.parametrize("kind", ["binary", "checkpoint", "empty", "no_records"])
def test_bad_input_one_line_exit_1_no_folder(tmp_path, kind):
    if kind == "checkpoint":
        path = CHECKPOINT
    else:
        content = {"binary": bytes(range(256)) * 40, "empty": b"",
                   "no_records": b"just some notes\nnothing logged here\n" * 20}[kind]
        path = write(tmp_path, f"{kind}.log", content)
    out = tmp_path / "report"
    res = invoke(FIXTURE_LOG, path, "-o", out)
    assert res.exit_code == 1
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("aqr: error: ") and str(path) in err[0]
    assert "Traceback" not in res.output and res.stdout == ""
    assert not out.exists()


def test_folder_and_glob_arguments(tmp_path):
    folder = tmp_path / "work"
    folder.mkdir()
    write(folder, "20251012.log", baseline_text_log())
    write(folder, "20251012.log.json", json_log())  # same run's JSON twin: skipped
    write(folder, "other.log.json", json_log())
    res = invoke(folder, "--json")
    assert res.exit_code == 0, res.output
    assert [r["name"] for r in json.loads(res.stdout)["runs"]] == ["20251012.log", "other.log.json"]
    res = invoke(str(folder / "*.log"), "--json")
    assert [r["name"] for r in json.loads(res.stdout)["runs"]] == ["20251012.log"]
    res = invoke(str(folder / "*.nothing"))
    assert res.exit_code == 1 and res.stderr.startswith("aqr: error:")


def test_baseline_named_twice_is_one_run(base_log):
    res = invoke(base_log, FIXTURE_LOG, "--baseline", base_log, "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert [r["path"] for r in doc["runs"]] == [str(base_log), str(FIXTURE_LOG)]
    assert len(doc["comparison"]) == 1


def test_missing_file(tmp_path):
    res = invoke(tmp_path / "nope.log")
    assert res.exit_code == 1 and res.stderr.count("\n") == 1 and "no such file" in res.stderr
