"""Does a checkpoint's state dict fit the settings that describe it? One verdict for every command.

:func:`shapes_and_checks` cross-checks the tensors (offset buffers vs window size, kernel size vs
sigma, widths, embed dims, query count) against the settings; a ``fatal`` mismatch means the
settings describe a model that is not in the file, and :func:`raise_fatal` turns it into a
:class:`ShapeMismatchError` (one line, naming the file). Key-presence disagreements (e.g. type
embeddings in the file but ``use_type_embed=False``) are reported as checks instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

import torch

from aqr_cli.io.config_parse import AQRConfig, Sourced
from aqr_cli.io.errors import LoadError

COMPONENTS = ("aqr_weight_generator", "weight_renderer", "feature_modulator",
              "attention_bias_generator")
"""AQR submodules of ``CmtHead`` (state-dict prefixes under the head)."""
_DECISIVE = ("file", "default")


class ShapeMismatchError(LoadError):
    """The settings and the file's tensors disagree about a shape (one line, names the file)."""


@dataclass
class Check:
    """A config-vs-tensor cross-check: status 'ok' | 'mismatch' | 'undecidable' | 'inferred'."""

    name: str
    status: str
    message: str
    fatal: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "message": self.message}


@dataclass
class ShapesReport:
    """Feature shapes and windows (from the config, else inferred), plus what the tensors say."""

    bev: list | None = None  # [H, W]
    pers: list | None = None  # [V, h, w]
    aqr_window_sizes: list | None = None  # [camera, lidar]
    bias_window: int | None = None
    source: str | None = None  # 'config' | 'state_dict' | 'dump' | None
    state_dict: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"bev": self.bev, "pers": self.pers, "aqr_window_sizes": self.aqr_window_sizes,
                "bias_window": self.bias_window, "source": self.source,
                "state_dict": dict(self.state_dict)}


def sourced(cfg: AQRConfig | None, component: str | None, key: str) -> Sourced | None:
    """The settings value of ``component`` (None: the head) at ``key``, or None."""
    if cfg is None:
        return None
    return (cfg.head if component is None else getattr(cfg, component)).get(key)


def decisive(item: Sourced | None) -> TypeGuard[Sourced]:
    """A value the config sets or CmtHead defaults to (not unparsed, not missing)."""
    return item is not None and item.source in _DECISIVE and item.value is not None


def as_list(value: Any) -> list | None:
    """A list or tuple as a list, whole floats as ints; None for anything else."""
    if isinstance(value, (list, tuple)):
        return [int(v) if isinstance(v, (int, float)) and float(v).is_integer() else v for v in value]
    return None


def head_prefix(state_dict: Mapping[str, Any]) -> str | None:
    """What precedes the AQR submodule names (``'pts_bbox_head.'``), or None if there are none."""
    counts: dict[str, int] = {}
    for key in state_dict:
        for comp in COMPONENTS:
            i = key.find(comp + ".")
            if i >= 0 and (i == 0 or key[i - 1] == "."):
                counts[key[:i]] = counts.get(key[:i], 0) + 1
                break
    if not counts:
        for key in state_dict:
            if key.endswith("reference_points.weight"):
                return key[: -len("reference_points.weight")]
        return None
    return max(counts, key=lambda p: (counts[p], -len(p)))


def tensor_at(sd, key):
    t = sd.get(key)
    return t if isinstance(t, torch.Tensor) else None


def _inferred_width(flat: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> int | None:
    """W from ``flat = y*W + x`` (offset buffers), or None if inconsistent."""
    rows = y != 0
    if not bool(rows.any()):
        return None
    w = (flat[rows] - x[rows]).double() / y[rows].double()
    vals = torch.unique(w)
    if vals.numel() != 1 or not float(vals[0]).is_integer():
        return None
    return int(vals[0])


def _axis(window: int, parity: str) -> list[int]:
    half = window // 2
    if parity == "head" and window % 2 == 0:
        return list(range(-half + 1, half + 1))
    return list(range(-half, half + 1))


class CheckList:
    """Collects cross-checks; ``fatal`` ones abort the report with one line."""

    def __init__(self):
        self.items: list[Check] = []

    def add(self, name: str, ok: bool | None, message: str, *, fatal: bool = False) -> None:
        status = "undecidable" if ok is None else ("ok" if ok else "mismatch")
        self.items.append(Check(name, status, message, fatal=bool(fatal and ok is False)))

    def inferred(self, name: str, message: str) -> None:
        self.items.append(Check(name, "inferred", message))


def shapes_and_checks(sd: Mapping[str, Any], prefix: str | None, cfg: AQRConfig | None
                       ) -> tuple[ShapesReport, list[Check]]:
    pre = prefix or ""
    chk = CheckList()
    shapes = ShapesReport()
    if cfg is not None:
        shapes.source = "config"
        shapes.bev = as_list(cfg.aqr_config["bev_feature_shape"].value)
        shapes.pers = as_list(cfg.aqr_config["pers_feature_shape"].value)
        shapes.aqr_window_sizes = as_list(cfg.aqr_config["window_sizes"].value)
        ws = cfg.attention_bias_config["window_size"].value
        shapes.bias_window = int(ws) if isinstance(ws, int) else None
        config_consistency(cfg, chk)
    _check_generator(sd, pre, cfg, shapes, chk)
    _check_renderer(sd, pre, cfg, shapes, chk)
    _check_bias_buffers(sd, pre, cfg, shapes, chk)
    _check_modulator(sd, pre, cfg, chk)
    _check_reference_points(sd, pre, cfg, shapes, chk)
    if cfg is None and shapes.state_dict:
        shapes.source = "state_dict"
        w = shapes.state_dict
        shapes.bias_window = w.get("bias_window")
        if w.get("bev_width"):
            shapes.bev = [None, w["bev_width"]]
        if w.get("pers_width"):
            shapes.pers = [None, None, w["pers_width"]]
    return shapes, chk.items


def config_consistency(cfg: AQRConfig, chk: CheckList) -> None:
    for key in ("bev_feature_shape", "pers_feature_shape"):
        vals = {c: as_list(getattr(cfg, c)[key].value) for c in
                ("aqr_config", "renderer_config", "attention_bias_config")}
        distinct = {str(v) for v in vals.values()}
        chk.add(f"config {key}", len(distinct) == 1,
                f"{key} agrees across aqr/renderer/bias configs ({vals['aqr_config']})"
                if len(distinct) == 1 else
                f"{key} differs between components: " + ", ".join(f"{c}={v}" for c, v in vals.items()))


def _check_generator(sd, pre, cfg, shapes, chk: CheckList) -> None:
    g = pre + "aqr_weight_generator."
    wp = tensor_at(sd, g + "weight_predictor.weight")
    if wp is None:
        return
    if wp.dim() != 2 or wp.shape[0] != 2:
        chk.add("weight_predictor", False, f"aqr_weight_generator.weight_predictor.weight has shape "
                f"{list(wp.shape)}, expected [2, embed_dims]", fatal=True)
        return
    c = int(wp.shape[1])
    shapes.state_dict["embed_dims"] = c
    embed = sourced(cfg, "aqr_config", "embed_dims")
    if decisive(embed):
        chk.add("embed_dims", c == embed.value, f"aqr_weight_generator.weight_predictor.weight is "
                f"[2, {c}] and embed_dims={embed.value} ({embed.source})", fatal=True)
    inp = tensor_at(sd, g + "encoder.layers.0.attentions.0.attn.in_proj_weight")
    if inp is not None:
        chk.add("encoder in_proj", list(inp.shape) == [3 * c, c],
                f"encoder in_proj_weight is {list(inp.shape)}, expected [{3 * c}, {c}]", fatal=True)
    ffn = tensor_at(sd, g + "encoder.layers.0.ffns.0.layers.0.0.weight")
    enc = sourced(cfg, "aqr_config", "encoder_config")
    if ffn is not None and decisive(enc) and isinstance(enc.value, Mapping):
        layer = enc.value.get("transformerlayers")
        layer = layer[0] if isinstance(layer, list) and layer else layer
        ff = None
        if isinstance(layer, Mapping):
            f = layer.get("ffn_cfgs")
            f = f[0] if isinstance(f, list) and f else f
            ff = (f.get("feedforward_channels") if isinstance(f, Mapping) else None) \
                or layer.get("feedforward_channels")
        if isinstance(ff, int):
            chk.add("encoder FFN", list(ffn.shape) == [ff, c], f"encoder FFN weight is "
                    f"{list(ffn.shape)}, config feedforward_channels={ff} needs [{ff}, {c}]",
                    fatal=True)
    _presence(chk, "type embeddings", "type embeddings", g + "bev_type_embed" in sd,
              sourced(cfg, "aqr_config", "use_type_embed"), "use_type_embed")


def _presence(chk: CheckList, name: str, what: str, present: bool, flag: Sourced | None,
              setting: str) -> None:
    """Parameters ``what`` are in the state dict exactly when the config's boolean ``setting``
    (``flag``, a sourced value) says so; checked only when the setting is decisive."""
    if decisive(flag):
        chk.add(name, bool(flag.value) == present,
                f"{what} {'present' if present else 'absent'}, {setting}={flag.value}")


def _check_renderer(sd, pre, cfg, shapes, chk: CheckList) -> None:
    kernel = tensor_at(sd, pre + "weight_renderer.gaussian_kernel")
    if kernel is None:
        return
    shapes.state_dict["renderer_kernel"] = list(kernel.shape)
    method = sourced(cfg, "renderer_config", "render_method")
    sigma = sourced(cfg, "renderer_config", "gaussian_sigma")
    if decisive(method) and method.value != "gaussian":
        chk.add("renderer kernel", False, f"weight_renderer.gaussian_kernel exists but "
                f"render_method={method.value!r} builds none")
        return
    if not decisive(sigma):
        chk.add("renderer kernel", None, f"gaussian_kernel is {list(kernel.shape)}; "
                "gaussian_sigma not known from a config")
        return
    k = int(6 * float(sigma.value) + 1)
    k += 1 - k % 2
    chk.add("renderer kernel", list(kernel.shape) == [k, k],
            f"weight_renderer.gaussian_kernel is {'x'.join(map(str, kernel.shape))}; "
            f"gaussian_sigma={sigma.value} ({sigma.source}) needs {k}x{k} (k = int(6*sigma + 1), "
            "made odd)", fatal=True)


def _check_bias_buffers(sd, pre, cfg, shapes, chk: CheckList) -> None:
    b = pre + "attention_bias_generator."
    names = ("y_offsets", "x_offsets", "window_offsets_bev", "window_offsets_pers")
    bufs = {n: tensor_at(sd, b + n) for n in names}
    scale = tensor_at(sd, b + "bias_scale")
    if scale is not None:
        chk.add("bias_scale shape", scale.numel() == 1, f"bias_scale has shape {list(scale.shape)} "
                "(expected [1] at HEAD or [] in CMTTEST/bias)", fatal=True)
    if all(v is None for v in bufs.values()):
        return
    missing = [n for n, v in bufs.items() if v is None]
    if missing:
        chk.add("bias offsets", False, "attention_bias_generator lacks " + ", ".join(missing),
                fatal=True)
        return
    lengths = {n: int(v.numel()) for n, v in bufs.items()}
    gw = tensor_at(sd, b + "gaussian_weights")
    if gw is not None:
        lengths["gaussian_weights"] = int(gw.numel())
    if len(set(lengths.values())) != 1:
        chk.add("bias offsets", False, "attention_bias_generator buffers disagree in length: "
                + ", ".join(f"{k}={v}" for k, v in lengths.items()), fatal=True)
        return
    y, x = bufs["y_offsets"].long().reshape(-1), bufs["x_offsets"].long().reshape(-1)
    if _check_bias_window(y, x, cfg, shapes, chk):
        _check_bias_widths(bufs, y, x, cfg, shapes, chk)


def _check_bias_window(y, x, cfg, shapes, chk: CheckList) -> bool:
    """The window the y/x offset buffers encode against ``window_size``; False on a mismatch."""
    n = int(y.numel())
    axis = sorted(torch.unique(y).tolist())
    shapes.state_dict["bias_offsets"] = n
    shapes.state_dict["bias_axis_offsets"] = axis
    ws_item = sourced(cfg, "attention_bias_config", "window_size")
    if not (decisive(ws_item) and isinstance(ws_item.value, int)):
        stored_parity = "head" if axis and axis[0] == -(axis[-1] - 1) else "symmetric"
        shapes.state_dict["bias_window"] = len(axis)
        shapes.state_dict["bias_window_parity"] = stored_parity
        if int(math.isqrt(n)) ** 2 != n:
            chk.add("bias offsets", False, f"attention_bias_generator holds {n} offsets, not a "
                    "square window", fatal=True)
            return False
        chk.inferred("bias window", f"window {len(axis)} ({stored_parity} offsets "
                     f"{axis[0]}..{axis[-1]}) read from the stored buffers"
                     + ("; an even window of the CMTTEST/bias generation looks the same"
                        if stored_parity == "symmetric" else ""))
        return True
    ws = ws_item.value
    head_n, sym_n = ws * ws, (2 * (ws // 2) + 1) ** 2
    allowed = {head_n: "head", sym_n: "symmetric"}
    if n not in allowed:
        need = f"{head_n}" + (f" (HEAD) or {sym_n} (CMTTEST/bias, symmetric)" if sym_n != head_n else "")
        chk.add("bias offsets", False, f"attention_bias_generator offset buffers hold {n} "
                f"entries, but window_size={ws} ({ws_item.source}) needs {need}", fatal=True)
        return False
    parity = allowed[n] if head_n != sym_n else "head"
    ax = torch.tensor(_axis(ws, parity))
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    ok = torch.equal(y, yy.reshape(-1)) and torch.equal(x, xx.reshape(-1))
    chk.add("bias offsets", ok, f"{n} offsets ({parity} parity, {axis[0]}..{axis[-1]}) for "
            f"window_size={ws} ({ws_item.source})" if ok else
            f"attention_bias_generator y/x offsets {axis[0]}..{axis[-1]} are not the "
            f"{parity} offsets of window_size={ws}", fatal=True)
    if ok:
        shapes.state_dict["bias_window"] = ws
        shapes.state_dict["bias_window_parity"] = parity
    return ok


def _check_bias_widths(bufs: dict, y, x, cfg, shapes, chk: CheckList) -> None:
    """The BEV and camera widths the flat window offsets encode (``dy * W + dx``)."""
    for buf, dim, label in (("window_offsets_bev", 1, "bev"), ("window_offsets_pers", 2, "pers")):
        width = _inferred_width(bufs[buf].long().reshape(-1), y, x)
        shapes.state_dict[f"{label}_width"] = width
        comp_shape = sourced(cfg, "attention_bias_config", f"{label}_feature_shape")
        if width is None:
            chk.add(f"{buf}", False, f"attention_bias_generator.{buf} is not dy*W + dx for any W",
                    fatal=True)
        elif decisive(comp_shape) and isinstance(comp_shape.value, (list, tuple)):
            want = int(comp_shape.value[dim])
            chk.add(f"{buf}", width == want, f"attention_bias_generator.{buf} encodes width "
                    f"{width}; {label}_feature_shape={as_list(comp_shape.value)} "
                    f"({comp_shape.source}) has width {want}", fatal=True)


def _check_modulator(sd, pre, cfg, chk: CheckList) -> None:
    has = pre + "feature_modulator.modulation_scale" in sd
    if has or any(k.startswith(pre + "aqr_weight_generator.") for k in sd):
        _presence(chk, "modulator parameters", "feature_modulator parameters", has,
                  sourced(cfg, "modulator_config", "learnable_modulation"), "learnable_modulation")


def _check_reference_points(sd, pre, cfg, shapes, chk: CheckList) -> None:
    ref = tensor_at(sd, pre + "reference_points.weight")
    if ref is None:
        return
    shapes.state_dict["reference_points"] = list(ref.shape)
    if ref.dim() != 2 or ref.shape[1] != 3:
        chk.add("reference points", False, f"reference_points.weight has shape {list(ref.shape)}, "
                "expected [num_query, 3]", fatal=True)
        return
    nq = sourced(cfg, None, "num_query")
    if decisive(nq):
        chk.add("reference points", int(ref.shape[0]) == nq.value, f"reference_points.weight is "
                f"{list(ref.shape)}; num_query={nq.value} ({nq.source})", fatal=True)


def raise_fatal(path: Path, checks: list[Check]) -> None:
    """:class:`ShapeMismatchError` naming the first fatal check (and how many more there are)."""
    fatal = [c for c in checks if c.fatal]
    if fatal:
        more = f" (and {len(fatal) - 1} more mismatch(es))" if len(fatal) > 1 else ""
        raise ShapeMismatchError(path, f"shapes disagree with the config: {fatal[0].message}{more}")



def check_dump_shapes(shapes: dict, cfg: AQRConfig | None, path: Path, checks: list[Check]) -> None:
    """The dump's map shapes against the settings' feature shapes; fills the window sizes.

    Raises :class:`ShapeMismatchError` when a decisive ``*_feature_shape`` disagrees.
    """
    if cfg is None:
        return
    for key, label in (("bev", "bev_feature_shape"), ("pers", "pers_feature_shape")):
        item = cfg.aqr_config.get(label)
        if shapes[key] is None or item is None or not decisive(item):
            continue
        want = as_list(item.value)
        if list(shapes[key]) != list(want or []):
            raise ShapeMismatchError(path, f"shapes disagree with the config: the dump's {key} maps "
                                     f"are {shapes[key]}, but aqr_config.{label}={want} "
                                     f"({item.source})")
        checks.append(Check(f"dump {key} shape", "ok", f"{key} maps {shapes[key]} match {label}"))
    shapes["aqr_window_sizes"] = as_list(cfg.aqr_config["window_sizes"].value)
    ws = cfg.attention_bias_config["window_size"].value
    shapes["bias_window"] = ws if isinstance(ws, int) else None
