"""Time the vectorised core (renderer, attention bias, heatmaps) against naive per-query loops.

Usage::

    python benchmarks/bench_core.py [--quick] [--runs N] [--threads N]
        [--configs 800x320,1600x640] [--sections renderer,bias]

For each reference configuration (``aqr_cli.core.configs.reference_config``), batch B = 2 and
Q = 900 queries with realistic inputs (tanh weights in [-1, 1]; BEV and camera cells inside the
maps, about 1% of them just outside), the script measures, in the same run:

- ``render <method> BEV|camera``: ``WeightRenderer.render_bev_weights`` /
  ``render_perspective_weights`` for each render method vs upstream's per-query Python loops
  of ``weight_renderer.py`` (spec section 3.3), transcribed method by method: loops over batch
  and queries, ``.item()`` per weight and coordinate, skip below the threshold, add the cropped
  kernel per query (camera: one pass per view over that view's queries); 'distance_weighted'
  builds a full-map distance field per drawn query, as upstream. Upstream draws nothing on the
  camera maps for 'bilinear' and 'distance_weighted' (all-zero maps), so those two camera rows
  time only the view masks and the postprocess.
- ``bias dense``: ``AttentionBiasGenerator.forward`` (dense [B, Q, F], fp16 as configured) vs
  ``torch.zeros`` of the same size and dtype (the floor for any dense output; target <= 2x) and
  vs a naive per-query loop that builds the dense bias (float32 zeros, each query's BEV and
  camera windows written with a slice assignment, then scale, clamp and fp16 cast as upstream).
- ``bias sparse``: ``forward_sparse`` vs the same naive loop.
- ``heatmap <reduce>``: ``SparseBias.heatmaps(reduce, dtype=float16)`` (the values of the fp16
  dense bias) vs a per-query Python loop over the dense bias in the style of upstream's bias
  picture (spec 6.3): for each query its BEV row and its own view's camera slice; ``maxabs``
  keeps the value with the strictly larger |b| (in fp16, as upstream), ``sum`` adds, ``mean``
  divides by the number of nonzero entries (both in float32). Both sides produce the same BEV
  and camera maps for every sample. An extra row (no target) times the same fast call against
  upstream's own loop, which builds only the camera maps (``upstr``): a conservative ratio.

Every fast result is compared with its naive reference once, outside the timings (column
``check``: ``ok`` or the largest difference). Times are wall-clock (``time.perf_counter``), the
median of several repeats after warm-up runs; the naive loops get fewer repeats. Ratio = naive /
fast (for ``zeros``: fast / zeros). Targets (printed as PASS/MISS, never asserted): gaussian BEV
>= 100x (aim: 150x on a quiet machine, so that load does not break it) and distance_weighted
BEV >= 10x at both configurations, heatmap aggregation >= 100x, dense bias <= 2x zero-fill.
``--quick`` uses fewer repeats (same sizes) so the whole script runs well under a minute;
``--runs N`` repeats every measurement N times and reports the min and median ratio of each
target row. Timings on a shared machine are noisy. The default is one torch thread: the
renderer calls are 0.1-5 ms of small ops, which a second thread does not speed up on a quiet
machine but slows down severalfold when the other core is busy (threads wait on each other);
the naive loops are single-threaded work either way. ``--threads 0`` keeps torch's default.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
import warnings

import torch

from aqr_cli.core.bias import AttentionBiasGenerator, window_axis_offsets
from aqr_cli.core.configs import reference_config
from aqr_cli.core.errors import QuirkWarning
from aqr_cli.core.renderer import RENDER_METHODS, WeightRenderer

BATCH, NUM_QUERY = 2, 900
TARGETS = {"gaussian": 100, "distance_weighted": 10}  # BEV, both configurations
OUTSIDE_FRACTION = 0.01  # share of queries whose BEV / camera cell lies just outside the map


def make_inputs(cfg, seed: int = 0) -> dict:
    """Realistic AQR inputs for one configuration, B = 2, Q = 900 (float tensors, as upstream)."""
    gen = torch.Generator().manual_seed(seed)
    (bh, bw), (nv, ph, pw) = cfg.bev_shape, cfg.pers_shape
    b, q = BATCH, NUM_QUERY

    def randint(hi):
        return torch.randint(0, hi, (b, q), generator=gen).float()

    def push_outside(t, size, mask):
        """Move the masked cells to -2, -1, size or size + 1 (just outside the map)."""
        choice = torch.tensor([-2.0, -1.0, float(size), float(size + 1)])
        pick = choice[torch.randint(0, 4, (b, q), generator=gen)]
        return torch.where(mask, pick, t)

    def outside():
        return torch.rand(b, q, generator=gen) < OUTSIDE_FRACTION

    lidar_w = torch.tanh(1.2 * torch.randn(b, q, generator=gen))
    camera_w = torch.tanh(1.2 * torch.randn(b, q, generator=gen))
    rows = push_outside(randint(bh), bh, outside())
    cols = push_outside(randint(bw), bw, outside())
    view = randint(nv)  # views stay in range: upstream maps unprojectable queries to view 0
    ch = push_outside(randint(ph), ph, outside())
    cw = push_outside(randint(pw), pw, outside())
    return dict(lidar_w=lidar_w, camera_w=camera_w,
                pts_bev=torch.stack([rows, cols], -1),          # (row, col)
                pts_idx=rows * bw + cols,                       # upstream pts_idx (float)
                pts_pers=torch.stack([view, ch, cw], -1))       # (view, h, w)


class NaiveRenderer:
    """Upstream ``weight_renderer.py`` (spec section 3.3), transcribed loop for loop.

    Python loops over batch and queries, ``.item()`` per weight and coordinate, skip below the
    threshold. 'distance_weighted' is upstream's own loop: a ``meshgrid`` of the whole map built
    per call and a full-map distance field, ``exp`` and masked assignment per drawn query.
    """

    def __init__(self, method: str, renderer: WeightRenderer):
        self.method = method
        self.thr = renderer.min_weight_threshold
        self.decay = renderer.distance_decay
        self.normalize = renderer.normalize_weights
        self.max_clamp = renderer.max_weight_clamp
        if method == "gaussian":
            self.kernel = renderer.gaussian_kernel.clone()
            self.half = self.kernel.shape[0] // 2

    def postprocess(self, m: torch.Tensor) -> torch.Tensor:
        m[m < self.thr] = 0
        if self.normalize:
            m = torch.clamp(m, min=0, max=self.max_clamp)
        return m

    def _stamp(self, m: torch.Tensor, b: int, y: int, x: int, weight: float) -> None:
        """Add ``weight * kernel`` at (y, x) of map b, cropped at the borders."""
        h, w = m.shape[1], m.shape[2]
        k = self.half
        y0, y1, x0, x1 = max(0, y - k), min(h, y + k + 1), max(0, x - k), min(w, x + k + 1)
        ky0, kx0 = k - (y - y0), k - (x - x0)
        region = self.kernel[ky0:ky0 + (y1 - y0), kx0:kx0 + (x1 - x0)]
        m[b, y0:y1, x0:x1] += weight * region

    def render_bev(self, weights: torch.Tensor, pts: torch.Tensor, shape) -> torch.Tensor:
        weights = weights.clone()
        if torch.any(weights < 0) or torch.any(weights > 1):
            weights.clamp_(0, 1)  # upstream clamps the caller's tensor in place
        h, w = shape
        m = torch.zeros(weights.shape[0], h, w, dtype=weights.dtype)
        render = getattr(self, f"_bev_{self.method}")
        return self.postprocess(render(m, weights, pts))

    def _bev_gaussian(self, m, weights, pts):
        bsz, nq = weights.shape
        h, w = m.shape[1:]
        for b in range(bsz):
            for q in range(nq):
                weight = weights[b, q].item()
                if weight < self.thr:
                    continue
                y, x = pts[b, q]
                y, x = int(y.item()), int(x.item())
                if 0 <= y < h and 0 <= x < w:
                    self._stamp(m, b, y, x, weight)
        return m

    def _bev_direct(self, m, weights, pts):
        bsz, nq = weights.shape
        h, w = m.shape[1:]
        for b in range(bsz):
            for q in range(nq):
                weight = weights[b, q].item()
                if weight < self.thr:
                    continue
                y, x = pts[b, q]
                y, x = int(y.item()), int(x.item())
                if 0 <= y < h and 0 <= x < w:
                    m[b, y, x] = max(m[b, y, x], weight)
        return m

    def _bev_bilinear(self, m, weights, pts):
        bsz, nq = weights.shape
        h, w = m.shape[1:]
        for b in range(bsz):
            for q in range(nq):
                weight = weights[b, q].item()
                if weight < self.thr:
                    continue
                y, x = pts[b, q]
                y, x = y.item(), x.item()
                y0, x0 = int(y), int(x)
                if not (0 <= y0 < h - 1 and 0 <= x0 < w - 1):
                    continue
                wy1, wx1 = y - y0, x - x0
                wy0, wx0 = 1 - wy1, 1 - wx1
                m[b, y0, x0] += weight * wy0 * wx0
                m[b, y0, x0 + 1] += weight * wy0 * wx1
                m[b, y0 + 1, x0] += weight * wy1 * wx0
                m[b, y0 + 1, x0 + 1] += weight * wy1 * wx1
        return m

    def _bev_distance_weighted(self, m, weights, pts):
        bsz, nq = weights.shape
        h, w = m.shape[1:]
        max_distance = min(h, w) * 0.2
        y_grid, x_grid = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        for b in range(bsz):
            for q in range(nq):
                weight = weights[b, q].item()
                if weight < self.thr:
                    continue
                y, x = pts[b, q]
                y, x = y.item(), x.item()
                distances = torch.sqrt((y_grid - y) ** 2 + (x_grid - x) ** 2)
                distance_weights = torch.exp(-distances / (max_distance * self.decay))
                distance_weights[distances > max_distance] = 0
                m[b] += weight * distance_weights
        return m

    def render_camera(self, weights: torch.Tensor, pts: torch.Tensor, shape) -> torch.Tensor:
        bsz, nq = weights.shape
        nv, h, w = shape
        out = torch.zeros(bsz, nv, h, w, dtype=weights.dtype)
        for v in range(nv):
            view_mask = (pts[:, :, 0] == v) & ~torch.isnan(pts[:, :, 1])
            if not view_mask.any():
                continue
            coords = pts[:, :, 1:3][view_mask]
            wts = weights[view_mask]
            bidx = torch.arange(bsz)[:, None].expand(-1, nq)[view_mask]
            m = torch.zeros(bsz, h, w, dtype=weights.dtype)
            if self.method in ("gaussian", "direct"):  # upstream draws nothing for the others
                for i in range(len(wts)):
                    b = bidx[i].item()
                    weight = wts[i].item()
                    if weight < self.thr:
                        continue
                    y, x = coords[i]
                    y, x = int(y.item()), int(x.item())
                    if not (0 <= y < h and 0 <= x < w):
                        continue
                    if self.method == "gaussian":
                        self._stamp(m, b, y, x, weight)
                    else:
                        m[b, y, x] = max(m[b, y, x], weight)
            out[:, v] = m
        for v in range(nv):
            out[:, v] = self.postprocess(out[:, v])
        return out


def naive_dense_bias(gen: AttentionBiasGenerator, lw, cw, pts_idx, pts_pers) -> torch.Tensor:
    """Dense bias [B, Q, F] built query by query (local, uniform window, as configured)."""
    assert gen.use_local_bias and not gen.use_gaussian_window
    bh, bw, nv, ph, pw = gen.bev_h, gen.bev_w, gen.num_views, gen.pers_h, gen.pers_w
    offs = window_axis_offsets(gen.window_size, gen.window_parity)
    lo, hi = int(offs[0]), int(offs[-1]) + 1
    hw = bh * bw
    bsz, nq = lw.shape
    bias = torch.zeros(bsz, nq, hw + nv * ph * pw)  # float32, as upstream
    for b in range(bsz):
        for q in range(nq):
            row = bias[b, q]
            p = pts_idx[b, q].item()
            qy, qx = math.floor(p / bw), int(p % bw)
            y0, y1, x0, x1 = max(qy + lo, 0), min(qy + hi, bh), max(qx + lo, 0), min(qx + hi, bw)
            if y0 < y1 and x0 < x1:
                row[:hw].view(bh, bw)[y0:y1, x0:x1] = lw[b, q]
            v, r, c = (int(t) for t in pts_pers[b, q].tolist())
            y0, y1, x0, x1 = max(r + lo, 0), min(r + hi, ph), max(c + lo, 0), min(c + hi, pw)
            if y0 < y1 and x0 < x1:
                row[hw:].view(nv, ph, pw)[v, y0:y1, x0:x1] = cw[b, q]
    s = gen.bias_scale.detach()[0]
    if gen.learnable_scale:
        s = torch.clamp(s, min=gen.min_scale, max=gen.max_scale)
    bias = bias * s
    m = min(5.0, gen.max_scale)
    bias = torch.clamp(bias, min=-m, max=m)
    return bias.half() if gen.fp16 else bias


def naive_heatmaps(dense: torch.Tensor, pts_pers: torch.Tensor, bev_shape, pers_shape,
                   reduce: str):
    """Per-query loop over the dense bias: (bev [B, H, W], camera [B, V, h, w]) float32.

    Upstream's rule for the picture (each query: its own view's camera slice; maxabs keeps the
    value with the strictly larger |b|, in the bias dtype) applied to the BEV row as well, so
    that the output equals ``SparseBias.heatmaps``. ``sum`` / ``mean`` accumulate in float32.
    """
    bsz, nq, _ = dense.shape
    bh, bw = bev_shape
    nv, ph, pw = pers_shape
    hw = bh * bw
    acc = dense.dtype if reduce == "maxabs" else torch.float32
    bev_out = torch.zeros(bsz, bh, bw)
    cam_out = torch.zeros(bsz, nv, ph, pw)
    for b in range(bsz):
        bev = torch.zeros(hw, dtype=acc)
        cam = torch.zeros(nv, ph, pw, dtype=acc)
        if reduce == "mean":
            bev_n = torch.zeros(hw)
            cam_n = torch.zeros(nv, ph, pw)
        for q in range(nq):
            v = int(pts_pers[b, q, 0].item())
            row = dense[b, q]
            bv = row[:hw].to(acc)
            cv = row[hw:].view(nv, ph, pw)[v].to(acc)
            if reduce == "maxabs":
                bev = torch.where(bv.abs() > bev.abs(), bv, bev)
                cam[v] = torch.where(cv.abs() > cam[v].abs(), cv, cam[v])
            else:
                bev += bv
                cam[v] += cv
                if reduce == "mean":
                    bev_n += bv != 0
                    cam_n[v] += cv != 0
        if reduce == "mean":
            bev = torch.where(bev_n > 0, bev / bev_n.clamp(min=1), 0.0)
            cam = torch.where(cam_n > 0, cam / cam_n.clamp(min=1), 0.0)
        bev_out[b] = bev.view(bh, bw)
        cam_out[b] = cam
    return bev_out, cam_out


def upstream_camera_picture(dense: torch.Tensor, pts_pers: torch.Tensor, bev_shape, pers_shape):
    """Upstream ``_visualize_bias_on_camera_views`` aggregation (camera maps only), per sample.

    Returns camera maps [B, V, h, w] float32 (upstream keeps them in the bias dtype).
    """
    bsz, nq, _ = dense.shape
    nv, ph, pw = pers_shape
    hw = bev_shape[0] * bev_shape[1]
    out = torch.zeros(bsz, nv, ph, pw)
    for b in range(bsz):
        camera_bias = dense[b, :, hw:hw + nv * ph * pw]
        maps = torch.zeros(nv, ph, pw, dtype=camera_bias.dtype)
        pers = pts_pers[b]
        for q in range(camera_bias.shape[0]):
            v = int(pers[q, 0].item())
            if v < 0 or v >= nv:
                continue
            view_bias = camera_bias[q][v * ph * pw:(v + 1) * ph * pw].view(ph, pw)
            mask = view_bias.abs() > maps[v].abs()
            maps[v] = torch.where(mask, view_bias, maps[v])
        out[b] = maps.float()
    return out


def median_time(fn, repeats: int, warmup: int):
    """(median wall time in s of ``fn()`` over ``repeats`` runs after ``warmup`` runs, last result).

    The result of each call is dropped before the next call starts.
    """
    for _ in range(warmup):
        fn()
    times, out = [], None
    for _ in range(repeats):
        out = None
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def compare(fast, ref, atol: float = 1e-5) -> str:
    """``ok`` if the outputs agree (exactly for fp16 tensors, else within ``atol``)."""
    fast = fast if isinstance(fast, tuple) else (fast,)
    ref = ref if isinstance(ref, tuple) else (ref,)
    worst = 0.0
    for a, b in zip(fast, ref):
        if a.shape != b.shape:
            return f"SHAPE {tuple(a.shape)} vs {tuple(b.shape)}"
        diff = (a.detach().double() - b.detach().double()).abs()
        worst = max(worst, float(diff.max()) if diff.numel() else 0.0)
    return "ok" if worst <= atol else f"DIFF max|d|={worst:.2g}"


def fmt_ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:8.3f} ms" if ms < 10 else f"{ms:8.1f} ms"


def fmt_ratio(r: float) -> str:
    return f"{r:.2f}x" if r < 10 else f"{r:.0f}x"


class Table:
    """Collect and print result rows; remember the ratios of rows with targets, per run."""

    def __init__(self):
        self.targets: dict[tuple[str, str, str], tuple[str, float, list[float]]] = {}

    def row(self, cfg: str, label: str, fast: float, ref_name: str, ref: float, ratio: float,
            check: str, target: str | None = None, passed: bool | None = None,
            goal: float | None = None) -> None:
        """Print one row; ``goal`` (with ``target``): the ratio needed, ``>=`` unless the
        target reads ``<=``."""
        tgt = ""
        if target is not None:
            verdict = "PASS" if passed else "MISS"
            tgt = f"(target {target}) {verdict}"
            entry = self.targets.setdefault((cfg, label, ref_name), (target, goal or 0.0, []))
            entry[2].append(ratio)
        print(f"{cfg:9s}{label:36s} fast {fmt_ms(fast)}   {ref_name:5s} {fmt_ms(ref)}   "
              f"ratio {fmt_ratio(ratio):>7s}   check {check:4s}   {tgt}", flush=True)


def bench_renderer(name, cfg, inp, table, reps) -> None:
    fast_r, fast_w, naive_r, naive_w = reps
    bev_shape, pers_shape = cfg.bev_shape, cfg.pers_shape
    for method in RENDER_METHODS:
        renderer = WeightRenderer(**dict(cfg.renderer_config, render_method=method))
        naive = NaiveRenderer(method, renderer)
        for where in ("BEV", "camera"):
            if where == "BEV":
                w, pts = inp["lidar_w"], inp["pts_bev"]
                fast_fn = lambda: renderer.render_bev_weights(w, pts)
                naive_fn = lambda: naive.render_bev(w, pts, bev_shape)
            else:
                w, pts = inp["camera_w"], inp["pts_pers"]
                fast_fn = lambda: renderer.render_perspective_weights(w, pts)
                naive_fn = lambda: naive.render_camera(w, pts, pers_shape)
            t_fast, fast_out = median_time(fast_fn, fast_r, fast_w)
            # distance_weighted BEV is the slowest loop (a full-map field per query)
            slow = method == "distance_weighted" and where == "BEV"
            t_naive, naive_out = median_time(naive_fn, max(1, naive_r - slow), naive_w)
            check = compare(fast_out, naive_out)
            ratio = t_naive / t_fast
            label = f"render {method} {where}"
            if method in ("bilinear", "distance_weighted") and where == "camera":
                label += " (0)"
            target = passed = None
            if where == "BEV" and method in TARGETS:
                target, passed = f">={TARGETS[method]}x", ratio >= TARGETS[method]
            table.row(name, label, t_fast, "naive", t_naive, ratio, check, target, passed,
                      TARGETS.get(method))


def bench_bias(name, cfg, inp, table, reps) -> None:
    fast_r, fast_w, naive_r, naive_w = reps
    gen = AttentionBiasGenerator(**cfg.attention_bias_config)
    args = (inp["lidar_w"], inp["camera_w"], inp["pts_idx"], inp["pts_pers"])
    # default grad mode (learnable scale, as configured) for the fast and the naive paths alike
    t_dense, dense = median_time(lambda: gen(*args), fast_r, fast_w)
    shape, dtype = tuple(dense.shape), dense.dtype
    t_sparse, sparse = median_time(lambda: gen.forward_sparse(*args), fast_r, fast_w)
    t_zeros, _ = median_time(lambda: torch.zeros(shape, dtype=dtype), fast_r, fast_w)
    t_naive, ref_dense = median_time(lambda: naive_dense_bias(gen, *args), naive_r, naive_w)
    check = compare(dense, ref_dense, atol=0.0)
    sparse_check = compare(sparse.to_dense(), ref_dense, atol=0.0)
    del ref_dense

    dt = str(dtype).replace("torch.", "")
    ratio = t_dense / t_zeros
    table.row(name, f"bias dense {dt} vs zero-fill", t_dense, "zeros", t_zeros, ratio, "-",
              "<=2x", ratio <= 2.0, 2.0)
    table.row(name, f"bias dense {dt}", t_dense, "naive", t_naive, t_naive / t_dense, check)
    table.row(name, "bias forward_sparse", t_sparse, "naive", t_naive, t_naive / t_sparse,
              sparse_check)

    # heatmaps: from the sparse bias (values rounded to the dense dtype) vs a loop over the
    # fp16 dense bias
    for reduce in ("maxabs", "sum", "mean"):
        fast_fn = lambda: sparse.heatmaps(reduce, dtype=dtype)
        naive_fn = lambda: naive_heatmaps(dense, inp["pts_pers"], cfg.bev_shape,
                                          cfg.pers_shape, reduce)
        t_fast, fast_out = median_time(fast_fn, fast_r, fast_w)
        t_naive, naive_out = median_time(naive_fn, naive_r, naive_w)
        check = compare(fast_out, naive_out, atol=0.0 if reduce == "maxabs" else 1e-4)
        ratio = t_naive / t_fast
        table.row(name, f"heatmap {reduce}", t_fast, "naive", t_naive, ratio, check,
                  ">=100x", ratio >= 100, 100)
        if reduce == "maxabs":
            # the same fast call vs upstream's own loop, which builds only the camera maps
            t_up, up_out = median_time(
                lambda: upstream_camera_picture(dense, inp["pts_pers"], cfg.bev_shape,
                                                cfg.pers_shape), naive_r, naive_w)
            check = compare(fast_out[1], up_out, atol=0.0)
            table.row(name, "heatmap maxabs vs camera-only loop", t_fast, "upstr", t_up,
                      t_up / t_fast, check)


def print_targets(table: Table) -> None:
    """One line per target row: min and median ratio over the runs, judged on the median."""
    print("-- targets (ratio min / median over runs; the median is judged)")
    n_pass = 0
    for (cfg_name, label, ref_name), (target, goal, ratios) in table.targets.items():
        low, mid = min(ratios), statistics.median(ratios)
        ok = mid <= goal if target.startswith("<=") else mid >= goal
        n_pass += ok
        print(f"{'PASS' if ok else 'MISS'}  {cfg_name:9s}{label:36s} {fmt_ratio(low):>7s} / "
              f"{fmt_ratio(mid):>7s} vs {ref_name} over {len(ratios)} run(s) (target {target})")
    print(f"{n_pass}/{len(table.targets)} targets met")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="fewer repeats (same sizes): the whole script in well under a minute")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch.set_num_threads(N); 0 keeps torch's default (default: 1)")
    ap.add_argument("--configs", default="800x320,1600x640",
                    help="comma-separated reference configs (default: both)")
    ap.add_argument("--sections", default="renderer,bias",
                    help="comma-separated sections to run: renderer, bias (default: both)")
    ap.add_argument("--runs", type=int, default=1,
                    help="repeat every measurement N times; the targets then show the min and "
                         "median ratio over the runs and judge the median (default: 1)")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore", QuirkWarning)
    if args.threads:
        torch.set_num_threads(args.threads)
    # (fast repeats, fast warm-ups, naive repeats, naive warm-ups)
    reps = (5, 1, 1, 0) if args.quick else (15, 3, 3, 1)
    start = time.perf_counter()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads (torch.get_num_threads); "
          f"B={BATCH}, Q={NUM_QUERY}, tanh weights, ~{OUTSIDE_FRACTION:.0%} cells outside; "
          f"median of {reps[0]} fast / {reps[2]} naive runs after {reps[1]} / {reps[3]} warm-ups"
          f"{' (--quick)' if args.quick else ''}")
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    if load is not None:
        print(f"{os.cpu_count()} CPUs, load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} "
              f"(1 / 5 / 15 min; other jobs on the machine skew multi-threaded timings)")
    print("ratio = reference / fast (zero-fill row: fast / zeros); '(0)' = all-zero camera maps "
          "upstream; check = fast output vs reference")
    table = Table()
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    sections = {x.strip() for x in args.sections.split(",")}
    for run in range(1, max(1, args.runs) + 1):
        for name in configs:
            cfg = reference_config(name)
            inp = make_inputs(cfg)
            print(f"-- {name}: BEV {cfg.bev_shape[0]}x{cfg.bev_shape[1]}, cameras "
                  f"{'x'.join(map(str, cfg.pers_shape))}, sigma "
                  f"{cfg.renderer_config['gaussian_sigma']}, window "
                  f"{cfg.attention_bias_config['window_size']}, F {cfg.num_features}"
                  f"{f' (run {run} of {args.runs})' if args.runs > 1 else ''}")
            if "renderer" in sections:
                bench_renderer(name, cfg, inp, table, reps)
            if "bias" in sections:
                bench_bias(name, cfg, inp, table, reps)
    print_targets(table)
    print(f"total {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
