"""No file runs code: one test per known gadget, each through the loader and a command.

Every gadget sits in ``meta['x']`` of the real fixture checkpoint. Nothing may run (a marker
file is not created, a victim file is not truncated); the file loads with the gadget kept as
an inert record, and ``inspect-checkpoint`` reports it with exit 0.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile

import pytest
import torch
from typer.testing import CliRunner

from aqr_cli.cli.app import _register, app
from aqr_cli.io import LoadError, load_file
from aqr_cli.io.placeholders import InertRecord
from conftest import CHECKPOINT
from hostile_files import Stub, call, checkpoint_obj, glob, repack, s, stack_glob, with_gadget

_register()


def _gadgets(marker: str, victim: str) -> dict[str, tuple[bytes, str]]:
    """name -> (opcode bytes pushing the gadget's result, the global the record must name)."""
    sh = f"touch {marker}"
    py = f"import os; os.system({sh!r})"
    return {
        "os.system": (call(glob("os", "system"), s(sh)), "os.system"),
        "posix.system": (call(glob("posix", "system"), s(sh)), "posix.system"),
        "builtins.eval": (call(glob("builtins", "eval"), s(f"__import__('os').system({sh!r})")),
                          "builtins.eval"),
        "pkgutil.resolve_name": (call(call(glob("pkgutil", "resolve_name"), s("os:system")), s(sh)),
                                 "pkgutil.resolve_name"),
        "timeit.timeit": (call(glob("timeit", "timeit"), s(py), s("pass"),
                               glob("time", "perf_counter"), b"K\x01"), "timeit.timeit"),
        "cProfile.run": (call(glob("cProfile", "run"), s(py)), "cProfile.run"),
        "commands.Popen": (call(glob("commands", "Popen"), s(sh), b"\x88"), "commands.Popen"),
        "commands.getoutput": (call(glob("commands", "getoutput"), s(sh)), "commands.getoutput"),
        "subprocess.Popen": (call(glob("subprocess", "Popen"), b"(" + s("touch") + s(marker) + b"l"),
                             "subprocess.Popen"),
        "dotted GLOBAL": (call(glob("torch", "serialization.os.system"), s(sh)),
                          "torch.serialization.os.system"),
        "STACK_GLOBAL": (call(stack_glob("torch", "serialization.os.system"), s(sh)),
                         "torch.serialization.os.system"),
        "numpy testing": (call(glob("numpy", "testing._private.utils.os.system"), s(sh)),
                          "numpy.testing._private.utils.os.system"),
        "codecs.open": (call(glob("codecs", "open"), s(victim), s("w")), "codecs.open"),
        "getattr chain": (call(call(glob("builtins", "getattr"),
                                    call(glob("builtins", "__import__"), s("os")), s("system")), s(sh)),
                          "builtins.getattr"),
        "copyreg reconstructor": (call(glob("copyreg", "_reconstructor"), glob("os", "system"),
                                       glob("builtins", "object"), b"N"), "copyreg._reconstructor"),
        "torch.load nested": (call(glob("torch.serialization", "load"), s(victim)),
                              "torch.serialization.load"),
    }


GADGETS = sorted(_gadgets("m", "v"))


@pytest.fixture(scope="module")
def base_obj():
    obj = checkpoint_obj()
    obj["meta"]["x"] = Stub()
    return obj


def _build(tmp_path, base_obj, name):
    marker, victim = tmp_path / "pwned", tmp_path / "victim.txt"
    victim.write_text("precious")
    gadget, expected = _gadgets(str(marker), str(victim))[name]
    p = with_gadget(base_obj, gadget, tmp_path / "gadget.pth")
    return p, marker, victim, expected


def _nothing_ran(marker, victim):
    assert not marker.exists()
    assert victim.read_text() == "precious"


@pytest.mark.parametrize("name", GADGETS)
def test_gadget_is_kept_inert(tmp_path, base_obj, name):
    p, marker, victim, expected = _build(tmp_path, base_obj, name)
    lf = load_file(p)
    _nothing_ran(marker, victim)
    rec = lf.raw["meta"]["x"]
    assert isinstance(rec, InertRecord)
    assert expected in lf.records
    assert lf.kind == "checkpoint" and len(lf.state_dict) == 34  # the weights are all there
    res = CliRunner().invoke(app, ["inspect-checkpoint", str(p), "--json"])
    _nothing_ran(marker, victim)
    assert res.exit_code == 0, res.stderr
    assert expected in json.loads(res.stdout)["inert_records"]
    assert "Traceback" not in res.stderr


def test_gadget_through_render(tmp_path, base_obj):
    """render-weights (compare-modes loads through the same load_sources) runs with the record."""
    p, marker, victim, expected = _build(tmp_path, base_obj, "STACK_GLOBAL")
    res = CliRunner().invoke(app, ["render-weights", "--synthetic", "--checkpoint", str(p),
                                   "--out", str(tmp_path / "o"), "--json"])
    _nothing_ran(marker, victim)
    assert res.exit_code == 0, res.stderr
    assert "Traceback" not in res.stderr


def test_trust_flag_changes_nothing(tmp_path, base_obj):
    p, marker, victim, _ = _build(tmp_path, base_obj, "os.system")
    res = CliRunner().invoke(app, ["inspect-checkpoint", str(p), "--trust-checkpoint"])
    _nothing_ran(marker, victim)
    assert res.exit_code == 0
    assert res.stderr.splitlines()[0] == ("aqr: warning: --trust-checkpoint is deprecated and has "
                                          "no effect; no file ever runs code")


def test_file_is_loaded_once_per_command(monkeypatch):
    """render-weights/compare-modes loading (--synthetic and a dump, both using --checkpoint, and
    a run folder's checkpoint among the sources): each file is unpickled once."""
    import aqr_cli.io.safe_load as safe_load
    from aqr_cli.cli import _options, _sources
    from aqr_cli.cli.output import Sink
    from conftest import DUMP

    calls = []
    real = safe_load._torch_load

    def counting(path, *a, **k):
        calls.append(os.path.basename(str(path)))
        return real(path, *a, **k)

    monkeypatch.setattr(safe_load, "_torch_load", counting)
    flags = _options.SourceFlags(out=None, checkpoint=CHECKPOINT, synthetic=True, quiet=True)
    with torch.no_grad():
        loaded = _sources.load_sources([DUMP, CHECKPOINT], flags, Sink(quiet=True),
                                       lambda: None)
    assert [src.kind for src, _ in loaded] == ["synthetic", "dump"]
    assert all(src.checkpoint_file is not None for src, _ in loaded)
    assert sorted(calls) == sorted([CHECKPOINT.name, DUMP.name])
    calls.clear()
    flags = dataclasses.replace(flags, checkpoint=None, synthetic=False)
    with torch.no_grad():
        loaded = _sources.load_sources([DUMP, CHECKPOINT], flags, Sink(quiet=True),
                                       lambda: None)
    assert [src.kind for src, _ in loaded] == ["dump"]  # the run folder's checkpoint applies to it
    assert sorted(calls) == sorted([CHECKPOINT.name, DUMP.name])


def test_torchscript_and_compressed_archives_are_refused(tmp_path):
    ts = repack(CHECKPOINT, tmp_path / "ts.pth", extra={"constants.pkl": b"\x80\x02]q\x00."})
    with pytest.raises(LoadError, match="TorchScript archive"):
        load_file(ts)
    zipped = repack(CHECKPOINT, tmp_path / "deflate.pth", compress=True)
    with pytest.raises(LoadError, match="compressed"):
        load_file(zipped)


def test_zip_entry_declaring_more_than_the_file(tmp_path):
    p = repack(CHECKPOINT, tmp_path / "big.pth")
    data = bytearray(p.read_bytes())
    # the central directory's uncompressed size of the first entry, set to 4 GiB - 1
    with zipfile.ZipFile(p) as z:
        first = z.infolist()[0]
    cd = data.rfind(b"PK\x01\x02", 0, len(data))
    while True:  # walk back to the first central directory header
        prev = data.rfind(b"PK\x01\x02", 0, cd)
        if prev < 0:
            break
        cd = prev
    data[cd + 24:cd + 28] = (2**32 - 1).to_bytes(4, "little")
    assert first.filename
    p.write_bytes(bytes(data))
    with pytest.raises(LoadError) as e:
        load_file(p)
    assert "\n" not in str(e.value) and "big.pth" in str(e.value)


def test_records_in_state_dict_positions_are_refused_with_one_line(tmp_path):
    obj = checkpoint_obj()
    obj["state_dict"]["pts_bbox_head.attention_bias_generator.bias_scale"] = Stub()
    p = with_gadget(obj, call(glob("os", "system"), s("true")), tmp_path / "sd.pth")
    with pytest.raises(LoadError, match="bias_scale'\\] is an inert record of os.system"):
        load_file(p)


def test_meta_tensor_is_refused(tmp_path):
    obj = checkpoint_obj()
    key = "pts_bbox_head.reference_points.weight"
    obj["state_dict"][key] = torch.empty(900, 3, device="meta")
    p = tmp_path / "meta.pth"
    torch.save(obj, p)
    with pytest.raises(LoadError, match="meta tensor of shape \\[900, 3\\]"):
        load_file(p)


@pytest.mark.parametrize("quiet", [False, True])
def test_render_trust_flag_warns_through_the_sink(tmp_path, quiet):
    """render-weights says once, before loading, that --trust-checkpoint does nothing, like
    inspect-checkpoint; --quiet silences it like every warning."""
    bad = tmp_path / "notes.pth"
    bad.write_text("not a checkpoint")
    res = CliRunner().invoke(app, ["render-weights", str(bad), "--trust-checkpoint",
                                   "-o", str(tmp_path / "o"), *(["-q"] if quiet else [])])
    assert res.exit_code == 1
    lines = res.stderr.splitlines()
    warning = ["aqr: warning: --trust-checkpoint is deprecated and has no effect; "
               "no file ever runs code"]
    assert lines[:-1] == ([] if quiet else warning)
    assert lines[-1].startswith(f"aqr: error: {bad}")
