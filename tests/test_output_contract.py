"""The output contract of every command: --out never loses a user's file, reruns replace an
earlier output as a whole, messages are one line on stderr, data goes to stdout, and human output
is never cut at 80 columns or when piped."""

from __future__ import annotations

import fcntl
import json
import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

import aqr_cli.cli.commands  # noqa: F401  (registers the commands)
from aqr_cli.cli.app import app
from aqr_cli.io.outdir import MANIFEST, STAGING_PREFIX, output_folder
from aqr_cli.io.errors import OutputError
from conftest import (CHECKPOINT, COMPARE_DUMP_ARGS, DUMP, DUMP_TRAIN, EARLIER_ONLY, FIXTURES,
                      add_earlier_only_file, user_files)

FIXTURE_LOG = FIXTURES / "logs" / "AQRCMT800_320.log"

runner = CliRunner()

# One cheap invocation per command (the fixture dump keeps render/compare fast).
COMMANDS = {
    "render-weights": ["render-weights", str(DUMP), "--checkpoint", str(CHECKPOINT)],
    "compare-modes": ["compare-modes", str(DUMP), "--checkpoint", str(CHECKPOINT), "--scales", ""],
    "inspect-checkpoint": ["inspect-checkpoint", str(CHECKPOINT)],
    "inspect-log": ["inspect-log", str(FIXTURE_LOG)],
}


def invoke(args, columns: int = 80):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": str(columns)})


@pytest.fixture(scope="module")
def outputs(tmp_path_factory, compare_dump_run):
    """Each command run once into a fresh folder: (result, folder). compare-modes is the
    suite's shared run of the same arguments (conftest.compare_dump_run)."""
    assert COMMANDS["compare-modes"] == COMPARE_DUMP_ARGS
    base = tmp_path_factory.mktemp("contract")
    done = {"compare-modes": compare_dump_run}
    for name, args in COMMANDS.items():
        if name not in done:
            out = base / name
            done[name] = (invoke([*args, "-o", out]), out)
    return done


@pytest.mark.parametrize("name", list(COMMANDS))
def test_fresh_output_has_manifest_and_wrote_line(outputs, name):
    res, out = outputs[name]
    assert res.exit_code == 0, res.stderr
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["command"] == name
    on_disk = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.name != MANIFEST)
    assert manifest["files"] == on_disk and on_disk
    wrote = [line for line in res.stderr.splitlines() if line.startswith("aqr: wrote ")]
    assert wrote == [f"aqr: wrote {len(on_disk)} files to {out}"]
    assert "wrote" not in res.stdout


@pytest.mark.parametrize("name", list(COMMANDS))
def test_foreign_folder_refused_and_untouched(tmp_path, name):
    out = tmp_path / "mine"
    user_files(out)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    res = invoke([*COMMANDS[name], "-o", out])
    assert res.exit_code == 1
    lines = res.stderr.splitlines()
    assert lines == [f"aqr: error: {out}: folder is not empty and holds no earlier aqr output; "
                     "choose a new or empty folder"]
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert (out / "notes.txt").read_text() == "mine"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(STAGING_PREFIX)]


@pytest.mark.parametrize("name", list(COMMANDS))
def test_rerun_replaces_own_output_and_keeps_user_files(outputs, tmp_path, name, request):
    """A rerun into an earlier output of the same command replaces that output as a whole (a
    file it listed and this run does not write is removed) and keeps the user's files."""
    if name == "compare-modes":
        # the suite's shared rerun over the same files (conftest.compare_dump_rerun, --width skip)
        res, out = request.getfixturevalue("compare_dump_rerun")
    else:
        _, first = outputs[name]
        out = tmp_path / "again"
        import shutil

        shutil.copytree(first, out)
        user_files(out)
        (out / "sub" / "extra.txt").write_text("x")
        add_earlier_only_file(out)
        res = invoke([*COMMANDS[name], "-o", out])
    assert res.exit_code == 0, res.stderr
    assert (out / "notes.txt").read_text() == "mine" and (out / "sub" / "keep.txt").exists()
    assert not (out / EARLIER_ONLY).exists()
    manifest = json.loads((out / MANIFEST).read_text())
    assert all((out / f).is_file() for f in manifest["files"]) and EARLIER_ONLY not in manifest["files"]


def test_other_commands_output_refused(outputs, tmp_path):
    import shutil

    _, first = outputs["render-weights"]
    out = tmp_path / "r"
    shutil.copytree(first, out)
    res = invoke([*COMMANDS["inspect-checkpoint"], "-o", out])
    assert res.exit_code == 1
    assert res.stderr.strip() == (f"aqr: error: {out}: holds the output of 'aqr render-weights'; "
                                  "choose another folder for 'aqr inspect-checkpoint'")


def test_out_dot_is_like_any_folder(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for _ in range(2):  # fresh, then a rerun into the current folder
        res = invoke([*COMMANDS["inspect-checkpoint"], "-o", "."])
        assert res.exit_code == 0, res.stderr
        assert (work / "inspect.json").is_file() and Path.cwd() == work
    res = invoke([*COMMANDS["inspect-checkpoint"], "-o", str(work)])
    assert res.exit_code == 0, res.stderr


def test_bad_input_leaves_no_output_folder(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    for name in ("render-weights", "compare-modes", "inspect-checkpoint", "inspect-log"):
        out = tmp_path / f"o-{name}"
        res = invoke([name, bad, "-o", out])
        assert res.exit_code == 1 and len(res.stderr.splitlines()) == 1, res.stderr
        assert res.stderr.startswith("aqr: error: ")
        assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(STAGING_PREFIX)]


def test_long_out_name(tmp_path):
    out = tmp_path / ("x" * 250)
    res = invoke([*COMMANDS["inspect-checkpoint"], "-o", out])
    assert res.exit_code == 0, res.stderr
    assert (out / "inspect.json").is_file()


def test_folder_contract_library(tmp_path):
    """Failure inside the block leaves an earlier output exactly as it was."""
    out = tmp_path / "o"
    with output_folder(out, "cmd") as stage:
        (stage / "a.txt").write_text("1")
    with pytest.raises(RuntimeError):
        with output_folder(out, "cmd") as stage:
            (stage / "a.txt").write_text("2")
            raise RuntimeError("boom")
    assert (out / "a.txt").read_text() == "1"
    # a user file whose name a new output needs is refused, not overwritten
    (out / "b.txt").write_text("user")
    with pytest.raises(OutputError, match="b.txt was not written by aqr"):
        with output_folder(out, "cmd") as stage:
            (stage / "b.txt").write_text("aqr")
    assert (out / "b.txt").read_text() == "user" and (out / "a.txt").read_text() == "1"


def test_stale_staging_removed_live_staging_kept(tmp_path):
    dead = tmp_path / f"{STAGING_PREFIX}999999-dead"
    dead.mkdir()
    (dead / "half.png").write_bytes(b"x")
    live = tmp_path / f"{STAGING_PREFIX}1-live"
    live.mkdir()
    fd = os.open(live, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        with output_folder(tmp_path / "o", "cmd") as stage:
            (stage / "a.txt").write_text("1")
        assert not dead.exists() and live.exists()
    finally:
        os.close(fd)


def test_signal_as_the_staging_folder_appears_strands_nothing(tmp_path, monkeypatch):
    """A SIGINT that lands right after the staging folder is made (when a watcher sees it)
    is held until the folder is in the run's hands: KeyboardInterrupt, and no folder left."""
    import signal
    import tempfile

    from aqr_cli.io import outdir

    real = tempfile.mkdtemp

    def mkdtemp_then_signal(*args, **kwargs):
        made = real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)
        return made

    monkeypatch.setattr(outdir.tempfile, "mkdtemp", mkdtemp_then_signal)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with output_folder(tmp_path / "o", "cmd") as stage:
                (stage / "a.txt").write_text("1")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert os.listdir(tmp_path) == []


def test_empty_run_writes_nothing(tmp_path):
    with output_folder(tmp_path / "o", "cmd"):
        pass
    assert not (tmp_path / "o").exists()


# ---- messages and terminal output

MESSAGE = re.compile(r"^aqr: ((warning|note|error):|wrote) ")


@pytest.mark.parametrize("name", list(COMMANDS))
def test_stderr_lines_are_one_line_messages(outputs, name):
    res, _ = outputs[name]
    for line in res.stderr.splitlines():
        assert MESSAGE.match(line), line


def test_warning_format_names_source_in_batch(render_batch_run):
    res, _ = render_batch_run  # render-weights DUMP DUMP_TRAIN --checkpoint ... --json
    assert res.exit_code == 0, res.stderr
    q1 = [line for line in res.stderr.splitlines() if "Q1:" in line]
    assert {line.split(":")[2].strip() for line in q1} == {"weights_iter_100", "weights_iter_200_train"}
    assert all(line.startswith("aqr: warning: weights_iter_") for line in q1)


def test_quiet_prints_nothing_on_success(tmp_path):
    res = invoke([*COMMANDS["render-weights"], "-q", "-o", tmp_path / "o"])
    assert res.exit_code == 0 and res.stdout == "" and res.stderr == ""


def test_json_mode_stdout_is_one_document(render_batch_run):
    res, _ = render_batch_run  # two sources: one document, a list
    assert res.exit_code == 0
    assert len(json.loads(res.stdout)) == 2
    assert all(MESSAGE.match(line) for line in res.stderr.splitlines())


def _human_numbers(doc_numbers: list[str], text: str) -> None:
    for n in doc_numbers:
        assert n in text, n


def test_render_human_output_never_cut(outputs):
    res, out = outputs["render-weights"]  # run at COLUMNS=80, stdout not a terminal
    doc = json.loads((out / "summary.json").read_text())
    assert res.stdout and all(len(line) <= 80 for line in res.stdout.splitlines())
    assert "…" not in res.stdout and "…" not in res.stderr
    w = doc["weights"]
    _human_numbers([f"{w['lidar']['mean']:+.3f}±{w['lidar']['std']:.3f}",
                    f"{doc['bias']['scale_effective']:.3f}", "weights_iter_100"], res.stdout)
    for q in doc["quirks"]:
        assert f"{q['id']}:" in res.stderr


def test_compare_human_output_never_cut(outputs):
    res, out = outputs["compare-modes"]
    assert res.stdout and all(len(line) <= 80 for line in res.stdout.splitlines())
    assert "…" not in res.stdout
    doc = json.loads((out / "summary.json").read_text())
    rc = doc["features"]["multiplicative"]["bev"]["relative_change"]
    assert f"{rc:.2%}" in res.stdout
    for col in ("entropy/log F", "top-k overlap", "small-object energy kept"):
        assert col in res.stdout


@pytest.mark.parametrize("columns", [80, 200])
def test_inspect_multi_file_table_keeps_findings(tmp_path, columns):
    res = invoke(["inspect-checkpoint", CHECKPOINT, DUMP, DUMP_TRAIN], columns=columns)
    assert res.exit_code == 0
    assert all(len(line) <= columns for line in res.stdout.splitlines())
    for text in ("E Q15", "Q34", "W Q1 Q29", "weights_iter_100.pth", "weights_iter_200_train.pth",
                 "3.170 / 3.170"):
        assert text in res.stdout, text


def test_inspect_single_file_never_cut():
    res = invoke(["inspect-checkpoint", CHECKPOINT], columns=80)
    assert all(len(line) <= 80 for line in res.stdout.splitlines())
    doc = json.loads(invoke(["inspect-checkpoint", CHECKPOINT, "--json"]).stdout)
    flat = " ".join(res.stdout.split())
    for f in doc["findings"]:
        assert f"{f['id']} {f['severity']}" in res.stdout
        assert " ".join(f["message"].split()) in flat


def test_flags_show_as_flags_in_help():
    for name in COMMANDS:
        res = invoke([name, "--help"], columns=200)
        assert "<bool>" not in res.stdout, name
        assert "-o" in res.stdout and "--quiet" in res.stdout and "-q" in res.stdout


# ---- interruptions (real processes)

def _start(args, cwd):
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-m", "aqr_cli", *map(str, args)], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_staging(parent: Path, proc, timeout: float = 60.0) -> bool:
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if any(p.name.startswith(STAGING_PREFIX) for p in parent.iterdir()):
            return True
        time.sleep(0.05)
    return False


def test_ctrl_c_exits_130_with_one_line_and_leaves_nothing(tmp_path):
    """SIGINT while the run is working: exit 130, one line, no output, no staging folder.

    Signal timing on a loaded machine is not under the test's control, so the scenario gets up
    to three attempts; every attempt must leave nothing behind, and one must end exactly so.
    (A run that went on to exit 0 here was a Ctrl-C swallowed in numpy.random's Cython import:
    see test_numpy_random_loaded_before_the_output_folder.)
    """
    import signal

    results = []
    for attempt in range(3):
        out = tmp_path / f"o{attempt}"
        proc = _start(["compare-modes", "--synthetic", "-o", out], tmp_path)
        assert _wait_for_staging(tmp_path, proc)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        assert not out.exists()
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(STAGING_PREFIX)]
        results.append((proc.returncode, err.splitlines()))
        if results[-1] == (130, ["aqr: error: interrupted"]):
            break
    assert results[-1] == (130, ["aqr: error: interrupted"]), results


def test_numpy_random_loaded_before_the_output_folder():
    """A Ctrl-C landing in the lazy import of numpy.random's Cython modules (a synthetic
    scene's first ``np.random`` use, right after the output folder is made) was swallowed and
    the run went on (exit 0). What the commands import before their output folder loads it."""
    import subprocess
    import sys

    code = ("import sys, aqr_cli.analysis.compare, aqr_cli.analysis.render; "
            "print('numpy.random' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.stdout.strip() == "True", res.stderr


def test_killed_run_staging_is_removed_by_the_next_run(tmp_path):
    import signal

    out = tmp_path / "o"
    proc = _start(["render-weights", "--synthetic", "-o", out], tmp_path)
    assert _wait_for_staging(tmp_path, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert [p for p in tmp_path.iterdir() if p.name.startswith(STAGING_PREFIX)]
    res = invoke([*COMMANDS["inspect-checkpoint"], "-o", out])
    assert res.exit_code == 0, res.stderr
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(STAGING_PREFIX)]


def test_process_ends_with_its_output_whole_and_its_exit_code(tmp_path):
    """A command run as a process (which skips the interpreter's teardown once torch is loaded)
    ends with everything flushed: a whole --json document on stdout and exit 0."""
    ok = _start(["inspect-checkpoint", CHECKPOINT, "--json"], tmp_path)
    out, err = ok.communicate(timeout=120)
    assert ok.returncode == 0, err
    assert json.loads(out)["kind"] == "checkpoint"


@pytest.mark.parametrize("code, status, message", [
    (None, 0, ""), (0, 0, ""), (1, 1, ""), (2, 2, ""), (130, 130, ""), ("bad thing", 1, "bad thing\n")])
@pytest.mark.parametrize("heavy", [True, False])
def test_exit_codes_follow_system_exit(monkeypatch, capsys, code, status, message, heavy):
    """main()'s exit keeps SystemExit's meaning (None is 0, a message is printed and gives 1),
    whether it leaves through os._exit (torch loaded) or sys.exit."""
    import os
    import sys
    import types

    from aqr_cli.cli import app as entry

    class Ended(Exception):
        pass

    def end(how):
        def record(c):
            raise Ended(how, c)
        return record

    monkeypatch.setattr(os, "_exit", end("os"))
    monkeypatch.setattr(sys, "exit", end("sys"))
    for name in ("torch", "matplotlib"):     # what _leave looks at: are they loaded?
        if heavy:
            monkeypatch.setitem(sys.modules, name, sys.modules.get(name) or types.ModuleType(name))
        else:
            monkeypatch.delitem(sys.modules, name, raising=False)
    with pytest.raises(Ended) as e:
        entry._leave(code)
    assert e.value.args == ("os" if heavy else "sys", status)
    assert capsys.readouterr().err == message


def test_a_closed_stdout_pipe_ends_the_run_quietly(tmp_path):
    """``aqr ... | head`` when head has gone: no error line, exit 141 (as after SIGPIPE)."""
    proc = _start(["inspect-checkpoint", CHECKPOINT], tmp_path)
    proc.stdout.close()                      # the reader is gone before anything is printed
    err = proc.stderr.read()
    proc.wait(timeout=120)
    proc.stderr.close()
    assert (proc.returncode, err) == (141, "")


def test_output_that_cannot_be_flushed_at_exit_is_an_error(monkeypatch, capsys):
    """The last buffered output fails to reach a full disk: one error line and exit 1, not a
    silent success."""
    import os
    import sys

    from aqr_cli.cli import app as entry

    class Full:
        def flush(self):
            raise OSError(28, "No space left on device")

    class Ended(Exception):
        pass

    def record(code):
        raise Ended(code)

    monkeypatch.setitem(sys.modules, "torch", sys.modules.get("torch") or __import__("types").ModuleType("torch"))
    monkeypatch.setattr(os, "_exit", record)
    monkeypatch.setattr(sys, "stdout", Full())
    with pytest.raises(Ended) as e:
        entry._leave(0)
    assert e.value.args == (1,)
    assert capsys.readouterr().err == "aqr: error: cannot write the output: [Errno 28] No space left on device\n"
