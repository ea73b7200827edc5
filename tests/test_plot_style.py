"""Figures never touch the user's global matplotlib state: every builder draws inside
``rc_context`` (plots.style.styled), and the writer saves inside it too, so a notebook's
rcParams neither change nor leak into the PNG bytes."""

from __future__ import annotations

import importlib
import pkgutil

import matplotlib
import numpy as np

import aqr_cli.plots
from aqr_cli.plots.evolution import evolution_figure
from aqr_cli.plots.style import RC
from aqr_cli.plots.weights import query_panel_figure
from aqr_cli.views.outputs import Outputs, write_outputs


def _builders():
    for info in pkgutil.iter_modules(aqr_cli.plots.__path__):
        module = importlib.import_module(f"aqr_cli.plots.{info.name}")
        for name in dir(module):
            fn = getattr(module, name)
            if name.endswith("_figure") and name != "new_figure" and callable(fn) and fn.__module__ == module.__name__:
                yield f"{info.name}.{name}", fn


def test_every_figure_builder_draws_in_the_house_style_context():
    names = dict(_builders())
    assert len(names) >= 15
    assert [n for n, fn in names.items() if not hasattr(fn, "__wrapped__")] == []


def _figures():
    rng = np.random.default_rng(0)
    lw, cw = rng.uniform(-1, 1, 50), rng.uniform(-1, 1, 50)
    rows = [{"name": f"d{i}", "iteration": i, "lidar_mean": 0.1 * i, "lidar_std": 0.1, "camera_mean": -0.1 * i,
             "camera_std": 0.2, "prefer_lidar": 0.5, "bev_map_max": 1.0, "camera_map_max": 0.5,
             "bias_in_window_mean": 0.1, "bias_in_window_std": 0.2, "bias_scale": 2.5} for i in (100, 200)]
    return {"query_weights.png": query_panel_figure(lw, cw, {"prefer_lidar": 0.4, "prefer_camera": 0.6, "balanced": 0.1},
                                                    title="t"),
            "evolution.png": evolution_figure(rows)}


def test_building_and_saving_figures_leaves_rcparams_unchanged(tmp_path):
    before = dict(matplotlib.rcParams)
    figs = _figures()
    assert dict(matplotlib.rcParams) == before
    write_outputs(Outputs(files=figs), tmp_path / "a")
    assert dict(matplotlib.rcParams) == before
    # built in the house style whatever the global font size
    title = figs["query_weights.png"].axes[0].title
    assert title.get_fontsize() == RC["axes.titlesize"] != before["axes.titlesize"]


def test_a_users_global_style_does_not_reach_the_png_bytes(tmp_path):
    write_outputs(Outputs(files=_figures()), tmp_path / "default")
    with matplotlib.rc_context({"font.size": 21, "axes.titlesize": 30, "xtick.labelsize": 17}):
        write_outputs(Outputs(files=_figures()), tmp_path / "user")
    for name in ("query_weights.png", "evolution.png"):
        assert (tmp_path / "default" / name).read_bytes() == (tmp_path / "user" / name).read_bytes()


def test_camera_slots_place_every_view_once():
    from aqr_cli.core.configs import CAMERA_NAMES
    from aqr_cli.plots.style import camera_slots

    std = camera_slots(CAMERA_NAMES)
    assert {CAMERA_NAMES[v]: rc for v, rc in std.items()} == {
        "CAM_FRONT_LEFT": (0, 0), "CAM_FRONT": (0, 1), "CAM_FRONT_RIGHT": (0, 2),
        "CAM_BACK_LEFT": (1, 0), "CAM_BACK": (1, 1), "CAM_BACK_RIGHT": (1, 2)}
    # a rig with other names (or a dump without metas) keeps all its views, in data order
    assert camera_slots([f"cam{i}" for i in range(6)]) == {i: divmod(i, 3) for i in range(6)}
    mixed = camera_slots(["CAM_BACK", "side", *[f"x{i}" for i in range(6)]])
    assert mixed[0] == (1, 1) and len(set(mixed.values())) == 8 == len(mixed)
    assert mixed[1] == (0, 0) and max(r for r, _ in mixed.values()) == 2


def test_camera_mosaic_draws_views_with_other_names():
    import numpy as np

    from aqr_cli.plots.style import camera_mosaic, new_figure

    fig = new_figure(6, 3)
    ax = fig.add_subplot()
    names = [f"cam{i}" for i in range(6)]
    origins = camera_mosaic(ax, np.zeros((6, 4, 5)), names, cmap="viridis", norm=None, camera_names=names)
    assert sorted(origins) == list(range(6)) and len(ax.get_images()) == 6
    assert [t.get_text() for t in ax.texts] == names
