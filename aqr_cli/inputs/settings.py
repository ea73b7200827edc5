"""Where every AQR setting of a command comes from: one resolution, each value with its origin.

Highest first:

1. a command-line override (renderer method and sigma, bias window): origin ``override``;
2. the config: a config file given with the command (``--config``), else the checkpoint's
   embedded ``meta['config']``; the keys it leaves out take ``CmtHead``'s defaults the way
   upstream merges them (:mod:`aqr_cli.io.config_parse`, ``Sourced.source`` 'file'/'default');
3. the input itself: the reference config whose BEV width a checkpoint's bias offsets encode,
   or the shapes of a dump's maps;
4. the reference config (800x320 unless asked otherwise): the upstream defaults.

:class:`Settings` keeps the config as an :class:`AQRConfig` of ``Sourced`` values (what the quirk
rules and ``inspect-checkpoint`` read) and builds the core's :class:`ReferenceConfig` from it
(:meth:`Settings.reference`); nothing else builds one. :meth:`Settings.lookup` answers "which
value, and from where" for one setting.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any

from aqr_cli.core.configs import ReferenceConfig, reference_config
from aqr_cli.core.errors import AQRInputError
from aqr_cli.inputs.checks import ShapeMismatchError, sourced
from aqr_cli.io.checkpoint import LoadedFile
from aqr_cli.io.config_parse import (
    AQR_COMPONENTS,
    AQRConfig,
    ParsedConfig,
    Sourced,
    extract_aqr_config,
    parse_config_file,
    parse_config_text,
)
from aqr_cli.io.errors import ConfigBudgetError, ConfigParseError, LoadError

REFERENCES = ("800x320", "1600x640")
MAX_SIDE = 1024     # cells per feature-map side; the reference configs use at most 180
MAX_VIEWS = 12


class SettingsError(AQRInputError):
    """Settings no command can run with (implausible shapes, over the memory budget, weights that
    do not fit them); ``hint`` is an optional suggestion the CLI prints after the message."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


@dataclass
class Overrides:
    """Command-line choices that change the settings taken from a checkpoint or reference config."""

    reference: str = "800x320"
    method: str | None = None            # renderer method ('all' handled by the command)
    sigma: float | None = None           # renderer gaussian_sigma
    bias_window: int | None = None
    bias_gaussian: bool | None = None
    activation: str | None = None        # 'tanh' | 'sigmoid'
    honour_lam: bool | None = None
    batch_size: int = 1
    seed: int = 0
    weights: str = "generator"           # 'generator' | 'scene'

    def settings(self) -> dict[tuple[str, str], Any]:
        """The settings these overrides set, as ``{(component, key): value}``."""
        out: dict[tuple[str, str], Any] = {}
        if self.method and self.method != "all":
            out["renderer_config", "render_method"] = self.method
        if self.sigma is not None:
            out["renderer_config", "gaussian_sigma"] = float(self.sigma)
        if self.bias_window is not None:
            out["attention_bias_config", "window_size"] = int(self.bias_window)
        if self.bias_gaussian is not None:
            out["attention_bias_config", "use_gaussian_window"] = bool(self.bias_gaussian)
        return out


@dataclass
class Resolved:
    """One setting's value and where it came from (see the module docstring for the order)."""

    value: Any
    origin: str


_HEAD_FIELDS = {"hidden_dim": "hidden_dim", "num_query": "num_query", "pc_range": "pc_range",
                "depth_num": "depth_num"}


@dataclass
class Settings:
    """The settings of one input: its config (if any) over the defaults the input implies."""

    config: AQRConfig | None             # None when no config was given or could be read
    parsed: ParsedConfig | None
    source: dict | None                  # {'kind': 'file' | 'meta', 'label': ...} of the config
    base: ReferenceConfig                # what the config does not say (tensors, dump, reference)
    base_origin: str                     # where ``base`` comes from, e.g. "reference 800x320"
    where: str                           # one line for a report: "epoch_6.pth config", ...
    notes: list[str] = field(default_factory=list)
    name: str | None = None              # the run's name (meta exp_name), if the file says
    config_path: str | None = None       # the config file, for file:line origins
    input_name: str | None = None        # the file the settings belong to (for origins)
    overrides: Overrides | None = None
    _origins: Any = field(default=None, init=False, repr=False, compare=False)  # traced lazily

    def with_overrides(self, overrides: Overrides | None) -> Settings:
        """These settings under ``overrides`` (the parsed config is shared, not copied)."""
        return dataclasses.replace(self, overrides=overrides)

    def configured(self) -> ReferenceConfig:
        """The core's :class:`ReferenceConfig` of the config over the base, without overrides."""
        cfg = copy.deepcopy(self.base)
        if self.config is not None:
            _apply_config(cfg, self.config, self.name)
        return cfg

    def reference(self, batch: int | None = None, num_query: int | None = None) -> ReferenceConfig:
        """The core's :class:`ReferenceConfig` for these settings, overrides applied.

        With overrides, the shapes are checked for plausibility and the plan against the memory
        budget (for ``batch`` samples, default the overrides' batch size, and ``num_query``).
        """
        cfg = self.configured()
        return cfg if self.overrides is None else apply_overrides(cfg, self.overrides, batch, num_query)

    def lookup(self, component: str | None, key: str) -> Resolved:
        """The value of one setting (``component`` None: the head) and its origin."""
        if self.overrides is not None and component is not None:
            chosen = self.overrides.settings()
            if (component, key) in chosen:
                return Resolved(chosen[component, key], "override")
        cfg = self.configured()
        value = getattr(cfg, _HEAD_FIELDS[key]) if component is None else \
            getattr(cfg, component).get(key)
        item = sourced(self.config, component, key)
        if item is not None and item.source == "file":
            return Resolved(value, self._config_origin(item))
        if item is not None and item.source == "default":
            return Resolved(value, "CmtHead default")
        if item is not None and item.source == "unparsed":
            return Resolved(value, "CmtHead default (the config may set it where it was not read)")
        return Resolved(value, self.base_origin)

    def _config_origin(self, item: Sourced) -> str:
        if self.source is not None and self.source["kind"] == "meta":
            return f"{self.input_name}:meta['config']"
        if self.config_path is None or item.key is None:
            return self.source["label"] if self.source else "config"
        if self._origins is None:
            from aqr_cli.io.config_origins import trace_origins

            self._origins = trace_origins(self.config_path)
        found = self._origins.lookup(item.key)
        return found.label() if found is not None else self.config_path


def read_config(lf: LoadedFile | None, config_path: str | os.PathLike | None
                ) -> tuple[AQRConfig | None, ParsedConfig | None, dict | None, list[str], str | None]:
    """The config to use: ``config_path`` (parsed, never run), else ``meta['config']``, else None.

    Returns (config, parsed, source, notes, why): ``why`` says why a stored config was not
    used. A config file that cannot be read raises :class:`ConfigParseError` (naming it); an
    unreadable ``meta['config']`` only adds a note, unless it is past the work budget
    (:class:`LoadError`: every command refuses the file).
    """
    notes: list[str] = []
    if config_path is not None:
        parsed = parse_config_file(config_path)
        source = {"kind": "file", "label": os.fspath(config_path)}
        if lf is not None and lf.meta.config_text:
            notes.append("--config overrides the config stored in meta['config']")
    elif lf is not None and lf.meta.config_text:
        try:
            parsed = parse_config_text(lf.meta.config_text, label=f"{lf.name}:meta['config']")
        except ConfigBudgetError as e:
            raise LoadError(lf.path, f"meta['config']: {e.reason}") from None
        except ConfigParseError as e:
            notes.append(f"meta['config'] could not be parsed ({e.reason}); no config used")
            return None, None, None, notes, f"meta['config'] could not be parsed: {e.reason}"
        source = {"kind": "meta", "label": "meta['config']"}
    else:
        return None, None, None, notes, "the checkpoint holds no config"
    cfg = extract_aqr_config(parsed)
    for name, why in cfg.unparsed.items():
        notes.append(f"config: {name} not parsed ({why})")
    return cfg, parsed, source, notes, None


def checkpoint_settings(lf: LoadedFile, config_path: str | os.PathLike | None = None) -> Settings:
    """The settings of a checkpoint: ``config_path`` or its ``meta['config']`` over the reference
    config its bias offsets imply."""
    cfg, parsed, source, notes, why = read_config(lf, config_path)
    base, inferred = reference_for_state(lf.state_dict)
    base_origin = (f"{lf.name} tensors (reference {base.name})" if inferred
                   else f"reference {base.name}")
    if cfg is None:
        where = f"reference {base.name} ({why})"
    else:
        where = f"{lf.name} config" if config_path is None else os.fspath(config_path)
    return Settings(config=cfg, parsed=parsed, source=source, base=base, base_origin=base_origin,
                    where=where, notes=notes, name=lf.meta.config_name,
                    config_path=None if config_path is None else os.fspath(config_path),
                    input_name=lf.name)


def reference_settings(name: str) -> Settings:
    """The settings of the named reference config alone (no file)."""
    base = reference_config(name)
    return Settings(config=None, parsed=None, source=None, base=base,
                    base_origin=f"reference {name}", where=f"reference {name}")


def dump_settings(bev_hw: tuple[int, ...], pers: tuple[int, ...], checkpoint: Settings | None,
                  reference: str) -> Settings:
    """Settings for a dump with maps ``[H, W]`` / ``[V, h, w]``: the checkpoint's, else the
    reference whose shapes match (else ``reference`` with the dump's shapes).

    Raises :class:`ShapeMismatchError` when the checkpoint's settings disagree with the maps.
    """
    if checkpoint is not None:
        cfg = checkpoint.configured()
        if tuple(cfg.bev_shape) != bev_hw or tuple(cfg.pers_shape) != pers:
            raise ShapeMismatchError(None, f"dump maps are BEV {list(bev_hw)} / cameras {list(pers)} "
                                     f"but the checkpoint config says {list(cfg.bev_shape)} / "
                                     f"{list(cfg.pers_shape)}")
        return checkpoint
    match = [n for n in REFERENCES if reference_config(n).bev_shape == bev_hw
             and reference_config(n).pers_shape == pers]
    base = reference_config(match[0] if match else reference)
    where = f"reference {base.name}" + ("" if match else " with the dump's shapes")
    base.bev_shape, base.pers_shape = (bev_hw[0], bev_hw[1]), (pers[0], pers[1], pers[2])
    return Settings(config=None, parsed=None, source=None, base=base,
                    base_origin=f"the dump's map shapes ({where})", where=where)


def reference_for_state(sd: dict) -> tuple[ReferenceConfig, bool]:
    """The reference config whose BEV width matches a checkpoint's bias offsets, else 800x320;
    and whether the offsets decided it.

    ``window_offsets_bev = dy * bev_w + dx``, so any offset with ``dy != 0`` gives ``bev_w``.
    """
    import torch

    keys = {k.rsplit("attention_bias_generator.", 1)[-1]: v for k, v in sd.items()
            if "attention_bias_generator." in k}
    try:
        dy, dx, flat = keys["y_offsets"].long(), keys["x_offsets"].long(), keys["window_offsets_bev"].long()
        i = int(torch.nonzero(dy).reshape(-1)[0])
        bev_w = int((flat[i] - dx[i]) // dy[i])
    except (KeyError, IndexError, RuntimeError, ZeroDivisionError):
        return reference_config("800x320"), False
    for name in REFERENCES:
        if reference_config(name).bev_shape[1] == bev_w:
            return reference_config(name), True
    return reference_config("800x320"), False


def _shape(value: Any, n: int, name: str) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or len(value) != n or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise SettingsError(f"config {name}={value!r} is not a list of {n} integers")
    return tuple(value)


def _plain_int(item: Sourced | None) -> int | None:
    if item is not None and isinstance(item.value, int) and not isinstance(item.value, bool):
        return item.value
    return None


def _apply_config(cfg: ReferenceConfig, config: AQRConfig, name: str | None) -> None:
    """Overlay a parsed config on ``cfg`` in place (the component dicts replace the reference's)."""
    base_bev, base_pers = cfg.bev_shape, cfg.pers_shape
    cfg.name = name or cfg.name
    for component in AQR_COMPONENTS:
        setattr(cfg, component, {k: v for k, v in config.kwargs(component).items() if k != "type"})
    aqr = cfg.aqr_config
    bev = _shape(aqr.get("bev_feature_shape", base_bev), 2, "bev_feature_shape")
    pers = _shape(aqr.get("pers_feature_shape", base_pers), 3, "pers_feature_shape")
    cfg.bev_shape, cfg.pers_shape = (bev[0], bev[1]), (pers[0], pers[1], pers[2])
    pcr = config.point_cloud_range.value
    if isinstance(pcr, (list, tuple)) and len(pcr) == 6 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in pcr):
        cfg.pc_range = [float(v) for v in pcr]
    aqr.setdefault("pc_range", list(cfg.pc_range))
    hidden, num_query = _plain_int(config.head.get("hidden_dim")), _plain_int(config.head.get("num_query"))
    if hidden is not None:
        cfg.hidden_dim = hidden
    if num_query is not None:
        cfg.num_query = num_query


def check_shapes(cfg: ReferenceConfig) -> None:
    """Refuse absurd feature shapes (a hostile or corrupt config) before anything is allocated."""
    bev, pers = tuple(cfg.bev_shape), tuple(cfg.pers_shape)
    ok = (len(bev) == 2 and len(pers) == 3 and all(isinstance(v, int) and v >= 1 for v in bev + pers)
          and max(bev + pers[1:]) <= MAX_SIDE and pers[0] <= MAX_VIEWS)
    if not ok:
        raise SettingsError(f"feature shapes BEV {list(bev)} / cameras {list(pers)} are not plausible "
                            f"(each side 1..{MAX_SIDE} cells, 1..{MAX_VIEWS} views)")


def _int_setting(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise SettingsError(f"config {name}={value!r} is not plausible (expected {low}..{high})")
    return int(value)


def planned_bytes(cfg: ReferenceConfig, batch: int, num_query: int | None = None) -> int:
    """Bytes the commands allocate at most for ``cfg``, estimated from its shapes alone.

    Dominant terms: memory, positions and key/value projections ``[B, F, C]`` (about 8 float32
    copies), per-query tensors ``[B, Q, C]``, the encoder's per-chunk mask ``[B, heads, Q, F]``
    bytes, per-query bias and mask windows ``[B, Q, ws^2]``, the renderer kernel and the
    generator's ``C x C`` layers. Chunked work is bounded separately by the attention code.
    """
    bev, pers = cfg.bev_shape, cfg.pers_shape
    f = bev[0] * bev[1] + pers[0] * pers[1] * pers[2]
    c = _int_setting(cfg.hidden_dim, "hidden_dim", 1, 8192)
    q = _int_setting(num_query if num_query is not None else cfg.num_query, "num_query", 1, 100_000)
    ws = [cfg.attention_bias_config.get("window_size", 8)]
    ws += list(cfg.aqr_config.get("window_sizes", [8, 5]) or [])
    win = max(_int_setting(w, "window size", 1, 1024) for w in ws)
    sigma = cfg.renderer_config.get("gaussian_sigma", 1.0)
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not 0 < sigma <= 1000:
        raise SettingsError(f"config gaussian_sigma={sigma!r} is not plausible (expected 0 < sigma <= 1000)")
    kernel = int(6 * sigma + 1) ** 2
    return (batch * f * (c * 4 * 8 + q * 4) + batch * q * c * 4 * 8 + batch * q * win * win * 16
            + kernel * 4 * 4 + 12 * c * c * 4)


def check_budget(cfg: ReferenceConfig, batch: int, num_query: int | None = None) -> None:
    """SettingsError, before anything is allocated, when ``cfg`` would need more than the budget."""
    from aqr_cli.io.limits import MEMORY_ENV, format_bytes, memory_budget

    need, budget = planned_bytes(cfg, batch, num_query), memory_budget()
    if need > budget:
        raise SettingsError(f"this configuration (BEV {list(cfg.bev_shape)}, cameras {list(cfg.pers_shape)}, "
                            f"batch {batch}, {num_query or cfg.num_query} queries, hidden_dim {cfg.hidden_dim}) "
                            f"would need about {format_bytes(need)}, more than the memory budget of "
                            f"{format_bytes(budget)}", hint=f"raise it with {MEMORY_ENV}=32G if this is intended")


def apply_overrides(cfg: ReferenceConfig, ov: Overrides, batch: int | None = None,
                    num_query: int | None = None) -> ReferenceConfig:
    """A copy of ``cfg`` with the overrides applied (shapes and memory budget checked)."""
    check_shapes(cfg)
    cfg = copy.deepcopy(cfg)
    for (component, key), value in ov.settings().items():
        getattr(cfg, component)[key] = value
    for component in ("renderer_config", "attention_bias_config"):
        getattr(cfg, component)["bev_feature_shape"] = tuple(cfg.bev_shape)
        getattr(cfg, component)["pers_feature_shape"] = tuple(cfg.pers_shape)
    check_budget(cfg, ov.batch_size if batch is None else batch, num_query)
    return cfg
