"""The figure workers a command starts before its heavy imports (aqr_cli.io.workers)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from aqr_cli.io.workers import call_pool


def _log(path: str, text: str) -> None:
    with open(path, "a") as f:  # O_APPEND: one whole line per call, from any process
        f.write(f"{text} {os.getpid()}\n")


def _fail(message: str) -> None:
    raise ValueError(message)


def _sleep_forever(path: str) -> None:
    _log(path, "sleeping")
    time.sleep(20)  # short: a worker that escaped the kill must not hold the test run for long


def _preloaded() -> None:
    _log(os.environ["AQR_TEST_PRELOAD_LOG"], "preload")


def _lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def test_calls_run_once_each_in_workers_after_the_preload(tmp_path, monkeypatch):
    log = tmp_path / "calls.log"
    monkeypatch.setenv("AQR_TEST_PRELOAD_LOG", str(log))
    with call_pool(workers=2, preload=["json", f"{__name__}:_preloaded"]) as pool:
        assert not pool.inline
        for i in range(8):
            pool.submit(_log, str(log), f"call{i}")
        pool.close()
    lines = _lines(log)
    assert lines[0][0] == "preload"                    # once, in the first worker, before any call
    assert [w for w, _ in lines].count("preload") == 1
    calls = sorted(w for w, _ in lines[1:])
    assert calls == sorted(f"call{i}" for i in range(8))
    pids = {int(p) for _, p in lines}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2


def test_a_failing_call_is_raised_at_close_with_its_message(tmp_path):
    pool = call_pool(workers=2)
    pool.submit(_fail, "the renderer crashed")
    with pytest.raises(RuntimeError, match="ValueError: the renderer crashed"):
        pool.close()
    pool.close()  # closed once: nothing left to wait for


def test_leaving_with_an_error_kills_every_worker(tmp_path):
    """A failing or interrupted run kills its workers, the one busy with a call included:
    none goes on writing into a staging folder that is being removed."""
    log = tmp_path / "busy.log"
    with pytest.raises(KeyboardInterrupt):
        with call_pool(workers=2) as pool:
            pool.submit(_sleep_forever, str(log))
            pool.submit(_sleep_forever, str(log))
            deadline = time.monotonic() + 30
            while len(_lines(log)) < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            raise KeyboardInterrupt
    busy = [int(p) for _, p in _lines(log)]
    assert len(busy) == 2
    time.sleep(0.2)
    for pid in busy:  # gone, or a zombie waiting for its reaper: not running
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            continue
        assert state in ("Z", "X"), (pid, state)


def test_one_worker_runs_calls_inline(tmp_path):
    log = tmp_path / "inline.log"
    with call_pool(workers=1) as pool:
        assert pool.inline
        pool.submit(_log, str(log), "call")
    assert _lines(log) == [["call", str(os.getpid())]]


def test_an_unpicklable_call_is_refused_before_anything_is_sent(tmp_path):
    with call_pool(workers=2) as pool:
        with pytest.raises(Exception):
            pool.submit(lambda: None)
        pool.submit(_log, str(tmp_path / "after.log"), "after")
    assert [w for w, _ in _lines(tmp_path / "after.log")] == ["after"]
