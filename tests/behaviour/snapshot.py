"""Behaviour snapshot: the bytes a fixed set of commands writes, recorded before code moves.

    python tests/behaviour/snapshot.py record [FILE]   # write FILE (default: baseline.json here)
    python tests/behaviour/snapshot.py check [FILE]    # re-run, list every output that differs

Each case runs ``python -m aqr_cli ...`` in a fresh temporary folder at a fixed terminal width
and records the SHA-256 of stdout, stderr and every file written (PNG bytes, JSON, CSV, NPZ).
Text is normalised first (fixture and sample folders become ``$FIX``/``$SAMPLE``, the temporary
folder ``$TMP``) so a snapshot recorded in one checkout can be checked in another.

Bytes are those of one machine: torch's reductions split work by thread count and CPU, so
numbers (and the PNGs drawn from them) may differ in the last bits on another machine. Record
the baseline on the machine you check on, before moving code. compare-modes' attention
statistics also differ in the last bits in a few runs of the same command on one machine
(measured 2026-12-04: 2 of 30 runs before the derived paths, 4 of 30 after, with ``--scales ""``;
the baseline path too): a single difference there in ``compare-*`` summary.json and the PNGs
drawn from it is that, not a moved-code bug, if a second check passes.

Not a test: it takes about a minute. Run ``check`` after a refactoring; a difference is either
a bug of the move or an intended change, in which case ``record`` again and say so in the
commit.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIX = Path(os.environ.get("AQR_FIXTURES", ROOT.parent / "shared" / "fixtures")).resolve()
SAMPLE = (ROOT / "sample_data").resolve()
BASELINE = Path(__file__).with_name("baseline.json")

DUMP = f"{FIX}/weights_iter_200_train.pth"
DUMP100 = f"{FIX}/weights_iter_100.pth"
CKPT = f"{FIX}/cmt_aqr_800x320_head.pth"
RIG = f"{FIX}/camera_rig_800x320.json"
CONFIGS = sorted(str(p) for p in (FIX / "configs").glob("*.py"))
LOGS = sorted(str(p) for p in (FIX / "logs").glob("*.log"))

CASES: dict[str, list[str]] = {
    "inspect-ckpt": ["inspect-checkpoint", CKPT],
    "inspect-ckpt-json": ["inspect-checkpoint", CKPT, "--json"],
    "inspect-ckpt-rig-out": ["inspect-checkpoint", CKPT, "--rig", RIG, "--out", "out"],
    "inspect-dump": ["inspect-checkpoint", DUMP, "--checkpoint", CKPT],
    "inspect-dump-json": ["inspect-checkpoint", DUMP, "--json"],
    "inspect-configs": ["inspect-checkpoint", *CONFIGS],
    "inspect-configs-json": ["inspect-checkpoint", *CONFIGS, "--json"],
    "inspect-config-diff": ["inspect-checkpoint", *CONFIGS, "--diff"],
    "render-dump": ["render-weights", DUMP, "--checkpoint", CKPT, "--out", "out", "--save-arrays"],
    "render-dump-json": ["render-weights", DUMP, "--out", "out", "--json"],
    "render-ckpt": ["render-weights", CKPT, "--out", "out"],
    "render-synthetic": ["render-weights", "--synthetic", "--weights", "scene", "--method", "all",
                         "--out", "out"],
    "render-batch": ["render-weights", DUMP100, DUMP, "--checkpoint", CKPT, "--out", "out"],
    "compare-dump": ["compare-modes", DUMP, "--checkpoint", CKPT, "--out", "out"],
    "compare-dump-json": ["compare-modes", DUMP, "--checkpoint", CKPT, "--json", "-o", "out"],
    "compare-synthetic": ["compare-modes", "--synthetic", "--weights", "scene", "--out", "out"],
    "inspect-log": ["inspect-log", *LOGS, "--out", "out"],
    "inspect-log-json": ["inspect-log", *LOGS, "--json"],
    "bad-input": ["render-weights", f"{FIX}/README.md", "--out", "out"],
}


def _normalise(data: bytes, tmp: str) -> bytes:
    for real, token in ((tmp, "$TMP"), (str(FIX), "$FIX"), (str(SAMPLE), "$SAMPLE")):
        data = data.replace(real.encode(), token.encode())
    return data


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def run_case(args: list[str]) -> dict[str, str]:
    env = dict(os.environ, COLUMNS="100", NO_COLOR="1", PYTHONPATH=str(ROOT), TERM="dumb",
               PYTHONHASHSEED="0")
    env.pop("FORCE_COLOR", None)
    with tempfile.TemporaryDirectory(prefix="aqr-snap-") as tmp:
        tmp = os.path.realpath(tmp)
        proc = subprocess.run([sys.executable, "-m", "aqr_cli", *args], cwd=tmp, env=env,
                              capture_output=True, timeout=600)
        rec = {"exit": str(proc.returncode),
               "stdout": _digest(_normalise(proc.stdout, tmp)),
               "stderr": _digest(_normalise(proc.stderr, tmp))}
        for f in sorted(Path(tmp).rglob("*")):
            if f.is_file():
                data = f.read_bytes()
                if f.suffix in {".json", ".csv", ".txt"}:
                    data = _normalise(data, tmp)
                rec["file:" + str(f.relative_to(tmp))] = _digest(data)
        return rec


def run_all() -> dict[str, dict[str, str]]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = pool.map(run_case, CASES.values())
        return dict(zip(CASES, results))


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"record", "check"}:
        print(__doc__)
        return 2
    path = Path(argv[1]) if len(argv) > 1 else BASELINE
    now = run_all()
    if argv[0] == "record":
        path.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n")
        print(f"recorded {sum(len(v) for v in now.values())} outputs of {len(now)} cases to {path}")
        return 0
    before = json.loads(path.read_text())
    diffs = []
    for case in sorted(set(before) | set(now)):
        b, n = before.get(case, {}), now.get(case, {})
        for key in sorted(set(b) | set(n)):
            if b.get(key) != n.get(key):
                diffs.append(f"{case}: {key}: {b.get(key, '-')} -> {n.get(key, '-')}")
    print("\n".join(diffs) if diffs else f"same bytes: {len(now)} cases")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
