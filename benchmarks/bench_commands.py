"""Time whole ``aqr`` command runs against the import floor, as a user waits for them.

Usage::

    python benchmarks/bench_commands.py [--quick] [--repeats N] [--only NAME,...] [--keep DIR]

Each command of issue 11 runs as a fresh process (``python -m aqr_cli ...`` from this checkout,
``--quiet``, a new ``--out`` folder each time), several times; so does the import floor
``python -c "import torch, matplotlib.pyplot"``, in the same run, interleaved with the commands
so that both see the same load. Printed per command: the median wall time, the median CPU time
(user + system of the process and the workers it waited for: above the wall time means both
cores were busy), the peak resident memory, and the ratios of the median wall and CPU times
to the floor's (on a machine shared with other jobs the CPU ratio is the steadier one).

Peak memory: ``ru_maxrss`` of the run from ``os.wait4``, i.e. the largest single process of the
run (workers included, not summed), plus ``tree``: the largest sum of the resident sizes of the
process and its descendants, sampled every 20 ms from ``/proc`` (shared pages of forked workers
are counted once per process, so this overstates a pool's real footprint).

Commands (fixtures from ``../shared/fixtures``):

- ``compare-dump``: ``compare-modes weights_iter_200_train.pth --checkpoint cmt_aqr_800x320_head.pth``
- ``compare-1600``: ``compare-modes --synthetic --reference 1600x640``
- ``render-dump``: ``render-weights weights_iter_200_train.pth --checkpoint ...``
- ``render-synthetic``: ``render-weights --synthetic``
- ``render-batch20``: ``render-weights`` on a folder of 20 dumps (``weights_iter_100.pth``
  saved again with iterations 100, 200, ..., 2000) with the checkpoint; also printed per dump
  beyond the first: ``(batch - render-dump) / 19``.

Bytecode: the package is compiled first (``compileall``, into its git-ignored ``__pycache__``), as
an installed package is by pip; these machines set ``PYTHONDONTWRITEBYTECODE=1``, under which
every run of a source checkout would compile its modules again (0.1-0.2 s a run) while the
floor's torch and matplotlib load their installed bytecode.

Targets (issue 11, printed as PASS/MISS, never asserted): compare-dump <= 2.0x the floor,
compare-1600 <= 4x and tree/peak RSS < 700 MB, render-dump and render-synthetic <= 1.5x, the batch
<= 0.5 s per dump beyond the first. ``--quick``: 2 repeats (1 for the batch) instead of 5 (3).
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures"
DUMP = FIXTURES / "weights_iter_200_train.pth"
PLAIN_DUMP = FIXTURES / "weights_iter_100.pth"
CHECKPOINT = FIXTURES / "cmt_aqr_800x320_head.pth"
FLOOR = [sys.executable, "-c", "import torch, matplotlib.pyplot"]
BATCH = 20


def commands(batch_dir: Path) -> dict[str, list[str]]:
    """Name -> argument list after ``python -m aqr_cli`` (``--out`` is added per run)."""
    ck = ["--checkpoint", str(CHECKPOINT)]
    return {
        "compare-dump": ["compare-modes", str(DUMP), *ck],
        "compare-1600": ["compare-modes", "--synthetic", "--reference", "1600x640"],
        "render-dump": ["render-weights", str(DUMP), *ck],
        "render-synthetic": ["render-weights", "--synthetic"],
        "render-batch20": ["render-weights", str(batch_dir), *ck],
    }


TARGETS = {  # name -> (max ratio to the floor, max RSS in MB or None)
    "compare-dump": (2.0, None),
    "compare-1600": (4.0, 700),
    "render-dump": (1.5, None),
    "render-synthetic": (1.5, None),
}


def build_batch(folder: Path) -> Path:
    """Write ``BATCH`` copies of the plain fixture dump with iterations 100 .. 2000."""
    import torch  # only here: the timed processes import it themselves

    dump = torch.load(PLAIN_DUMP, map_location="cpu", weights_only=False)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, BATCH + 1):
        dump["iteration"] = 100 * i
        torch.save(dump, folder / f"weights_iter_{100 * i}.pth")
    return folder


def _children(pid: int) -> list[int]:
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    out = []
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                out.extend(int(x) for x in fh.read().split())
        except OSError:
            pass
    return out


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
    except (OSError, IndexError, ValueError):
        return 0


def _sample_tree(pid: int, stop: threading.Event, out: list) -> None:
    """Keep ``out[0]`` = the largest summed RSS (kB) of ``pid``'s process tree seen so far."""
    while not stop.is_set():
        todo, total, seen = [pid], 0, 0
        while todo:
            p = todo.pop()
            total += _rss_kb(p)
            seen += 1
            todo.extend(_children(p))
        out[0] = max(out[0], total)
        out[1] = max(out[1], seen)
        stop.wait(0.02)


def run_once(argv: list[str], env: dict) -> dict:
    """Run ``argv``; return wall s, cpu s, max RSS MB (largest process), tree RSS MB, procs."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stop, tree = threading.Event(), [0, 0]
    sampler = threading.Thread(target=_sample_tree, args=(proc.pid, stop, tree), daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    stop.set()
    sampler.join()
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(argv)}\n{err}")
    return dict(wall=wall, cpu=usage.ru_utime + usage.ru_stime, rss=usage.ru_maxrss / 1024,
                tree=tree[0] / 1024, procs=tree[1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 repeats (batch: 1) instead of 5 (3)")
    ap.add_argument("--repeats", type=int, default=None, help="repeats per command")
    ap.add_argument("--only", default="", help="comma-separated command names to run")
    ap.add_argument("--keep", type=Path, default=None,
                    help="keep the last output folder of each command here")
    args = ap.parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 5)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    start = time.perf_counter()
    compileall.compile_dir(str(ROOT / "aqr_cli"), quiet=1)
    with tempfile.TemporaryDirectory(prefix="aqr-bench-") as tmp:
        tmp = Path(tmp)
        cmds = commands(tmp / "dumps")
        names = [n for n in cmds if not args.only or n in args.only.split(",")]
        if "render-batch20" in names:
            build_batch(tmp / "dumps")
        load = os.getloadavg()
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
              f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}; median of {repeats} runs "
              f"(batch: {max(1, repeats - 2)}), floor runs interleaved", flush=True)
        results: dict[str, list[dict]] = {"floor": [], **{n: [] for n in names}}
        run_once(FLOOR, env)  # warm the file cache once
        for i in range(repeats):
            for name in names:
                if name == "render-batch20" and i >= max(1, repeats - 2):
                    continue
                results["floor"].append(run_once(FLOOR, env))
                out = tmp / f"out-{name}-{i}"
                cmd = [sys.executable, "-m", "aqr_cli", *cmds[name], "--out", str(out), "--quiet"]
                results[name].append(run_once(cmd, env))
                if args.keep is not None and i == 0:
                    dest = args.keep / name
                    shutil.rmtree(dest, ignore_errors=True)
                    shutil.copytree(out, dest)
                shutil.rmtree(out, ignore_errors=True)
        floor = statistics.median(r["wall"] for r in results["floor"])
        floor_cpu = statistics.median(r["cpu"] for r in results["floor"])
        print(f"{'command':18s} {'wall':>8s} {'cpu':>8s} {'peak RSS':>9s} {'tree RSS':>9s} "
              f"{'procs':>5s} {'ratio':>7s} {'cpu ratio':>9s}")
        verdicts = []
        for name, runs in results.items():
            wall = statistics.median(r["wall"] for r in runs)
            cpu = statistics.median(r["cpu"] for r in runs)
            rss = max(r["rss"] for r in runs)
            tree = max(r["tree"] for r in runs)
            procs = max(r["procs"] for r in runs)
            print(f"{name:18s} {wall:7.2f}s {cpu:7.2f}s {rss:6.0f} MB {tree:6.0f} MB {procs:5d} "
                  f"{wall / floor:6.2f}x {cpu / floor_cpu:8.2f}x", flush=True)
            if name in TARGETS:
                ratio_max, rss_max = TARGETS[name]
                ok = wall / floor <= ratio_max and (rss_max is None or max(rss, tree) < rss_max)
                want = f"<= {ratio_max}x" + (f", RSS < {rss_max} MB" if rss_max else "")
                verdicts.append((name, f"{wall / floor:.2f}x", want, ok))
        if "render-batch20" in results and "render-dump" in results:
            batch = statistics.median(r["wall"] for r in results["render-batch20"])
            single = statistics.median(r["wall"] for r in results["render-dump"])
            per = (batch - single) / (BATCH - 1)
            print(f"render-batch20: {per:.2f} s per dump beyond the first "
                  f"({batch:.1f} s for {BATCH}, {single:.1f} s for one)")
            verdicts.append(("render-batch20", f"{per:.2f} s/dump", "<= 0.5 s/dump", per <= 0.5))
    print(f"floor: python -c \"import torch, matplotlib.pyplot\" = {floor:.2f} s (median of "
          f"{len(results['floor'])})")
    for name, got, want, ok in verdicts:
        print(f"{'PASS' if ok else 'MISS'}  {name:18s} {got:>12s} (target {want})")
    print(f"total {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
