"""``aqr compare-modes``: three paths, outputs, dumps with sliced channels, bad input."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import aqr_cli.cli.commands  # noqa: F401  (registers the commands)
from aqr_cli.cli.app import app

from conftest import DUMP

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
    picks = doc["settings"]["selected_queries"]
    assert [p["slug"] for p in picks] == ["strongest-lidar", "strongest-camera", "nearest-largest-object"]
    assert {f"attention_{p['slug']}_q{p['query']}.png" for p in picks} <= names
    assert "bias_heatmaps.png" in names
    assert doc["caption"]["source"].startswith("synthetic scene (seed 0) with scene-model weights")


def test_summary_json_is_deterministic_and_says_what_numbers_mean(synthetic):
    out, doc = synthetic
    assert "seconds" not in json.dumps(doc)
    # no checkpoint: whether a run applied the bias cannot be decided
    assert doc["run"]["additive_reached_attention"] is None
    info = doc["attention"]["information"]
    assert info["informative"] == (info["baseline_entropy_norm"] <= 0.99)
    # the additive path is measured on what the decoder reads: the attention output changes
    # although the memory does not
    ro = doc["decoder_readout"]
    assert ro["additive"]["relative_change"]["mean"] > 0 and ro["additive"]["identical"] is False
    assert doc["features"]["additive"]["bev"]["identical"] is True


@pytest.fixture(scope="module")
def dump_doc(compare_dump_run):
    """summary.json of compare-modes on the fixture dump with its checkpoint (one shared run)."""
    res, out = compare_dump_run
    assert res.exit_code == 0, res.output
    return json.loads((out / "summary.json").read_text())


def test_fixture_dump_reports_q15_q16_and_uniform_attention(dump_doc):
    doc = dump_doc
    assert doc["run"]["additive_reached_attention"] is False
    ids = {q["id"] for q in doc["quirks"]}
    assert {"Q15", "Q16", "ATTN_UNIFORM"} <= ids
    info = doc["attention"]["information"]
    assert info["informative"] is False and info["baseline_entropy_norm"] > 0.99
    assert any("identity projections" in r for r in info["reasons"])
    assert any("16 of 256" in r for r in info["reasons"])
    # no pick is a Q3 sentinel (queries no camera sees) on this dump, which has 16 of them
    assert all(p["sentinel"] is False for p in doc["settings"]["selected_queries"])


def test_select_queries_skips_q3_sentinels():
    from types import SimpleNamespace

    import torch

    from aqr_cli.analysis.compare import select_queries

    lw = torch.tensor([[0.1, 0.9, 0.5, 0.2, 0.3]])
    cw = torch.tensor([[0.1, -0.9, 0.4, 0.8, 0.5]])
    unseen = torch.tensor([[False, True, False, True, False]])   # 1 and 3 are the extremes
    src = SimpleNamespace(lidar_weights=lw, camera_weights=cw, unseen=unseen, boxes=None)
    picks = select_queries(src)
    assert [p["query"] for p in picks][:2] == [2, 4]
    assert not any(p["sentinel"] for p in picks)
    src.unseen = torch.ones_like(unseen)                           # nothing else qualifies
    assert all(p["sentinel"] for p in select_queries(src))


def test_dump_with_sliced_channels_zero_pads_or_skips(dump_doc, compare_dump_rerun):
    doc = dump_doc
    assert doc["settings"]["feature_width"] == 16 and doc["settings"]["embedding_width"] == 256
    assert doc["attention"]["settings"]["status"] == "ok"
    assert doc["features"]["multiplicative"]["bev"]["relative_change"] > 0
    # the same dump with --width skip, run over the first run's folder (conftest.compare_dump_rerun)
    res, _ = compare_dump_rerun
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


def test_split_memory_inverts_build_memory():
    import torch

    from aqr_cli.analysis.sources import split_memory
    from aqr_cli.core.embeddings import build_memory

    bev, cam = torch.randn(2, 5, 4, 6), torch.randn(12, 5, 3, 7)
    memory = build_memory(bev, cam).transpose(0, 1)
    back_bev, back_cam = split_memory(memory, bev.shape, cam.shape)
    assert torch.equal(back_bev, bev) and torch.equal(back_cam, cam)
    assert back_bev.data_ptr() != bev.data_ptr()          # a tensor read back, not the input


@pytest.fixture(scope="module")
def human_80(compare_dump_run):
    """compare-modes in human mode on the fixture dump, piped at 80 columns (the session's run)."""
    res, out = compare_dump_run
    assert res.exit_code == 0, res.stderr
    return res, json.loads((out / "summary.json").read_text()), out


def _numbers(doc: dict) -> list[str]:
    """Numbers the tables must show, formatted as they are printed."""
    feats = doc["features"]
    att = doc["attention"]
    out = [format(feats[p][m]["relative_change"], ".2%") for p in ("multiplicative", "additive")
           for m in ("bev", "camera")]
    out += [format(feats["multiplicative"][m]["cosine_similarity"], ".4f") for m in ("bev", "camera")]
    out += [format(att[p]["overall"]["window_mass"]["mean"], ".4f") for p in ("baseline", "additive")]
    out += [format(att["additive"]["overall"]["kl_from_reference"]["mean"], ".2e")]
    out += [format(doc["decoder_readout"][p]["relative_change"]["mean"], ".2%")
            for p in ("multiplicative", "additive")]
    return out


def test_human_output_at_80_columns(human_80):
    res, doc, out = human_80
    text = res.stdout
    assert text.startswith("read this first: weights_iter_100.pth\nadditive path  ")
    block = text.split("\n\n")[0]
    assert "(Q15)" in block and "NOT what this run did" in block and "near-uniform" in block
    assert all(len(line) <= 80 for line in text.splitlines())
    # eight columns do not fit 80: each row is a block of `column  value` lines, nothing cut
    assert "multiplicative bev\n  mean before" in text
    for number in _numbers(doc):
        assert number in text, number
    warnings = [line for line in res.stderr.splitlines() if line.startswith("aqr: warning: ")]
    ids = [line.split(": ")[2] for line in warnings]
    assert {"Q15", "Q16", "ATTN_UNIFORM"} <= set(ids) and ids == [q["id"] for q in doc["quirks"]]
    assert res.stderr.splitlines()[-1] == f"aqr: wrote {len(doc['files'])} files to {out}"


def test_human_output_at_200_columns(human_80, monkeypatch, capsys):
    """The same report at 200 columns: tables on one line per row, same numbers."""
    from aqr_cli.cli.output import Sink
    from aqr_cli.views.compare import report

    _, doc, out = human_80
    monkeypatch.setenv("COLUMNS", "200")
    Sink().show(report([doc], [""], out))
    text = capsys.readouterr().out
    assert text.startswith("read this first: weights_iter_100.pth\n")
    assert all(len(line) <= 200 for line in text.splitlines())
    feats = doc["features"]["multiplicative"]["bev"]
    row = next(line for line in text.splitlines() if line.startswith("multiplicative bev "))
    assert format(feats["relative_change"], ".2%") in row and format(feats["cosine_similarity"], ".4f") in row
    assert any(line.startswith("additive ") and "e-0" in line for line in text.splitlines())
    for number in _numbers(doc):
        assert number in text, number


@pytest.mark.filterwarnings("ignore::aqr_cli.core.errors.QuirkWarning")
def test_synthetic_features_are_views_of_one_memory_and_compare_the_same():
    import torch

    from aqr_cli.analysis.features import compare_features
    from aqr_cli.analysis.sources import split_memory, synthetic
    from aqr_cli.core.embeddings import build_memory
    from aqr_cli.inputs.settings import Overrides

    src = synthetic(Overrides(weights="scene"), None, None)
    bev, cam = src.features
    assert bev.data_ptr() == src.memory.data_ptr()                    # one copy of the features
    assert torch.equal(build_memory(bev, cam), src.memory)
    # attention reads the memory (equal above); the feature statistics read the features: on
    # such views they must give the numbers of contiguous copies (small maps, same layouts)
    g = torch.Generator().manual_seed(0)
    b, c, (h, w), v, (ph, pw) = 2, 8, (6, 7), 6, (3, 5)
    memory = torch.randn(h * w + v * ph * pw, b, c, generator=g)
    views = split_memory(memory.transpose(0, 1), (b, c, h, w), (b * v, c, ph, pw))
    assert not views[0].is_contiguous() and views[0].data_ptr() == memory.data_ptr()
    gains = (torch.rand(b, h, w, generator=g) + 0.5, torch.rand(b * v, ph, pw, generator=g) + 0.5)
    bev_masks = [torch.rand(2, h, w, generator=g) > 0.6 for _ in range(b)]     # two boxes each
    cam_masks = [torch.rand(2, v, ph, pw, generator=g) > 0.6 for _ in range(b)]
    labels = [["car", "pedestrian"]] * b

    def stats(bev_f, cam_f):
        add = split_memory(build_memory(bev_f, cam_f).transpose(0, 1), bev_f.shape, cam_f.shape)
        return compare_features(bev_f, cam_f, bev_multiplicative=bev_f * gains[0][:, None],
                                cam_multiplicative=cam_f * gains[1][:, None], bev_additive=add[0],
                                cam_additive=add[1], bev_gain=gains[0], cam_gain=gains[1],
                                bev_masks=bev_masks, cam_masks=cam_masks, labels=labels)

    copies = tuple(t.contiguous() for t in views)
    shared = stats(*views)
    assert shared["additive"]["bev"]["energy"]["objects"]["retained"] == 1.0
    assert json.dumps(shared) == json.dumps(stats(*copies))
