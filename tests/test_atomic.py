"""Atomic report writes: whole files and folders or nothing, never partial ones."""

from __future__ import annotations

import os

import numpy as np
import pytest

from aqr_cli.io import (
    OutputError,
    atomic_open,
    atomic_save_figure,
    atomic_save_npz,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    staged_output_dir,
)


def _listing(folder) -> list[str]:
    return sorted(os.listdir(folder))


def test_write_text_bytes_json(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "héllo\n")
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    atomic_write_json(tmp_path / "sub" / "c.json", {"x": [1, 2]})
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo\n"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "sub" / "c.json").read_text() == '{\n  "x": [\n    1,\n    2\n  ]\n}\n'
    assert _listing(tmp_path) == ["a.txt", "b.bin", "sub"]
    mode = (tmp_path / "a.txt").stat().st_mode & 0o777
    assert mode == 0o666 & ~_current_umask()


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_failure_midway_leaves_no_file(tmp_path):
    target = tmp_path / "report.txt"
    with pytest.raises(RuntimeError):
        with atomic_open(target, "w") as f:
            f.write("half a report")
            raise RuntimeError("boom")
    assert not target.exists()
    assert _listing(tmp_path) == []


def test_failure_keeps_the_previous_file(tmp_path):
    target = tmp_path / "report.json"
    atomic_write_json(target, {"v": 1})
    with pytest.raises(ValueError):
        atomic_write_json(target, {"v": float("nan")})  # NaN refused before anything is written
    with pytest.raises(RuntimeError):
        with atomic_open(target, "wb") as f:
            f.write(b"{")
            raise RuntimeError("boom")
    assert target.read_text() == '{\n  "v": 1\n}\n'
    assert _listing(tmp_path) == ["report.json"]


def test_failed_replace_cleans_up(tmp_path, monkeypatch):
    target = tmp_path / "x.bin"
    atomic_write_bytes(target, b"old")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert _listing(tmp_path) == ["x.bin"]


def _figure():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3, 2), dpi=50)
    ax = fig.add_subplot()
    ax.plot([0, 1, 2], [1, 0, 1])
    ax.set_title("t")
    return fig


def test_save_figure_deterministic(tmp_path):
    a = atomic_save_figure(_figure(), tmp_path / "a.png")
    b = atomic_save_figure(_figure(), tmp_path / "b.png")
    data = a.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert data == b.read_bytes()
    assert b"Software" not in data and b"matplotlib" not in data.lower()
    with pytest.raises(ValueError, match="PNG only"):
        atomic_save_figure(_figure(), tmp_path / "c.pdf")


def test_save_figure_failure_leaves_nothing(tmp_path):
    fig = _figure()

    def broken_savefig(fp, **kwargs):
        fp.write(b"\x89PNG partial")
        raise RuntimeError("renderer crashed")

    fig.savefig = broken_savefig
    with pytest.raises(RuntimeError):
        atomic_save_figure(fig, tmp_path / "fig.png")
    assert _listing(tmp_path) == []


def test_save_npz(tmp_path):
    import torch

    p = atomic_save_npz(tmp_path / "arrays.npz", a=np.arange(3), b=torch.ones(2, 2))
    with np.load(p) as z:
        assert z["a"].tolist() == [0, 1, 2] and z["b"].shape == (2, 2)
    with pytest.raises(ValueError, match="object array"):
        atomic_save_npz(tmp_path / "obj.npz", o=np.array([{"x": 1}], dtype=object))
    assert _listing(tmp_path) == ["arrays.npz"]


def test_staged_dir_success_and_replace(tmp_path):
    out = tmp_path / "out"
    with staged_output_dir(out) as d:
        (d / "one.png").write_bytes(b"1")
        (d / "cam").mkdir()
        (d / "cam" / "two.json").write_text("{}")
        assert not out.exists()  # nothing visible until the block succeeds
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["cam", "cam/two.json", "one.png"]
    with staged_output_dir(out) as d:
        (d / "new.txt").write_text("new")
    assert _listing(out) == ["new.txt"]  # old contents replaced, not mixed
    assert _listing(tmp_path) == ["out"]  # no staging or old folders left behind


def test_staged_dir_failure_midway(tmp_path):
    fresh = tmp_path / "fresh"
    with pytest.raises(RuntimeError):
        with staged_output_dir(fresh) as d:
            (d / "partial.png").write_bytes(b"half")
            raise RuntimeError("boom")
    assert not fresh.exists()
    assert _listing(tmp_path) == []

    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "old.txt").write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with staged_output_dir(kept) as d:
            (d / "partial.png").write_bytes(b"half")
            raise KeyboardInterrupt
    assert _listing(kept) == ["old.txt"]
    assert _listing(tmp_path) == ["kept"]


def test_output_errors(tmp_path, monkeypatch):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(OutputError, match="not a folder"):
        staged_output_dir(a_file).__enter__()
    with pytest.raises(OutputError, match="not a folder"):
        atomic_write_text(a_file / "inside.txt", "x")
    with pytest.raises(OutputError, match="it is a folder"):
        atomic_write_text(tmp_path, "x")
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(locked) else real_access(p, mode))
    with pytest.raises(OutputError, match="not writable"):
        with staged_output_dir(locked / "out"):
            pass
    with pytest.raises(OutputError, match="not writable"):
        atomic_write_text(locked / "r.txt", "x")
    assert _listing(locked) == []
    assert isinstance(OutputError("x"), OSError)


def _figures(n):
    from matplotlib.figure import Figure

    out = []
    for i in range(n):
        fig = Figure(figsize=(3, 2), dpi=80)
        for j in range(1 + i % 3):
            ax = fig.add_subplot(1, 3, j + 1)
            ax.imshow(np.arange(20 * (i + 1)).reshape(4, -1) % 7, cmap="RdBu_r")
            ax.set_title(f"{i}.{j}")
        out.append(fig)
    return out


def test_save_figures_in_workers_gives_the_serial_bytes(tmp_path):
    from aqr_cli.io.atomic import atomic_save_figures

    figs = _figures(5)
    serial = atomic_save_figures([(f, tmp_path / f"s{i}.png") for i, f in enumerate(figs)], workers=1)
    paths = atomic_save_figures([(f, tmp_path / f"p{i}.png") for i, f in enumerate(figs)], workers=2)
    assert [p.name for p in paths] == [f"p{i}.png" for i in range(5)]
    for s, p in zip(serial, paths):
        assert p.read_bytes() == s.read_bytes()
    assert not [n for n in _listing(tmp_path) if not n.endswith(".png")]  # no temporaries left


def test_save_figures_worker_failure_is_raised(tmp_path):
    from aqr_cli.io.atomic import atomic_save_figures

    figs = _figures(2)

    def broken_savefig(fp, **kwargs):
        raise RuntimeError("renderer crashed")

    figs[1].savefig = broken_savefig  # saved by whichever process takes it first
    with pytest.raises(RuntimeError, match="renderer crashed"):
        atomic_save_figures([(f, tmp_path / f"f{i}.png") for i, f in enumerate(figs)], workers=2)
    assert set(_listing(tmp_path)) <= {"f0.png"}            # whole files only, no temporaries


def test_deferred_figures_are_built_once_where_they_are_saved(tmp_path):
    """Lazy figures (views.outputs.LazyFigure) are built by the process that saves them, each
    exactly once however the processes share them, with the bytes of a serial save."""
    from aqr_cli.io.atomic import atomic_save_figures
    from aqr_cli.views.outputs import lazy

    log = tmp_path / "built.log"

    def build(i):
        with open(log, "a") as f:       # O_APPEND: one whole line per build, from any process
            f.write(f"{i} {os.getpid()}\n")
        return _figures(i + 1)[i]

    items = [(lazy(build, i), tmp_path / f"p{i}.png") for i in range(6)]
    atomic_save_figures(items, workers=2)
    built = [line.split() for line in log.read_text().splitlines()]
    assert sorted(int(i) for i, _ in built) == list(range(6))
    serial = atomic_save_figures([(f, tmp_path / f"s{i}.png") for i, f in enumerate(_figures(6))], workers=1)
    for i, s in enumerate(serial):
        assert (tmp_path / f"p{i}.png").read_bytes() == s.read_bytes()


def test_figure_workers_setting(monkeypatch):
    from aqr_cli.io.atomic import figure_workers

    monkeypatch.setenv("AQR_FIGURE_WORKERS", "1")
    assert figure_workers() == 1
    monkeypatch.setenv("AQR_FIGURE_WORKERS", "3")
    assert figure_workers() == 3
    monkeypatch.delenv("AQR_FIGURE_WORKERS")
    assert 1 <= figure_workers() <= 2


def test_an_interrupted_save_leaves_no_worker_running(tmp_path, monkeypatch):
    """Ctrl-C while atomic_save_figures waits for its workers: every worker is killed and
    reaped before the interrupt goes on (the staging folder is removed right after)."""
    from matplotlib.figure import Figure

    import aqr_cli.io.atomic as atomic

    forked = []
    real_fork = atomic._fork_saver

    def fork(*args):
        forked.append(real_fork(*args))
        return forked[-1]

    def interrupted(pid, read_fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic, "_fork_saver", fork)
    monkeypatch.setattr(atomic, "_reap", interrupted)
    items = [(Figure(figsize=(2, 2)), tmp_path / f"{k}.png") for k in range(3)]
    with pytest.raises(KeyboardInterrupt):
        atomic.atomic_save_figures(items, workers=3)
    assert len(forked) == 2
    for pid, _ in forked:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
