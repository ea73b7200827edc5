"""A corpus of mutated dumps and checkpoints through all three commands.

No variant may end in "internal error" or a traceback, and a file refused for its content is
refused by every command with the same line (one verdict per file). Dump variants start from a
tiny dump (16x16 BEV, 6x8x10 cameras, 20 queries) so that the accepted ones render in a second.
"""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from aqr_cli.cli.app import _register, app
from hostile_files import Stub, call, checkpoint_obj, dump_obj, glob, s, with_gadget

_register()
PRE = "pts_bbox_head."


def tiny_dump() -> dict:
    src = dump_obj()
    g = torch.Generator().manual_seed(0)
    q = 20
    pts = torch.randint(0, 16, (1, q, 2), generator=g).float()
    return {"iteration": 7, "weight_map_bev": torch.rand(1, 16, 16, generator=g),
            "weight_map_pers": torch.rand(1, 6, 8, 10, generator=g),
            "lidar_weights": torch.rand(1, q, generator=g), "camera_weights": torch.rand(1, q, generator=g) - 0.2,
            "pts_bev": pts, "img_metas": src["img_metas"]}


# 3000 nested lists, written as opcodes (pickle itself cannot save them: it recurses)
NESTED = b"]" * 3000 + b"a" * 2999


def _laughs(levels: int):
    v: list = ["x"]
    for _ in range(levels):
        v = [v, v]
    return v


def dump_variants() -> dict:
    out = {}
    for key in ("lidar_weights", "camera_weights", "pts_bev", "weight_map_bev", "weight_map_pers"):
        out[f"{key}-list"] = lambda d, k=key: d.__setitem__(k, d[k].tolist())
        out[f"{key}-int64"] = lambda d, k=key: d.__setitem__(k, d[k].long())
        out[f"{key}-bool"] = lambda d, k=key: d.__setitem__(k, d[k] > 0.5)
        out[f"{key}-complex"] = lambda d, k=key: d.__setitem__(k, d[k].to(torch.complex64))
        if key in ("lidar_weights", "weight_map_pers"):  # accepted: renders (slower), so two of them
            out[f"{key}-float16"] = lambda d, k=key: d.__setitem__(k, d[k].half())
        out[f"{key}-nan"] = lambda d, k=key: d[k].view(-1).__setitem__(0, float("nan"))
        out[f"{key}-inf"] = lambda d, k=key: d[k].view(-1).__setitem__(0, float("inf"))
        out[f"{key}-batch2"] = lambda d, k=key: d.__setitem__(k, torch.cat([d[k], d[k]]))
        out[f"{key}-extra-dim"] = lambda d, k=key: d.__setitem__(k, d[k][None])
        out[f"{key}-empty"] = lambda d, k=key: d.__setitem__(k, d[k][..., :0])
        out[f"{key}-missing"] = lambda d, k=key: d.pop(k)
        out[f"{key}-string"] = lambda d, k=key: d.__setitem__(k, "weights")
        out[f"{key}-meta"] = lambda d, k=key: d.__setitem__(k, torch.empty(d[k].shape, device="meta"))
        out[f"{key}-huge"] = lambda d, k=key: d.__setitem__(k, d[k].float().mul(1e38).mul(1e10))
        out[f"{key}-large"] = lambda d, k=key: d.__setitem__(k, d[k].float().add(1).mul(1e30))
    out["weights-zero-queries"] = lambda d: d.update(lidar_weights=torch.zeros(1, 0),
                                                     camera_weights=torch.zeros(1, 0),
                                                     pts_bev=torch.zeros(1, 0, 2))
    out["maps-stride0"] = lambda d: d.__setitem__("weight_map_bev", torch.zeros(1, 1, 1).expand(1, 2**22, 2**22))
    out["maps-absurd"] = lambda d: d.__setitem__("weight_map_bev", torch.zeros(1, 1, 5000))
    out["pts-fractional"] = lambda d: d["pts_bev"].add_(0.5)
    out["pts-far"] = lambda d: d["pts_bev"].add_(1000)
    out["iteration-str"] = lambda d: d.__setitem__("iteration", "abc")
    out["iteration-huge"] = lambda d: d.__setitem__("iteration", 10**40)
    out["metas-deep"] = lambda d: d["img_metas"][0].__setitem__("deep", Stub())
    out["metas-laughs"] = lambda d: d["img_metas"][0].__setitem__("laughs", _laughs(40))
    out["metas-string"] = lambda d: d.__setitem__("img_metas", "metas")
    out["metas-empty"] = lambda d: d.__setitem__("img_metas", [])
    out["metas-lidar2img-junk"] = lambda d: d["img_metas"][0].__setitem__("lidar2img", [[1, 2]])
    out["metas-img-shape-junk"] = lambda d: d["img_metas"][0].__setitem__("img_shape", [["a", None]])
    out["gt-two-columns"] = lambda d: d["img_metas"][0].update(gt_bboxes_3d=torch.zeros(3, 2),
                                                              gt_labels_3d=torch.zeros(3, dtype=torch.long))
    out["gt-labels-float"] = lambda d: d["img_metas"][0].update(gt_bboxes_3d=torch.zeros(3, 9),
                                                               gt_labels_3d=torch.zeros(3))
    out["gt-nan"] = lambda d: d["img_metas"][0].update(gt_bboxes_3d=torch.full((2, 9), float("nan")))
    out["features-3d"] = lambda d: d.__setitem__("original_bev_features", torch.zeros(2, 2, 2))
    out["features-wrong-grid"] = lambda d: d.update(original_bev_features=torch.zeros(1, 4, 8, 8),
                                                   original_pers_features=torch.zeros(6, 4, 8, 10))
    out["features-nan"] = lambda d: d.update(original_bev_features=torch.full((1, 4, 16, 16), float("nan")),
                                            original_pers_features=torch.zeros(6, 4, 8, 10))
    out["features-ok"] = lambda d: d.update(original_bev_features=torch.rand(1, 4, 16, 16),
                                           original_pers_features=torch.rand(6, 4, 8, 10),
                                           modulated_bev_features=torch.rand(1, 4, 16, 16),
                                           modulated_pers_features=torch.rand(6, 4, 8, 10))
    return out


def ckpt_variants() -> dict:
    b, r = PRE + "attention_bias_generator.bias_scale", PRE + "reference_points.weight"
    wp = PRE + "aqr_weight_generator.weight_predictor.weight"
    off = PRE + "attention_bias_generator.y_offsets"

    def sd(key, fn):
        return lambda c: c["state_dict"].__setitem__(key, fn(c["state_dict"][key]))

    def cfg(fn):
        return lambda c: c["meta"].__setitem__("config", fn(c["meta"]["config"]))

    return {
        "bias-nan": sd(b, lambda t: torch.full_like(t, float("nan"))),
        "bias-inf": sd(b, lambda t: torch.full_like(t, float("inf"))),
        "bias-shape0": sd(b, lambda t: t[:0]),
        "bias-shape3": sd(b, lambda t: t.repeat(3)),
        "bias-int": sd(b, lambda t: t.long()),
        "bias-bool": sd(b, lambda t: t > 0),
        "bias-complex": sd(b, lambda t: t.to(torch.complex64)),
        "bias-list": sd(b, lambda t: t.tolist()),
        "ref-1000": sd(r, lambda t: torch.rand(1000, 3)),
        "ref-2col": sd(r, lambda t: t[:, :2]),
        "ref-nan": sd(r, lambda t: t.index_fill(0, torch.tensor([3]), float("nan"))),
        "ref-int": sd(r, lambda t: t.long()),
        "ref-empty": sd(r, lambda t: t[:0]),
        "ref-meta": sd(r, lambda t: torch.empty(900, 3, device="meta")),
        "embedding-nan": sd(PRE + "bev_embedding.0.weight", lambda t: t.index_fill(0, torch.tensor([0]), float("nan"))),
        "predictor-inf": sd(wp, lambda t: t.index_fill(1, torch.tensor([0]), float("inf"))),
        "predictor-half": sd(wp, lambda t: t.half()),
        "predictor-shape": sd(wp, lambda t: t[:1]),
        "predictor-complex": sd(wp, lambda t: t.to(torch.complex64)),
        "offsets-float": sd(off, lambda t: t.float()),
        "offsets-bool": sd(off, lambda t: t != 0),
        "config-syntax": cfg(lambda text: text + "\nx = (\n"),
        "config-pow-bomb": cfg(lambda text: text + "\nx = ((9 ** 4096) ** 4096) ** 4096\n"),
        "config-doubling": cfg(lambda text: text + "\na = 'ab'\n" + "a += a\n" * 40),
        "config-fanout": cfg(lambda text: text + "\na = list_ = [0] * 100000\nb = [" + "a, " * 5000 + "]\n"),
        "config-sigma": cfg(lambda text: text.replace("gaussian_sigma=1.0", "gaussian_sigma=1e9")),
        "config-bev-1024": cfg(lambda text: text.replace("bev_feature_shape=(128, 128)",
                                                         "bev_feature_shape=(1024, 1024)")),
        "config-not-str": lambda c: c["meta"].__setitem__("config", 12345),
        "meta-list": lambda c: c.__setitem__("meta", [1, 2]),
        "state-dict-list": lambda c: c.__setitem__("state_dict", [1, 2]),
        "meta-deep": lambda c: c["meta"].__setitem__("deep", Stub()),
    }


def _save(obj, path):
    if path.stem.endswith("-deep"):
        return with_gadget(obj, NESTED, path)
    torch.save(obj, path)
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    files = {}
    for name, mutate in dump_variants().items():
        d = tiny_dump()
        mutate(d)
        files[f"dump-{name}"] = _save(d, folder / f"dump-{name}.pth")
    base = checkpoint_obj()
    for name, mutate in ckpt_variants().items():
        c = {"meta": dict(base["meta"]), "state_dict": base["state_dict"].copy()}
        mutate(c)
        files[f"ckpt-{name}"] = _save(c, folder / f"ckpt-{name}.pth")
    gadget = {"meta": dict(base["meta"], x=Stub()), "state_dict": base["state_dict"]}
    files["ckpt-gadget"] = with_gadget(gadget, call(glob("os", "system"), s("false")),
                                       folder / "ckpt-gadget.pth")
    return folder, files


def _run(args):
    res = CliRunner().invoke(app, [str(a) for a in args])
    text = res.stdout + res.stderr
    assert "internal error" not in text and "Traceback" not in text, (args, text[-2000:])
    errors = [line for line in res.stderr.splitlines() if line.startswith("aqr: error:")]
    if res.exit_code != 0:
        assert res.exit_code == 1 and len(errors) == 1, (args, res.exit_code, res.stderr)
    return res.exit_code, errors[0][len("aqr: error: "):] if errors else None


def _cases():
    return [f"dump-{n}" for n in dump_variants()] + [f"ckpt-{n}" for n in ckpt_variants()] + ["ckpt-gadget"]


@pytest.mark.parametrize("case", _cases())
def test_corpus_all_commands(corpus, case):
    folder, files = corpus
    p = files[case]
    out = folder / f"out-{case}"
    code, line = _run(["inspect-checkpoint", p, "--json"])
    if case.startswith("dump-"):
        render = _run(["render-weights", p, "--out", out / "r", "--json"])
        compare = _run(["compare-modes", p, "--out", out / "c", "--json", "--scales", "", "--width", "skip"])
    else:
        if code == 0:
            return  # accepted checkpoints render like the fixture (covered by the render tests)
        render = _run(["render-weights", "--synthetic", "--checkpoint", p, "--out", out / "r", "--json"])
        compare = _run(["compare-modes", "--synthetic", "--checkpoint", p, "--out", out / "c", "--json",
                        "--scales", "", "--width", "skip"])
    if code != 0 and p.name in line:
        # one verdict: a file refused for its content is refused with the same line everywhere
        assert render == (1, line), (render, line)
        assert compare == (1, line), (compare, line)


def test_known_verdicts(corpus):
    """Spot checks that the refusals name the key and what is wrong."""
    _, files = corpus
    expect = {
        "dump-lidar_weights-list": "lidar_weights is a list, expected a tensor",
        "dump-pts_bev-int64": "pts_bev is int64, expected a floating-point tensor",
        "dump-weight_map_bev-nan": "weight_map_bev holds 1 NaN and 0 Inf values",
        "dump-maps-stride0": "stride-0 (expanded) or overlapping view",
        "dump-weights-zero-queries": "the dump holds no queries",
        "dump-metas-deep": "more than 100 levels deep",
        "dump-metas-laughs": "expands to more than",
        "dump-gt-two-columns": "gt_bboxes_3d is [3, 2] (float32), expected float [N, 7..9]",
        "dump-weight_map_bev-batch2": "weight_map_bev is [2, 16, 16], expected [B=1, H, W]",
        "dump-camera_weights-large": "more than 1e+06 is not plausible",
        "dump-features-wrong-grid": "original_bev_features is [1, 4, 8, 8], expected [1, C, 16, 16]",
        "ckpt-bias-inf": "bias_scale is inf, not a finite number",
        "ckpt-bias-shape0": "bias_scale has shape [0], expected one value",
        "ckpt-bias-complex": "bias_scale is a complex tensor",
        "ckpt-ref-1000": "reference_points.weight is [1000, 3]; num_query=900",
        "ckpt-ref-meta": "is a meta tensor of shape [900, 3]",
        "ckpt-embedding-nan": "bev_embedding.0.weight holds 512 NaN and 0 Inf values",
        "ckpt-predictor-inf": "weight_predictor.weight holds 0 NaN and 2 Inf values",
        "ckpt-offsets-float": "y_offsets is float32, expected an integer tensor",
        "ckpt-config-pow-bomb": "more than 65536 bits",
        "ckpt-config-doubling": "refusing it as hostile or corrupt",
        "ckpt-config-fanout": "units",
    }
    for case, text in expect.items():
        code, line = _run(["inspect-checkpoint", files[case]])
        assert code == 1 and text in line, (case, line)
