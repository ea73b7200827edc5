"""The AQR settings of an mmcv config, each value with its source (file or default).

:func:`extract_aqr_config` takes a :class:`ParsedConfig` (read without executing anything, see
:mod:`aqr_cli.io.config_ast`) and applies the ``CmtHead`` defaults (spec Q40,
``aqr_cli.core.configs.HEAD_DEFAULTS``) the way ``CmtHead._init_aqr_components`` does: for each
of ``aqr_config``, ``renderer_config``, ``modulator_config`` and ``attention_bias_config``, a
*shallow* ``dict.update`` of the user dict (when it is non-empty) into the defaults, then
``type`` is dropped. So a user ``encoder_config`` replaces the default encoder wholesale.
It also reports the attention types of the AQR encoder and the decoder, the training/val
``ann_file`` lists (Q34) and every top-level ``model`` assignment (Q32).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aqr_cli.io.config_ast import (
    ParsedConfig,
    merge_a_into_b,
    parse_config_file,
    parse_config_text,
)

__all__ = [
    "AQR_COMPONENTS", "AQRConfig", "CMTHEAD_DEFAULTS", "ParsedConfig", "Sourced",
    "aqr_config_from_file", "aqr_config_from_text", "extract_aqr_config", "head_defaults",
    "jsonable", "merge_a_into_b", "parse_config_file", "parse_config_text",
]

CMTHEAD_DEFAULTS: dict[str, Any] = dict(
    num_query=900, hidden_dim=128, depth_num=64, downsample_scale=8, enable_aqr=False,
    use_simple_modulation=False, debug_mode=False, visualization_interval=1000,
)
"""``CmtHead.__init__`` keyword defaults the AQR path reads (upstream ``cmt_head.py`` at HEAD).
Note ``hidden_dim=128``: both reference configs set 256."""

AQR_COMPONENTS = ("aqr_config", "renderer_config", "modulator_config", "attention_bias_config")

_EXTRA_ARGS = {"aqr_config": {"init_cfg"}}


@dataclass
class Sourced:
    """A config value and where it came from.

    ``source``: ``'file'`` (set by the config), ``'default'`` (CmtHead / constructor default,
    the config leaves it out), ``'unparsed'`` (the config may set it in an assignment the walker
    refused or in an unread ``_base_``; ``value`` is then the default, if there is one) or
    ``'missing'`` (not set and no default).
    """

    value: Any
    source: str
    key: str | None = None  # dotted path in the config where the value was found

    def to_dict(self) -> dict[str, Any]:
        return {"value": jsonable(self.value), "source": self.source}


def jsonable(value: Any) -> Any:
    """Plain JSON data: tuples and sets become lists, other objects their ``str``."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


@dataclass
class AQRConfig:
    """The AQR-relevant settings of one config, each a :class:`Sourced` value.

    Component dicts (``aqr_config`` ...) hold every constructor keyword after ``CmtHead``'s
    shallow ``dict.update`` of the user dict into its defaults, ``type`` removed (as upstream
    pops it). ``head`` holds ``enable_aqr``, ``num_query``, ``hidden_dim``,
    ``use_simple_modulation``, ``debug_mode``, ``visualization_interval``, ``depth_num``,
    ``downsample_scale`` and ``pc_range`` (the bbox coder's, which the head uses).
    """

    point_cloud_range: Sourced
    voxel_size: Sourced
    head_type: Sourced
    head: dict[str, Sourced]
    aqr_config: dict[str, Sourced]
    renderer_config: dict[str, Sourced]
    modulator_config: dict[str, Sourced]
    attention_bias_config: dict[str, Sourced]
    encoder_attention: Sourced  # type(s) of the AQR encoder's attention ops
    decoder_self_attention: Sourced
    decoder_cross_attention: Sourced
    train_ann_files: list[str] = field(default_factory=list)
    val_ann_files: list[str] = field(default_factory=list)
    val_in_train: bool | None = None  # Q34: a val info file among the training ann_files
    model_assignments: list[str] = field(default_factory=list)  # file:line of each `model =`
    unparsed: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def model_assigned_twice(self) -> bool:
        """Q32: ``model`` assigned more than once within one file (the first is discarded)."""
        files = [w.rsplit(":", 1)[0] for w in self.model_assignments]
        return any(files.count(f) > 1 for f in set(files))

    def kwargs(self, component: str) -> dict[str, Any]:
        """Plain constructor keywords of one component.

        ``WeightRenderer(**cfg.kwargs('renderer_config'))`` builds what CmtHead would build.
        """
        return {k: copy.deepcopy(v.value) for k, v in getattr(self, component).items()}

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: every value as ``{'value', 'source'}``."""
        def table(d: Mapping[str, Sourced]) -> dict[str, Any]:
            return {k: v.to_dict() for k, v in d.items()}

        return {
            "point_cloud_range": self.point_cloud_range.to_dict(),
            "voxel_size": self.voxel_size.to_dict(),
            "head_type": self.head_type.to_dict(),
            "head": table(self.head),
            **{c: table(getattr(self, c)) for c in AQR_COMPONENTS},
            "attention": {
                "encoder": self.encoder_attention.to_dict(),
                "decoder_self": self.decoder_self_attention.to_dict(),
                "decoder_cross": self.decoder_cross_attention.to_dict(),
            },
            "train_ann_files": list(self.train_ann_files),
            "val_ann_files": list(self.val_ann_files),
            "val_in_train": self.val_in_train,
            "model_assignments": list(self.model_assignments),
            "unparsed": dict(self.unparsed),
            "notes": list(self.notes),
        }


def head_defaults(hidden_dim: int = 256, pc_range: Sequence[float] | None = None) -> dict[str, dict]:
    """``CmtHead._init_aqr_components`` defaults (``HEAD_DEFAULTS``) for a given head.

    Upstream builds ``embed_dims``, the encoder's ``embed_dims``/``feedforward_channels`` from
    ``self.hidden_dim`` and ``pc_range`` from the head's bbox coder, so those follow the head.
    """
    from aqr_cli.core.configs import HEAD_DEFAULTS

    d = copy.deepcopy(HEAD_DEFAULTS)
    aqr: dict[str, Any] = d["aqr_config"]
    aqr["embed_dims"] = hidden_dim
    if pc_range is not None:
        aqr["pc_range"] = list(pc_range)
    layer = aqr["encoder_config"]["transformerlayers"]
    for attn in layer["attn_cfgs"]:
        attn["embed_dims"] = hidden_dim
    layer["ffn_cfgs"]["embed_dims"] = hidden_dim
    layer["ffn_cfgs"]["feedforward_channels"] = hidden_dim * 4
    layer["feedforward_channels"] = hidden_dim * 4
    return d


def _first(cfg: ParsedConfig, paths: list[str], model_unparsed: bool) -> Sourced:
    for path in paths:
        value = cfg.get(path)
        if value is not None:
            return Sourced(copy.deepcopy(value), "file", path)
    top = {p.split(".")[0] for p in paths}
    if any(t in cfg.unparsed for t in top) or (model_unparsed and any(t == "model" for t in top)):
        return Sourced(None, "unparsed")
    return Sourced(None, "missing")


def _layer_attention_types(decoder: Any) -> tuple[list[str], list[str]]:
    """Types of the self- and cross-attention ops of an mmcv transformer-layer sequence config."""
    selfs: list[str] = []
    crosses: list[str] = []
    if not isinstance(decoder, Mapping):
        return selfs, crosses
    layers = decoder.get("transformerlayers")
    layers = layers if isinstance(layers, list) else [layers]
    for layer in layers:
        if not isinstance(layer, Mapping):
            continue
        attn_cfgs = layer.get("attn_cfgs")
        order = layer.get("operation_order") or ()
        i = 0
        for op in order:
            if op not in ("self_attn", "cross_attn"):
                continue
            cfg = attn_cfgs[i] if isinstance(attn_cfgs, (list, tuple)) and i < len(attn_cfgs) else attn_cfgs
            i += 1
            kind = cfg.get("type") if isinstance(cfg, Mapping) else None
            (selfs if op == "self_attn" else crosses).append(str(kind))
    return selfs, crosses


def _types_value(types: list[str]) -> Any:
    unique = list(dict.fromkeys(types))
    if not unique:
        return None
    return unique[0] if len(unique) == 1 else unique


def _collect_ann_files(node: Any) -> list[str]:
    out: list[str] = []
    if isinstance(node, Mapping):
        for k, v in node.items():
            if k == "ann_file":
                out.extend(v if isinstance(v, (list, tuple)) else [v])
            else:
                out.extend(_collect_ann_files(v))
    elif isinstance(node, (list, tuple)):
        for v in node:
            out.extend(_collect_ann_files(v))
    return [str(x) for x in out if isinstance(x, str)]


def _val_in_train(train: list[str], val: list[str]) -> bool | None:
    if not train or not val:
        return None
    norm = {os.path.normpath(t) for t in train}
    base = {os.path.basename(t) for t in train}
    return any(os.path.normpath(v) in norm or os.path.basename(v) in base for v in val)


def _component(name: str, user: Any, default: dict, where: str, uncertain: bool,
               notes: list[str]) -> dict[str, Sourced]:
    """CmtHead's merge of one user dict into its defaults, each value with its source.

    ``uncertain``: part of the model config was not read, so keys the file does not visibly set
    are 'unparsed' rather than 'default'.
    """
    merged: dict[str, Sourced] = {k: Sourced(copy.deepcopy(v), "unparsed" if uncertain else "default")
                                  for k, v in default.items()}
    if user is not None and not isinstance(user, Mapping):
        notes.append(f"{where}.{name} is a {type(user).__name__}, not a dict; CmtHead would fail")
        return merged
    if user:  # CmtHead: `if cfg: default.update(cfg)` (shallow)
        known = set(default) | _EXTRA_ARGS.get(name, set()) | {"type"}
        for k, v in user.items():
            if k == "type":
                continue
            if k not in known:
                notes.append(f"{where}.{name}.{k} is not a constructor argument (CmtHead would fail)")
            merged[k] = Sourced(copy.deepcopy(v), "file", f"{where}.{name}.{k}")
    return merged


def _head_values(cfg: ParsedConfig, head: Mapping[str, Any], head_path: str,
                 model_unparsed: bool) -> dict[str, Sourced]:
    """``CmtHead`` keywords the AQR path reads, each from the head dict or its default."""
    out: dict[str, Sourced] = {}
    for key, dflt in CMTHEAD_DEFAULTS.items():
        if key in head:
            out[key] = Sourced(copy.deepcopy(head[key]), "file", f"{head_path}.{key}")
        else:
            out[key] = Sourced(dflt, "unparsed" if model_unparsed else "default")
    out["pc_range"] = _first(cfg, [f"{head_path}.bbox_coder.pc_range"], model_unparsed)
    return out


def _attention_types(cfg: ParsedConfig, enc: Sourced | None, head_path: str,
                     model_unparsed: bool) -> tuple[Sourced, Sourced, Sourced]:
    """Attention types of the AQR encoder and of the decoder's self- and cross-attention."""
    enc_self, enc_cross = _layer_attention_types(enc.value if enc else None)
    encoder = Sourced(_types_value(enc_self + enc_cross), enc.source if enc else "missing",
                      enc.key if enc else None)
    dec_path = f"{head_path}.transformer.decoder"
    dec = cfg.get(dec_path)
    dec_self, dec_cross = _layer_attention_types(dec)
    dec_source = "file" if dec is not None else ("unparsed" if model_unparsed else "missing")
    decoder_self = Sourced(_types_value(dec_self),
                           dec_source if dec_self or dec is None else "missing", dec_path)
    decoder_cross = Sourced(_types_value(dec_cross),
                            dec_source if dec_cross or dec is None else "missing", dec_path)
    return encoder, decoder_self, decoder_cross


def extract_aqr_config(cfg: ParsedConfig) -> AQRConfig:
    """The AQR settings of a parsed config, with ``CmtHead`` defaults applied where keys are missing."""
    notes = list(cfg.notes)
    model_unparsed = "model" in cfg.unparsed or not cfg.complete
    head_path = "model.pts_bbox_head"
    head = cfg.get(head_path)
    if head is not None and not isinstance(head, Mapping):
        notes.append(f"{head_path} is not a dict")
        head = None
    head = head or {}
    head_vals = _head_values(cfg, head, head_path, model_unparsed)
    hidden = head_vals["hidden_dim"].value
    pc_range = head_vals["pc_range"].value
    defaults = head_defaults(hidden if isinstance(hidden, int) else 256,
                             pc_range if isinstance(pc_range, (list, tuple)) else None)
    comps = {name: _component(name, head.get(name), defaults[name], head_path, model_unparsed, notes)
             for name in AQR_COMPONENTS}
    if not head_vals["enable_aqr"].value:
        notes.append("enable_aqr is not True: CmtHead builds no AQR components")
    if head_vals["use_simple_modulation"].value:
        notes.append("use_simple_modulation=True: no FeatureModulator is built")
    encoder, decoder_self, decoder_cross = _attention_types(
        cfg, comps["aqr_config"].get("encoder_config"), head_path, model_unparsed)
    train_files = _collect_ann_files(cfg.get("data.train")) + _collect_ann_files(cfg.get("train_dataloader"))
    val_files = _collect_ann_files(cfg.get("data.val")) + _collect_ann_files(cfg.get("val_dataloader"))

    return AQRConfig(
        point_cloud_range=_first(cfg, ["point_cloud_range", f"{head_path}.bbox_coder.pc_range",
                                       "model.train_cfg.pts.point_cloud_range",
                                       "model.test_cfg.pts.pc_range"], model_unparsed),
        voxel_size=_first(cfg, ["voxel_size", "model.pts_voxel_layer.voxel_size",
                                "model.train_cfg.pts.voxel_size", "model.test_cfg.pts.voxel_size"],
                          model_unparsed),
        head_type=_first(cfg, [f"{head_path}.type"], model_unparsed),
        head=head_vals,
        encoder_attention=encoder,
        decoder_self_attention=decoder_self,
        decoder_cross_attention=decoder_cross,
        train_ann_files=train_files,
        val_ann_files=val_files,
        val_in_train=_val_in_train(train_files, val_files),
        model_assignments=list(cfg.assignments.get("model", [])),
        unparsed=dict(cfg.unparsed),
        notes=notes,
        **comps,
    )


def aqr_config_from_text(text: str, *, label: str = "<meta config>") -> AQRConfig:
    """:func:`extract_aqr_config` of config text (e.g. a checkpoint's ``meta['config']``)."""
    return extract_aqr_config(parse_config_text(text, label=label))


def aqr_config_from_file(path: str | os.PathLike) -> AQRConfig:
    """:func:`extract_aqr_config` of a config file and its ``_base_`` files."""
    return extract_aqr_config(parse_config_file(path))
