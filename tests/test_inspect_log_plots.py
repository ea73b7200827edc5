"""Structure of the inspect-log figures (axes, bands, signed colours), without saving them."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.patches import Rectangle

from aqr_cli.logs.analysis import WEIGHT_MEAN_BANDS, summarize_log
from aqr_cli.plots import logs as P
from log_samples import FIXTURE_LOG, baseline_text_log, write


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = summarize_log(write(tmp_path_factory.mktemp("b"), "base.log", baseline_text_log()))
    return base, summarize_log(FIXTURE_LOG)


def test_loss_figure_panels_and_raw_points(runs):
    fig = P.loss_figure(runs, runs[0])
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["total loss", "loss_cls", "loss_bbox", "dn_loss_cls", "dn_loss_bbox",
                      "grad_norm"]
    lines = fig.axes[0].get_lines()
    # per run: raw markers (no line) and the smoothed line
    assert len(lines) == 4 and lines[0].get_linestyle() == "None"
    assert len(lines[2].get_xdata()) == 80 and lines[2].get_ydata()[-1] == 10.1469


def test_smooth_ignores_nan():
    y = np.array([1.0, np.nan, 3.0, 5.0, 7.0])
    s = P.smooth(y, 3)
    assert np.isnan(s[1]) and s[2] == pytest.approx(4.0) and s[0] == pytest.approx(1.0)


def test_per_class_figure_deltas_on_a_signed_scale(runs):
    fig = P.per_class_figure(runs, runs[0])
    top, delta = fig.axes
    assert [t.get_text() for t in top.get_xticklabels()][5] == "pedestrian *"
    bars = [p for p in delta.patches if isinstance(p, Rectangle) and p.get_height() != 0
            and p.get_width() < 1]
    heights = [b.get_height() for b in bars]
    assert min(heights) == pytest.approx(0.609325 - 0.641, abs=1e-9)  # bicycle
    lo, hi = delta.get_ylim()
    assert lo == pytest.approx(-hi)  # symmetric about zero
    # the most negative delta gets the darkest blue of RdBu_r
    worst = bars[int(np.argmin(heights))].get_facecolor()
    assert worst[2] > worst[0]


def test_debug_figure_bands_and_clamp(runs):
    assert P.debug_figure([runs[0]]) is None  # baseline: no debug prints
    fig = P.debug_figure(runs, runs[0])
    a_mean, a_std, a_map, a_rel = fig.axes
    names = {t.get_text().strip() for t in a_mean.texts}
    assert {name for _, _, name in WEIGHT_MEAN_BANDS} <= names
    assert a_map.get_yscale() == "log"
    assert any("clamp 1.5" in t.get_text() for t in a_map.texts)
    xs = a_rel.get_lines()[0].get_xdata()
    assert list(xs) == [1000, 2000, 3000, 4000]
