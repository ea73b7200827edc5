"""Shared figure conventions: Agg figures, fixed sizes, signed/unsigned colour scales, camera grid.

Builders return :class:`matplotlib.figure.Figure`; they never save or show. Saving them with
:func:`aqr_cli.io.atomic.atomic_save_figure` (a PNG with no version string in it) makes the
same input give byte-identical PNGs.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Sequence, TypeVar

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.patches import Polygon
from matplotlib.ticker import MaxNLocator

from aqr_cli.core.configs import CAMERA_GRID, CAMERA_NAMES
from aqr_cli.core.geometry import box_corners_3d

F = TypeVar("F", bound=Callable[..., Any])

SIGNED_CMAP = "RdBu_r"
UNSIGNED_CMAP = "viridis"
DPI = 110

RC = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "figure.titlesize": 12,
    # titles at the axes' top edge plus the pad: no panel draws ticks or labels above itself, so
    # matplotlib's search for them (a text layout per tick label per axes) finds nothing
    "axes.titley": 1.0,
    "svg.hashsalt": "aqr",
}


def figure_style():
    """A context in which figures are built and saved with matplotlib's defaults plus the house
    style :data:`RC`, whatever the user's rcParams (or matplotlibrc) say; the user's
    ``matplotlib.rcParams`` are back as they were when it exits. Saving needs it too: tick
    labels are created while drawing and read the font size then."""
    import matplotlib.style

    return matplotlib.style.context(["default", RC])


def warm_up() -> None:
    """Draw a small throw-away figure in the house style: loads the fonts, the Agg renderer
    and the PNG writer, and builds the mathtext parser (log-scale tick labels are mathtext;
    0.1 s), so a worker's first real figure does not pay for them."""
    from matplotlib.colors import LogNorm

    from aqr_cli.io.png import figure_png

    with figure_style():
        fig = new_figure(2.0, 1.5, layout=None)
        fig.suptitle("warm", fontweight="bold")
        ax = fig.add_subplot()
        image = ax.imshow(np.arange(1.0, 13.0).reshape(3, 4), cmap="magma", norm=LogNorm(1.0, 12.0))
        fig.colorbar(image, ax=ax, label="x")
        ax.set(title="up", xlabel="x (m)", ylabel="y (m)")
        figure_png(fig)


def styled(builder: F) -> F:
    """Run a figure builder inside :func:`figure_style` (never the global rcParams)."""
    @functools.wraps(builder)
    def build(*args, **kwargs):
        with figure_style():
            return builder(*args, **kwargs)
    return build  # type: ignore[return-value]


def new_figure(width: float, height: float, layout: str | None = "constrained") -> Figure:
    """An Agg-backed figure of ``width`` x ``height`` inches (no pyplot state).

    ``layout=None`` skips constrained layout (several times faster to save for figures with
    many artists); such builders place their axes with ``subplots_adjust``/gridspec margins.
    """
    fig = Figure(figsize=(width, height), dpi=DPI, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def signed_norm(vmax: float) -> TwoSlopeNorm:
    """A zero-centred norm on ``[-vmax, vmax]`` (``vmax`` forced positive)."""
    vmax = float(vmax) if vmax and math.isfinite(vmax) and vmax > 0 else 1.0
    return TwoSlopeNorm(vmin=-vmax, vcenter=0.0, vmax=vmax)


def unsigned_norm(vmax: float, vmin: float = 0.0) -> Normalize:
    vmax = float(vmax) if vmax and math.isfinite(vmax) and vmax > vmin else vmin + 1.0
    return Normalize(vmin=vmin, vmax=vmax)


def camera_slots(camera_names: Sequence[str]) -> dict[int, tuple[int, int]]:
    """View index -> (row, column) in a 3-column grid: the standard names where they sit on the
    car, [[FL, F, FR], [BL, B, BR]]; any other view (a rig with other names or more views) in
    the free slots after them, in data order, adding rows as needed."""
    names = list(camera_names)
    slots = {names.index(name): (r, c) for r, row in enumerate(CAMERA_GRID)
             for c, name in enumerate(row) if name in names}
    taken = set(slots.values())
    free = (divmod(i, 3) for i in range(3 * (len(names) + 2)))
    for v in range(len(names)):
        if v not in slots:
            slot = next(p for p in free if p not in taken)
            slots[v] = slot
            taken.add(slot)
    return slots


def camera_axes(fig: Figure, grid=None, camera_names: Sequence[str] = CAMERA_NAMES,
                **gridspec_kw) -> dict[int, Axes]:
    """Axes for the views laid out by :func:`camera_slots`, keyed by data index.

    ``grid`` is an optional subplot spec to nest the grid (two rows for six views) in.
    """
    slots = camera_slots(camera_names)
    rows = max((r for r, _ in slots.values()), default=0) + 1
    spec = (grid.subgridspec(rows, 3, **gridspec_kw) if grid is not None
            else fig.add_gridspec(rows, 3, **gridspec_kw))
    return {v: fig.add_subplot(spec[r, c]) for v, (r, c) in sorted(slots.items())}


def camera_mosaic(ax: Axes, pers: np.ndarray, titles: Sequence[str], *, cmap, norm,
                  camera_names: Sequence[str] = CAMERA_NAMES, gap: tuple[float, float] = (0.25, 0.55),
                  title_size: float = 8, label_size: float = 7, xlabel: str = "w (cells)",
                  ylabel: str = "h (cells)") -> dict[int, tuple[float, float]]:
    """The views ``pers [V, h, w]`` as tiles of ONE axes, laid out by :func:`camera_slots`
    ([[FL, F, FR], [BL, B, BR]] for the standard six) with gaps of ``gap`` = (x, y) tile sizes (the spacing of a 2x3 grid of axes), each tile
    framed and titled (``titles[v]``, font size ``title_size``), cell ticks under the bottom row
    and left of the left column (tick labels ``label_size - 1``, axis labels ``label_size``).
    One axes instead of six: axes are the costliest artists to build and draw.

    Returns the data origin (x0, y0) of each view's tile: cell (row i, column j) of view v is
    at ``(x0 + j, y0 + i)``."""
    from matplotlib.patches import Rectangle

    _, h, w = pers.shape
    gx, gy = gap[0] * w, gap[1] * h
    slots = camera_slots(list(camera_names)[: len(pers)])
    rows = max((r for r, _ in slots.values()), default=0) + 1
    origins: dict[int, tuple[float, float]] = {}
    for v, (r, c) in sorted(slots.items()):
        x0, y0 = c * (w + gx), r * (h + gy)
        origins[v] = (x0, y0)
        ax.imshow(pers[v], cmap=cmap, norm=norm, interpolation="nearest",
                  extent=(x0 - 0.5, x0 + w - 0.5, y0 + h - 0.5, y0 - 0.5))
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), w, h, fill=False, lw=0.8, ec="black", clip_on=False))
    data_w, data_h = 3 * w + 2 * gx, rows * h + (rows - 1) * gy
    room = (w + 0.9 * gx) * _points_per_cell(ax, data_w, data_h)
    for v, (x0, y0) in origins.items():
        text, size = _fit_title(titles[v], room, title_size)
        ax.annotate(text, (x0 + w / 2 - 0.5, y0 - 0.5), xytext=(0, 3), textcoords="offset points",
                    ha="center", va="bottom", fontsize=size)
    ax.set_xlim(-0.5, data_w - 0.5)
    ax.set_ylim(data_h - 0.5, -0.5)
    ax.set_aspect("equal")
    ax.set_frame_on(False)
    steps = MaxNLocator(3, integer=True)
    xs = [float(t) for t in steps.tick_values(0, w - 1) if 0 <= t <= w - 1]
    ys = [float(t) for t in steps.tick_values(0, h - 1) if 0 <= t <= h - 1]
    ax.set_xticks([c * (w + gx) + t for c in range(3) for t in xs], [f"{t:g}" for _ in range(3) for t in xs])
    ax.set_yticks([r * (h + gy) + t for r in range(rows) for t in ys], [f"{t:g}" for _ in range(rows) for t in ys])
    ax.tick_params(labelsize=label_size - 1)
    ax.set_xlabel(xlabel, fontsize=label_size)
    ax.set_ylabel(ylabel, fontsize=label_size)
    return origins


def _points_per_cell(ax: Axes, data_w: float, data_h: float) -> float:
    """Points per data unit of an equal-aspect axes showing ``data_w`` x ``data_h`` units in its
    subplot box (the box shrinks to the data's aspect when drawn)."""
    pos, fig = ax.get_position(), ax.get_figure()
    box_w, box_h = pos.width * fig.get_figwidth(), pos.height * fig.get_figheight()
    return 72.0 * min(box_w / data_w, box_h / data_h)


def _fit_title(title: str, room: float, size: float, em: float = 0.6) -> tuple[str, float]:
    """A tile title that fits ``room`` points: as is; else broken before its first ``" ("``;
    else smaller (down to 5 pt). Widths are estimated at ``em`` font sizes per character."""
    lines = [title]
    if len(title) * em * size > room and " (" in title:
        head, _, tail = title.partition(" (")
        lines = [head.strip(), "(" + tail]
    longest = max(len(line) for line in lines)
    return "\n".join(lines), min(size, max(5.0, room / (em * longest)))


def tile_cells(origins: dict[int, tuple[float, float]], views, rows, cols) -> tuple[np.ndarray, np.ndarray]:
    """Data coordinates (x, y) in a :func:`camera_mosaic` of cells (view, row h, column w);
    cells of views without a tile give NaN (not drawn)."""
    lookup = np.full((max(origins, default=-1) + 2, 2), np.nan)   # the last row: no tile
    for v, xy in origins.items():
        lookup[v] = xy
    views = np.asarray(views, dtype=np.int64)
    o = lookup[np.where((views >= 0) & (views < len(lookup) - 1), views, -1)]
    return o[:, 0] + np.asarray(cols, dtype=float), o[:, 1] + np.asarray(rows, dtype=float)


def camera_label(name: str) -> str:
    """``CAM_FRONT_LEFT`` -> ``FRONT_LEFT``."""
    return name[4:] if name.startswith("CAM_") else name


def box_corners_xy(box: np.ndarray) -> np.ndarray:
    """The 4 BEV corners [4, 2] (x, y metres) of a LiDAR box (x, y, z, dx, dy, dz, yaw, ...)."""
    x, y, dx, dy, yaw = box[0], box[1], box[3], box[4], box[6]
    local = np.array([[dx, dy], [dx, -dy], [-dx, -dy], [-dx, dy]]) / 2.0
    rot = np.array([[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]])
    return local @ rot.T + np.array([x, y])


def draw_boxes_bev(ax: Axes, boxes: np.ndarray, labels: Sequence[str] | None = None,
                   color: str = "black") -> None:
    """Draw rotated GT boxes on a BEV axis in metres (x right, y up); heading tick on the front edge.

    A label that would overlap one already placed (estimated text boxes in points) is moved
    down a line at a time, so clustered objects stay readable.
    """
    placed: list[tuple[float, float, float, float]] = []
    for i, box in enumerate(np.asarray(boxes).reshape(-1, np.asarray(boxes).shape[-1] if len(boxes) else 9)):
        corners = box_corners_xy(box)
        ax.add_patch(Polygon(corners, closed=True, fill=False, edgecolor=color, linewidth=0.9))
        front = corners[:2].mean(axis=0)
        ax.plot([box[0], front[0]], [box[1], front[1]], color=color, linewidth=0.7)
        if labels is not None:
            dy = _free_label_offset(ax, box[0], box[1], str(labels[i]), placed)
            ax.annotate(labels[i], (box[0], box[1]), xytext=(3, dy), textcoords="offset points",
                        fontsize=6, color=color)


def _free_label_offset(ax: Axes, x: float, y: float, text: str, placed: list) -> float:
    """Vertical offset (points) where a 6 pt label at data (x, y) overlaps no placed label."""
    px, py = ax.transData.transform((x, y)) * 72.0 / ax.figure.dpi      # points
    width, height = 3.4 * len(text) + 2, 7.0
    for level in range(8):
        dy = 3 - height * level
        rect = (px + 3, py + dy, px + 3 + width, py + dy + height)
        if not any(rect[0] < r[2] and r[0] < rect[2] and rect[1] < r[3] and r[1] < rect[3] for r in placed):
            break
    placed.append(rect)
    return dy


def bev_extent(pc_range: Sequence[float]) -> list[float]:
    """imshow extent (left, right, bottom, top) in metres for a [H, W] map with row 0 at y_min."""
    return [pc_range[0], pc_range[3], pc_range[1], pc_range[4]]


def weight_scale(activation: str):
    """(cmap, norm, axis limits, label) for per-query weights of ``activation``.

    tanh weights live in [-1, 1] (diverging, centred at 0); sigmoid weights in [0, 1]
    (sequential).
    """
    if activation == "sigmoid":
        return UNSIGNED_CMAP, unsigned_norm(1.0), (0.0, 1.0), "AQR weight (sigmoid, in [0, 1])"
    return SIGNED_CMAP, signed_norm(1.0), (-1.0, 1.0), "AQR weight (tanh, in [-1, 1])"


def caption_lines(fig: Figure, title: str, subtitle: str = "", notes: Sequence[str] = ()) -> list[str]:
    """The title, then the run's subtitle and notes wrapped to the figure width."""
    import textwrap

    width_chars = max(60, int(fig.get_figwidth() * 11.5))
    lines = [title] if title else []
    for text in ([subtitle] if subtitle else []) + [n for n in notes if n]:
        lines.extend(textwrap.wrap(text, width_chars, break_on_hyphens=False))
    return lines


def caption_title(fig: Figure, title: str, subtitle: str = "", notes: Sequence[str] = ()) -> float:
    """Set the figure title: ``title``, then the run's subtitle (source kind, configuration,
    sample, changed settings; :meth:`aqr_cli.analysis.caption.RunCaption.subtitle`) and
    ``notes``, wrapped to the figure width. Returns the top of the free area as a figure
    fraction, for builders that place their axes by hand.
    """
    lines = caption_lines(fig, title, subtitle, notes)
    if not lines:
        return 0.97
    if fig.get_layout_engine() is not None:   # constrained layout places an auto-positioned title
        fig.suptitle("\n".join(lines), fontsize=10.5, linespacing=1.25)
        return 1.0
    fig.suptitle("\n".join(lines), y=0.995, va="top", fontsize=10.5, linespacing=1.25)
    header_in = 0.12 + 0.2 * len(lines) + 0.3
    return max(0.5, 1.0 - header_in / fig.get_figheight())


_BOX_EDGES = np.array([[0, 1], [1, 2], [2, 3], [3, 0], [4, 5], [5, 6], [6, 7], [7, 4],
                       [0, 4], [1, 5], [2, 6], [3, 7]])


def box_edges_in_view(boxes, lidar2img: np.ndarray, img_hw: Sequence[float], feat_hw: Sequence[int],
                      min_depth: float = 0.1) -> np.ndarray:
    """Edges of 3-D boxes projected into one view, in feature cells: ``[E, 2, 2]`` (x=w, y=h).

    ``boxes [N, >=7]`` (x, y, z_bottom, dx, dy, dz, yaw); ``lidar2img [4, 4]`` of the view;
    ``img_hw`` the network input the matrix maps to, ``feat_hw`` the feature grid. Edges with a
    corner behind the camera are clipped at depth ``min_depth``; edges wholly behind it and
    edges wholly outside the image are dropped.
    """
    corners = box_corners_3d(boxes)                                   # [N, 8, 3]
    if corners.shape[0] == 0:
        return np.zeros((0, 2, 2))
    hom = np.concatenate([corners, np.ones(corners.shape[:2] + (1,))], -1) @ np.asarray(
        lidar2img, dtype=np.float64).T                                # [N, 8, 4]
    seg = hom[:, _BOX_EDGES].reshape(-1, 2, 4)                        # [E, 2, 4]
    d0, d1 = seg[:, 0, 2], seg[:, 1, 2]
    keep = (d0 > min_depth) | (d1 > min_depth)
    seg, d0, d1 = seg[keep], d0[keep], d1[keep]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.clip((min_depth - d0) / (d1 - d0), 0.0, 1.0)
    cut = seg[:, 0] + t[:, None] * (seg[:, 1] - seg[:, 0])            # the point at min_depth
    seg[:, 0] = np.where((d0 <= min_depth)[:, None], cut, seg[:, 0])
    seg[:, 1] = np.where((d1 <= min_depth)[:, None], cut, seg[:, 1])
    uv = seg[..., :2] / seg[..., 2:3]
    sx, sy = feat_hw[1] / float(img_hw[1]), feat_hw[0] / float(img_hw[0])
    cells = np.stack([uv[..., 0] * sx - 0.5, uv[..., 1] * sy - 0.5], -1)
    inside = ~(((cells[..., 0] < -0.5).all(1)) | ((cells[..., 0] > feat_hw[1] - 0.5).all(1))
               | ((cells[..., 1] < -0.5).all(1)) | ((cells[..., 1] > feat_hw[0] - 0.5).all(1)))
    return cells[inside]


def draw_boxes_mosaic(ax: Axes, origins: dict[int, tuple[float, float]], boxes, lidar2img: np.ndarray,
                      img_hw: Sequence[float], feat_hw: Sequence[int], color: str = "black") -> None:
    """Draw GT boxes projected into each tile of a :func:`camera_mosaic` (``origins`` as it
    returned them), in feature cells, each view's edges clipped to its own tile."""
    from matplotlib.collections import LineCollection
    from matplotlib.patches import Rectangle

    if boxes is None or not len(boxes) or lidar2img is None:
        return
    h, w = int(feat_hw[0]), int(feat_hw[1])
    for v, (x0, y0) in origins.items():
        if v >= len(lidar2img):
            continue
        edges = box_edges_in_view(boxes, lidar2img[v], img_hw, feat_hw)
        if len(edges):
            lines = LineCollection(edges + np.array([x0, y0]), colors=color, linewidths=0.7)
            ax.add_collection(lines, autolim=False)
            lines.set_clip_path(Rectangle((x0 - 0.5, y0 - 0.5), w, h, transform=ax.transData))
