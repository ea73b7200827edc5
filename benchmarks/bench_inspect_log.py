"""Time ``aqr inspect-log``'s parse and summary on a 200 KB log and a ~100 MB log.

Usage::

    python benchmarks/bench_inspect_log.py [--big-mb 100] [--keep DIR]

The 200 KB log is the real fixture log (``../shared/fixtures/logs/AQRCMT800_320.log``); the
big one repeats it until it reaches ``--big-mb`` (every copy's records renumbered into later
epochs, so they are new records, not duplicates). For each, the script prints the wall time of
:func:`aqr_cli.logs.analysis.summarize_log` (the config quirk rules are warmed up first, so the
one-off import of torch by the rule module is not counted), its CPU time (steadier than wall
time on a shared machine) and the peak of Python allocations
during a second, traced run (``tracemalloc``): the peak should not grow with the file.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FIXTURE = ROOT.parent / "shared" / "fixtures" / "logs" / "AQRCMT800_320.log"


def build_big(target: Path, mb: float) -> Path:
    """Repeat the fixture into ``target`` until it holds ``mb`` megabytes; epochs renumbered."""
    text = FIXTURE.read_text(encoding="utf-8", errors="replace")
    pat = re.compile(r"Epoch(\(val\))? \[1\]")
    size, copy = 0, 0
    with open(target, "w", encoding="utf-8") as fh:
        while size < mb * 1e6:
            copy += 1
            chunk = pat.sub(lambda m, e=copy: f"Epoch{m.group(1) or ''} [{e}]", text)
            fh.write(chunk)
            size += len(chunk.encode("utf-8"))
    return target


def measure(path: Path) -> tuple[float, float, float, int]:
    from aqr_cli.logs.analysis import summarize_log

    t0, c0 = time.perf_counter(), time.process_time()
    run = summarize_log(path)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    tracemalloc.start()
    summarize_log(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return wall, cpu, peak / 1e6, run.train.records


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--big-mb", type=float, default=100.0)
    ap.add_argument("--keep", type=Path, default=None, help="folder for the big log (default: a "
                    "temporary folder, removed afterwards)")
    args = ap.parse_args()
    from aqr_cli.logs.analysis import summarize_log

    summarize_log(FIXTURE)  # warm-up: imports (torch via the config rules), regex compilation
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        big = build_big(folder / "big.log", args.big_mb)
        print(f"{'log':<12} {'size MB':>9} {'records':>9} {'wall s':>8} {'cpu s':>8} "
              f"{'MB/s cpu':>9} {'peak MB':>8}")
        for name, path in (("fixture", FIXTURE), ("repeated", big)):
            wall, cpu, peak, records = measure(path)
            size = path.stat().st_size / 1e6
            print(f"{name:<12} {size:>9.2f} {records:>9d} {wall:>8.3f} {cpu:>8.3f} "
                  f"{size / cpu:>9.1f} {peak:>8.2f}")


if __name__ == "__main__":
    main()
