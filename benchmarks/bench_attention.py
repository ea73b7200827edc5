"""Time the chunked attention engine against ``scaled_dot_product_attention`` doing the same work.

Usage::

    /work/venv/bin/python benchmarks/bench_attention.py [--configs 800x320,1600x640]
        [--repeats 3] [--threads N] [--chunk-size N] [--no-rss]

For each configuration (B = 1, Q = 900, C = 256, 8 heads, F = H*W + V*h*w keys, the bias of
``AttentionBiasGenerator`` with the reference config's window on random tanh weights):

- ``single path``: the engine's additive path alone (logits, sparse bias, softmax, head average
  and all statistics) vs SDPA on the same query chunks with the bias as a dense additive mask
  per chunk. Two SDPA timings: the chunk mask built inside the loop from the same sparse bias
  (``sdpa+mask``), and masks prebuilt outside the timing (``sdpa``, the stricter baseline).
- ``three paths``: the engine's baseline, multiplicative and additive paths with all statistics
  vs three SDPA calls per chunk (no mask; modulated keys; dense mask).

Times are CPU seconds of this process (``time.process_time``, robust to other load on the
machine) and wall seconds, the minimum over interleaved repeats. Ratio = engine / SDPA; the
target is <= 1.5. Finally, per configuration, the peak resident memory (``resource.getrusage``,
ru_maxrss) of a fresh process that builds the inputs and runs the three-path comparison.

On a machine shared with other busy processes, use ``--threads 1``: with more OpenMP threads
than free cores, the engine's many short parallel ops (about 20 per chunk) wait on descheduled
threads and can run several times slower, while SDPA's single fused call suffers less.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from aqr_cli.analysis.attention import (
    AttentionPath, CrossAttentionWeights, WindowBias, compare_attention, compute_attention,
)
from aqr_cli.analysis.attention.engine import auto_chunk_size
from aqr_cli.core.bias import AttentionBiasGenerator
from aqr_cli.core.configs import reference_config

NUM_QUERY, EMBED, HEADS = 900, 256, 8


def make_inputs(name: str, seed: int = 0) -> dict:
    """Random memory / positions / queries and the reference config's sparse bias."""
    cfg = reference_config(name)
    gen = torch.Generator().manual_seed(seed)
    (bh, bw), (v, ph, pw) = cfg.bev_shape, cfg.pers_shape
    num_bev, num_keys = bh * bw, cfg.num_features
    memory = 0.5 * torch.randn(1, num_keys, EMBED, generator=gen)
    key_pos = 0.5 * torch.randn(1, num_keys, EMBED, generator=gen)
    query_pos = 0.5 * torch.randn(1, NUM_QUERY, EMBED, generator=gen)
    gain = 0.7 + torch.rand(1, num_keys, 1, generator=gen)
    lw = torch.tanh(torch.randn(1, NUM_QUERY, generator=gen))
    cw = torch.tanh(torch.randn(1, NUM_QUERY, generator=gen))
    pts_idx = torch.randint(0, num_bev, (1, NUM_QUERY), generator=gen)
    pts_pers = torch.stack([torch.randint(0, v, (1, NUM_QUERY), generator=gen),
                            torch.randint(0, ph, (1, NUM_QUERY), generator=gen),
                            torch.randint(0, pw, (1, NUM_QUERY), generator=gen)], -1)
    gen_cfg = dict(cfg.attention_bias_config, debug_print=False)
    sparse = AttentionBiasGenerator(**gen_cfg).forward_sparse(lw, cw, pts_idx, pts_pers)
    return dict(name=name, memory=memory, key_pos=key_pos, query_pos=query_pos,
                modulated=memory * gain, bias=WindowBias.from_sparse(sparse),
                num_bev=num_bev, num_keys=num_keys)


def _dense_chunk(bias: WindowBias, c0: int, c1: int, num_keys: int) -> torch.Tensor:
    """Dense additive mask ``[B, 1, n, F]`` of one chunk from the sparse bias."""
    return bias.rows(c0, c1).to_dense(num_keys).unsqueeze(1)


def sdpa_paths(inp: dict, chunk: int, key_sets: list, masks: list) -> None:
    """SDPA over the same query chunks: one call per (keys, mask) pair per chunk.

    ``masks[i]`` is None (no bias), ``'build'`` (dense chunk mask built from the sparse bias
    inside the loop) or a prebuilt list of chunk masks.
    """
    q = inp["query_pos"]
    b, nq, c = q.shape
    d = c // HEADS
    qh = q.view(b, nq, HEADS, d).transpose(1, 2)
    kv = [s.view(b, -1, HEADS, d).transpose(1, 2).contiguous() for s in key_sets]
    for j, c0 in enumerate(range(0, nq, chunk)):
        c1 = min(nq, c0 + chunk)
        for kh, mask in zip(kv, masks):
            if mask == "build":
                m = _dense_chunk(inp["bias"], c0, c1, inp["num_keys"])
            else:
                m = None if mask is None else mask[j]
            F.scaled_dot_product_attention(qh[:, :, c0:c1], kh, kh, attn_mask=m)


def _time(fn, repeats: int) -> tuple[float, float]:
    """(min CPU seconds, min wall seconds) over ``repeats`` calls."""
    cpu, wall = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return min(cpu), min(wall)


def bench_config(name: str, repeats: int, chunk_size: int | None) -> list[dict]:
    inp = make_inputs(name)
    weights = CrossAttentionWeights.identity(EMBED, HEADS)
    keys = inp["memory"] + inp["key_pos"]
    keys_mod = inp["modulated"] + inp["key_pos"]
    chunk = chunk_size or auto_chunk_size(1, HEADS, inp["num_keys"])
    prebuilt = [_dense_chunk(inp["bias"], c0, min(NUM_QUERY, c0 + chunk), inp["num_keys"])
                for c0 in range(0, NUM_QUERY, chunk)]

    def engine_single():
        compute_attention(inp["query_pos"], keys, weights, num_bev=inp["num_bev"],
                          paths=[AttentionPath("additive", bias=inp["bias"])], chunk_size=chunk)

    def engine_three():
        compute_attention(inp["query_pos"], keys, weights, num_bev=inp["num_bev"],
                          paths=[AttentionPath("baseline"), AttentionPath("multiplicative", keys_mod),
                                 AttentionPath("additive", bias=inp["bias"])], chunk_size=chunk)

    cases = {
        "single path": (engine_single,
                        {"sdpa+mask": lambda: sdpa_paths(inp, chunk, [keys], ["build"]),
                         "sdpa": lambda: sdpa_paths(inp, chunk, [keys], [prebuilt])}),
        "three paths": (engine_three,
                        {"sdpa+mask": lambda: sdpa_paths(inp, chunk, [keys, keys_mod, keys],
                                                         [None, None, "build"]),
                         "sdpa": lambda: sdpa_paths(inp, chunk, [keys, keys_mod, keys],
                                                    [None, None, prebuilt])}),
    }
    rows = []
    for case, (engine, refs) in cases.items():
        engine()  # warm-up
        for ref in refs.values():
            ref()
        times = {"engine": [], **{k: [] for k in refs}}
        for _ in range(repeats):  # interleaved, so load changes hit every variant alike
            times["engine"].append(_time(engine, 1))
            for k, ref in refs.items():
                times[k].append(_time(ref, 1))
        best = {k: (min(c for c, _ in v), min(w for _, w in v)) for k, v in times.items()}
        for k in refs:
            rows.append(dict(config=name, case=case, reference=k, chunk=chunk,
                             engine_cpu=best["engine"][0], ref_cpu=best[k][0],
                             engine_wall=best["engine"][1], ref_wall=best[k][1]))
    return rows


def rss_child(name: str) -> None:
    """Build inputs and run the three-path comparison; print peak RSS (MiB) and seconds."""
    t0 = time.perf_counter()
    inp = make_inputs(name)
    t1 = time.perf_counter()
    compare_attention(inp["query_pos"], inp["memory"], inp["key_pos"], num_bev=inp["num_bev"],
                      bias=inp["bias"], modulated_memory=inp["modulated"], keep_rows=[0, 1, 2])
    t2 = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"{peak:.1f} {t2 - t1:.3f} {t2 - t0:.3f}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="800x320,1600x640")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--chunk-size", type=int, default=None)
    ap.add_argument("--no-rss", action="store_true")
    ap.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.rss_child:
        rss_child(args.rss_child)
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; B=1, Q={NUM_QUERY}, "
          f"C={EMBED}, {HEADS} heads; min over {args.repeats} interleaved repeats")
    print(f"{'config':9s} {'case':12s} {'vs':10s} {'chunk':>5s} {'engine cpu':>10s} {'sdpa cpu':>9s} "
          f"{'ratio':>6s} {'engine wall':>11s} {'sdpa wall':>9s} {'ratio':>6s}")
    for name in args.configs.split(","):
        for r in bench_config(name.strip(), args.repeats, args.chunk_size):
            print(f"{r['config']:9s} {r['case']:12s} {r['reference']:10s} {r['chunk']:5d} "
                  f"{r['engine_cpu']:10.3f} {r['ref_cpu']:9.3f} {r['engine_cpu'] / r['ref_cpu']:6.2f} "
                  f"{r['engine_wall']:11.3f} {r['ref_wall']:9.3f} {r['engine_wall'] / r['ref_wall']:6.2f}",
                  flush=True)
    if not args.no_rss:
        for name in args.configs.split(","):
            cmd = [sys.executable, __file__, "--rss-child", name.strip()]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()
            print(f"{name.strip()} three-path comparison in a fresh process: peak RSS "
                  f"{float(out[0]):.0f} MiB (limit 4096), attention {float(out[1]):.2f} s, "
                  f"total with inputs {float(out[2]):.2f} s")


if __name__ == "__main__":
    main()
