"""Turn a checkpoint, a debug dump or a synthetic scene into per-query AQR weights and positions.

Every source ends as a :class:`WeightSource`: weights ``[B, Q]``, BEV/camera cells, the settings
in effect (a :class:`ReferenceConfig`), GT boxes when known, and the features the weights were
computed on (for ``compare-modes``). Commands render and compare these; nothing here draws.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from aqr_cli.errors import UserError
from aqr_cli.core.configs import CLASS_NAMES, ReferenceConfig, reference_config
from aqr_cli.core.errors import AQRInputError, warn_quirk

HEAD = "pts_bbox_head."


@dataclass
class Overrides:
    """Flags that change the settings taken from a checkpoint or the reference config."""

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


@dataclass
class WeightSource:
    """Per-query AQR weights of one source, ready to render, bias and compare."""

    label: str
    kind: str                            # 'checkpoint' | 'dump' | 'synthetic' | 'features'
    cfg: ReferenceConfig
    lidar_weights: torch.Tensor          # [B, Q] as the generator produced them (or as recorded)
    camera_weights: torch.Tensor         # [B, Q]
    pts_bev: torch.Tensor                # [B, Q, 2] (row, col) cells
    pts_idx: torch.Tensor                # [B, Q] row * W + col
    pts_pers: torch.Tensor | None        # [B, Q, 3] (view, row, col) or None when unknown
    unseen: torch.Tensor | None          # [B, Q] bool: no camera sees the query (sentinel rows)
    camera_names: tuple[str, ...]
    bias_scale: float | None = None      # learned raw bias_scale (checkpoint), else None
    boxes: list | None = None            # per sample [N, 9] numpy, LiDAR box layout
    box_labels: list | None = None       # per sample list of class names
    stored_maps: tuple | None = None     # dumps: (weight_map_bev [B,H,W], weight_map_pers [B,V,h,w])
    features: tuple | None = None        # (bev [B,C,H,W], cam [B*V,C,h,w]) the weights saw
    modulated: tuple | None = None       # dumps: recorded FeatureModulator outputs
    query_embed: torch.Tensor | None = None   # [B, Q, C] query position embeddings
    pos_embed: torch.Tensor | None = None     # [F, B, C] key position embeddings
    head_state: dict = field(default_factory=dict)   # pts_bbox_head.* of a checkpoint
    img_metas: list | None = None        # per-sample upstream-style metas (rig)
    iteration: int | None = None
    notes: list[str] = field(default_factory=list)
    settings_from: str = "reference 800x320"
    checkpoint_path: str | None = None   # the checkpoint that gave settings/weights, if any
    checkpoint_file: object = None       # that checkpoint as loaded (a LoadedFile: not loaded twice)

    @property
    def batch_size(self) -> int:
        return int(self.lidar_weights.shape[0])

    @property
    def num_queries(self) -> int:
        return int(self.lidar_weights.shape[1])


# ----------------------------------------------------------------------------- settings

def _shape(value, n: int, name: str) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or len(value) != n or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise UserError(f"config {name}={value!r} is not a list of {n} integers")
    return tuple(value)


def config_from_checkpoint(loaded) -> tuple[ReferenceConfig, str]:
    """Settings from a checkpoint's embedded config (``meta['config']``), else the reference.

    A stored config that cannot be parsed leaves the reference settings, with the reason in
    ``where`` (as ``inspect-checkpoint`` notes it); one past the work budget refuses the file.
    """
    from aqr_cli.io.config_parse import aqr_config_from_text
    from aqr_cli.io.errors import ConfigBudgetError, ConfigParseError, LoadError

    text = loaded.meta.config_text
    if not text:
        cfg = _reference_for_state(loaded.state_dict)
        return cfg, f"reference {cfg.name} (the checkpoint holds no config)"
    try:
        parsed = aqr_config_from_text(text, label=f"{loaded.name}:meta['config']")
    except ConfigBudgetError as e:
        raise LoadError(loaded.path, f"meta['config']: {e.reason}") from None
    except ConfigParseError as e:
        cfg = _reference_for_state(loaded.state_dict)
        return cfg, f"reference {cfg.name} (meta['config'] could not be parsed: {e.reason})"
    base = _reference_for_state(loaded.state_dict)
    aqr = parsed.kwargs("aqr_config")
    cfg = copy.deepcopy(base)
    cfg.name = loaded.meta.config_name or base.name
    cfg.aqr_config = {k: v for k, v in aqr.items() if k != "type"}
    cfg.renderer_config = {k: v for k, v in parsed.kwargs("renderer_config").items() if k != "type"}
    cfg.modulator_config = {k: v for k, v in parsed.kwargs("modulator_config").items() if k != "type"}
    cfg.attention_bias_config = {k: v for k, v in parsed.kwargs("attention_bias_config").items()
                                 if k != "type"}
    cfg.bev_shape = _shape(aqr.get("bev_feature_shape", base.bev_shape), 2, "bev_feature_shape")
    cfg.pers_shape = _shape(aqr.get("pers_feature_shape", base.pers_shape), 3, "pers_feature_shape")
    pcr = parsed.point_cloud_range.value
    if isinstance(pcr, (list, tuple)) and len(pcr) == 6 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in pcr):
        cfg.pc_range = [float(v) for v in pcr]
    cfg.aqr_config.setdefault("pc_range", list(cfg.pc_range))
    hidden = parsed.head.get("hidden_dim")
    if hidden is not None and isinstance(hidden.value, int) and not isinstance(hidden.value, bool):
        cfg.hidden_dim = hidden.value
    num_query = parsed.head.get("num_query")
    if num_query is not None and isinstance(num_query.value, int) and not isinstance(num_query.value, bool):
        cfg.num_query = num_query.value
    return cfg, f"{loaded.name} config"


def _reference_for_state(sd: dict) -> ReferenceConfig:
    """The reference config whose BEV width matches a checkpoint's bias offsets, else 800x320.

    ``window_offsets_bev = dy * bev_w + dx``, so any offset with ``dy != 0`` gives ``bev_w``.
    """
    keys = {k.rsplit("attention_bias_generator.", 1)[-1]: v for k, v in sd.items()
            if "attention_bias_generator." in k}
    try:
        dy, dx, flat = keys["y_offsets"].long(), keys["x_offsets"].long(), keys["window_offsets_bev"].long()
        i = int(torch.nonzero(dy).reshape(-1)[0])
        bev_w = int((flat[i] - dx[i]) // dy[i])
    except (KeyError, IndexError, RuntimeError, ZeroDivisionError):
        return reference_config("800x320")
    for name in ("800x320", "1600x640"):
        if reference_config(name).bev_shape[1] == bev_w:
            return reference_config(name)
    return reference_config("800x320")


MAX_SIDE = 1024     # cells per feature-map side; the reference configs use at most 180
MAX_VIEWS = 12


def check_shapes(cfg: ReferenceConfig) -> None:
    """Refuse absurd feature shapes (a hostile or corrupt config) before anything is allocated."""
    bev, pers = tuple(cfg.bev_shape), tuple(cfg.pers_shape)
    ok = (len(bev) == 2 and len(pers) == 3 and all(isinstance(v, int) and v >= 1 for v in bev + pers)
          and max(bev + pers[1:]) <= MAX_SIDE and pers[0] <= MAX_VIEWS)
    if not ok:
        raise UserError(f"feature shapes BEV {list(bev)} / cameras {list(pers)} are not plausible "
                        f"(each side 1..{MAX_SIDE} cells, 1..{MAX_VIEWS} views)")


def _int_setting(value, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise UserError(f"config {name}={value!r} is not plausible (expected {low}..{high})")
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
        raise UserError(f"config gaussian_sigma={sigma!r} is not plausible (expected 0 < sigma <= 1000)")
    kernel = int(6 * sigma + 1) ** 2
    return (batch * f * (c * 4 * 8 + q * 4) + batch * q * c * 4 * 8 + batch * q * win * win * 16
            + kernel * 4 * 4 + 12 * c * c * 4)


def check_budget(cfg: ReferenceConfig, batch: int, num_query: int | None = None) -> None:
    """UserError, before anything is allocated, when ``cfg`` would need more than the budget."""
    from aqr_cli.io.limits import MEMORY_ENV, format_bytes, memory_budget

    need, budget = planned_bytes(cfg, batch, num_query), memory_budget()
    if need > budget:
        raise UserError(f"this configuration (BEV {list(cfg.bev_shape)}, cameras {list(cfg.pers_shape)}, "
                        f"batch {batch}, {num_query or cfg.num_query} queries, hidden_dim {cfg.hidden_dim}) "
                        f"would need about {format_bytes(need)}, more than the memory budget of "
                        f"{format_bytes(budget)}", hint=f"raise it with {MEMORY_ENV}=32G if this is intended")


def apply_overrides(cfg: ReferenceConfig, ov: Overrides, batch: int | None = None,
                    num_query: int | None = None) -> ReferenceConfig:
    """A copy of ``cfg`` with the command-line overrides applied (shapes and budget checked)."""
    check_shapes(cfg)
    cfg = copy.deepcopy(cfg)
    if ov.method and ov.method != "all":
        cfg.renderer_config["render_method"] = ov.method
    if ov.sigma is not None:
        cfg.renderer_config["gaussian_sigma"] = float(ov.sigma)
    if ov.bias_window is not None:
        cfg.attention_bias_config["window_size"] = int(ov.bias_window)
    if ov.bias_gaussian is not None:
        cfg.attention_bias_config["use_gaussian_window"] = bool(ov.bias_gaussian)
    for key in ("renderer_config", "attention_bias_config"):
        getattr(cfg, key)["bev_feature_shape"] = tuple(cfg.bev_shape)
        getattr(cfg, key)["pers_feature_shape"] = tuple(cfg.pers_shape)
    check_budget(cfg, ov.batch_size if batch is None else batch, num_query)
    return cfg


def rig_for(cfg: ReferenceConfig, rig_path: str | None):
    """The camera rig: ``--rig`` file, else the bundled 800x320 rig scaled to the config's image."""
    from aqr_cli.io.rig import default_rig, load_rig

    rig = load_rig(rig_path) if rig_path else default_rig()
    if rig.num_views != cfg.pers_shape[0]:
        raise UserError(f"rig has {rig.num_views} cameras but the config expects {cfg.pers_shape[0]}")
    if not rig_path and tuple(rig.img_shape) != tuple(cfg.img_shape):
        rig = rig.scaled_to(cfg.img_shape)
    return rig


# ----------------------------------------------------------------------------- builders

def _head_state(loaded) -> dict:
    sd = loaded.state_dict
    head = {k[len(HEAD):]: v for k, v in sd.items() if k.startswith(HEAD)}
    return head or dict(sd)


def build_generator(cfg: ReferenceConfig, head: dict | None, ov: Overrides):
    """``AQRWeightGenerator`` with checkpoint weights (strict) or a seeded upstream init, in eval."""
    from aqr_cli.core.generator import AQRWeightGenerator

    kw = {k: v for k, v in cfg.aqr_config.items() if k != "type"}
    kw["bev_feature_shape"], kw["pers_feature_shape"] = tuple(cfg.bev_shape), tuple(cfg.pers_shape)
    torch.manual_seed(ov.seed)
    gen = AQRWeightGenerator(**kw, weight_activation=ov.activation or "tanh", honour_lam=ov.honour_lam)
    if head:
        sub = {k[len("aqr_weight_generator."):]: v for k, v in head.items()
               if k.startswith("aqr_weight_generator.")}
        if not sub:
            raise UserError("the checkpoint holds no aqr_weight_generator.* weights")
        try:
            gen.load_state_dict(sub, strict=True)
        except RuntimeError as e:
            first = str(e).strip().splitlines()
            raise UserError("aqr_weight_generator weights do not fit the config: "
                            + " ".join(first[1:3] if len(first) > 1 else first)) from None
    return gen.eval()


def build_embeddings(cfg: ReferenceConfig, head: dict | None, ov: Overrides):
    """``CMTEmbeddings`` from the checkpoint, or a seeded PyTorch-default init."""
    from aqr_cli.core.embeddings import CMTEmbeddings

    if head and "bev_embedding.0.weight" in head:
        return CMTEmbeddings.from_state_dict(head, pc_range=cfg.pc_range, depth_num=cfg.depth_num).eval()
    torch.manual_seed(ov.seed + 1)
    return CMTEmbeddings(cfg.num_query, cfg.hidden_dim, cfg.depth_num, cfg.pc_range).eval()


def run_generator(gen, emb, ref_points, features, img_metas, cfg) -> tuple:
    """Run the AQR chain of ``CmtHead``: embeddings, memory, generator. Returns weights and info."""
    from aqr_cli.core.embeddings import build_memory

    bev, cam = features
    with torch.no_grad():
        qb, qr = emb.query_embed(ref_points, img_metas)
        query = qb + qr                                           # [B, Q, C]
        pos = emb.pos_embed(cfg.bev_shape, cfg.pers_shape, img_metas)
        memory = build_memory(bev, cam)
        lw, cw, _, info = gen(query.transpose(0, 1), memory, pos, ref_points, img_metas)
    return lw, cw, info, query, pos


def _bias_scale(head: dict | None) -> float | None:
    if head and "attention_bias_generator.bias_scale" in head:
        return float(head["attention_bias_generator.bias_scale"].reshape(-1)[0])
    return None


def _scene_boxes(scene) -> tuple[list, list]:
    return ([np.asarray(b) for b in scene.boxes],
            [[CLASS_NAMES[i] for i in lab] for lab in scene.labels])


def from_scene(cfg, rig, ov: Overrides, head: dict | None, label: str, kind: str,
               ref_points: torch.Tensor | None = None) -> WeightSource:
    """A synthetic scene run through the generator (random or checkpoint weights)."""
    from aqr_cli.analysis.scene import make_scene, scene_weights

    scene = make_scene(cfg, rig.lidar2img, rig.img_shape, batch_size=ov.batch_size, seed=ov.seed,
                       channels=cfg.hidden_dim, num_query=cfg.num_query)
    if ref_points is not None:
        scene.ref_points = ref_points.detach().float().expand(ov.batch_size, -1, -1).clone()
    metas = rig.img_metas(ov.batch_size)
    gen = build_generator(cfg, head, ov)
    emb = build_embeddings(cfg, head, ov)
    feats = (scene.bev_features, scene.cam_features)
    lw, cw, info, query, pos = run_generator(gen, emb, scene.ref_points, feats, metas, cfg)
    notes = []
    if ov.weights == "scene":
        pc = torch.tensor(cfg.pc_range, dtype=torch.float32)
        xy = scene.ref_points[..., :2] * (pc[3:5] - pc[:2]) + pc[:2]
        lw, cw = scene_weights(scene, xy, seed=ov.seed)
        notes.append("weights: synthetic scene model (--weights scene), not the generator")
    boxes, names = _scene_boxes(scene)
    return WeightSource(
        label=label, kind=kind, cfg=cfg, lidar_weights=lw, camera_weights=cw,
        pts_bev=info["pts_bev"], pts_idx=info["pts_idx"], pts_pers=info["pts_pers"],
        unseen=info["first_valid_view"] < 0, camera_names=rig.camera_names,
        bias_scale=_bias_scale(head), boxes=boxes, box_labels=names, features=feats,
        query_embed=query, pos_embed=pos, head_state=head or {}, img_metas=metas, notes=notes)


def load_checkpoint_source(path, trust: bool = False):
    """A checkpoint (path or already loaded file), verified, and its head state_dict.

    ``path`` may be a :class:`aqr_cli.io.checkpoint.LoadedFile`, so that a command loads each
    file once. The content checks are the ones every command applies (one verdict per file).
    """
    from aqr_cli.analysis.inspect import verify_checkpoint
    from aqr_cli.io.checkpoint import LoadedFile, load_checkpoint

    loaded = path if isinstance(path, LoadedFile) else load_checkpoint(path)
    if loaded.kind != "checkpoint":
        from aqr_cli.io.errors import LoadError

        raise LoadError(loaded.path, "expected a checkpoint, but the file is an AQR debug dump")
    verify_checkpoint(loaded)
    head = _head_state(loaded)
    if not any(k.startswith("aqr_weight_generator.") for k in head):
        raise UserError(f"{loaded.path}: no AQR weight generator in this checkpoint "
                        "(no pts_bbox_head.aqr_weight_generator.* keys)")
    return loaded, head


def checkpoint_settings(loaded, ov: Overrides) -> tuple[ReferenceConfig, str]:
    cfg, where = config_from_checkpoint(loaded)
    return apply_overrides(cfg, ov), where


def from_checkpoint(path: str, ov: Overrides, rig_path: str | None, trust: bool = False,
                    loaded=None) -> WeightSource:
    """The checkpoint's reference points, embeddings and generator on a synthetic scene's features."""
    loaded, head = load_checkpoint_source(loaded if loaded is not None else path)
    cfg, where = checkpoint_settings(loaded, ov)
    rig = rig_for(cfg, rig_path)
    ref = head["reference_points.weight"][None] if "reference_points.weight" in head else None
    src = from_scene(cfg, rig, ov, head, label=Path(path).name, kind="checkpoint", ref_points=ref)
    src.settings_from = where
    src.checkpoint_path, src.checkpoint_file = str(loaded.path), loaded
    src.notes.append("features: synthetic scene (a checkpoint holds no features); "
                     "reference points, embeddings and generator from the checkpoint")
    return src


def synthetic(ov: Overrides, rig_path: str | None, checkpoint: str | None = None,
              trust: bool = False) -> WeightSource:
    """``--synthetic``: seeded scene, generator with random or ``--checkpoint`` weights."""
    head, where, loaded = None, f"reference {ov.reference}", None
    cfg = reference_config(ov.reference)
    if checkpoint:
        loaded, head = load_checkpoint_source(checkpoint)
        cfg, where = config_from_checkpoint(loaded)
    cfg = apply_overrides(cfg, ov)
    rig = rig_for(cfg, rig_path)
    label = f"synthetic-seed{ov.seed}"
    src = from_scene(cfg, rig, ov, head, label=label, kind="synthetic")
    src.settings_from = where
    if loaded is not None:
        src.checkpoint_path, src.checkpoint_file = str(loaded.path), loaded
    if head is None and ov.weights == "generator":
        src.notes.append(f"generator: upstream random init with seed {ov.seed}: its weights "
                         "carry no learned structure (try --checkpoint or --weights scene)")
    return src


# ----------------------------------------------------------------------------- dumps

def _dump_config(dump, loaded_ckpt, ov: Overrides) -> tuple[ReferenceConfig, str]:
    """Settings for a dump: the checkpoint's config, else the reference whose shapes match."""
    t = dump.tensors
    bev_hw = tuple(t["weight_map_bev"].shape[-2:])
    pers = tuple(t["weight_map_pers"].shape[-3:])
    if loaded_ckpt is not None:
        cfg, where = config_from_checkpoint(loaded_ckpt)
    else:
        match = [n for n in ("800x320", "1600x640") if reference_config(n).bev_shape == bev_hw
                 and reference_config(n).pers_shape == pers]
        cfg = reference_config(match[0] if match else ov.reference)
        where = f"reference {cfg.name}" + ("" if match else " with the dump's shapes")
    if tuple(cfg.bev_shape) != bev_hw or tuple(cfg.pers_shape) != pers:
        if loaded_ckpt is not None:
            raise UserError(f"dump maps are BEV {list(bev_hw)} / cameras {list(pers)} but the "
                            f"checkpoint config says {list(cfg.bev_shape)} / {list(cfg.pers_shape)}")
        cfg.bev_shape, cfg.pers_shape = bev_hw, pers
    return apply_overrides(cfg, ov, batch=int(t["lidar_weights"].shape[0]),
                           num_query=int(t["lidar_weights"].shape[1])), where


def _check_dump(path: str, dump) -> None:
    """What rendering needs beyond the content checks every command applies at load time."""
    need = ("lidar_weights", "camera_weights", "pts_bev", "weight_map_bev", "weight_map_pers")
    missing = [k for k in need if k not in dump.tensors]
    if missing:
        raise UserError(f"{path}: debug dump lacks {', '.join(missing)}")


def _warn_off_grid(pts_bev: torch.Tensor, hw: tuple[int, int]) -> None:
    h, w = hw
    rows, cols = pts_bev[..., 0], pts_bev[..., 1]
    off = int((~((rows >= 0) & (rows < h) & (cols >= 0) & (cols < w))).sum())
    if off:
        warn_quirk("Q2", f"{off} queries sit off the {h}x{w} BEV grid (hard-coded +-54 m mapping, "
                   "drifted reference points): the renderer skips them", count=off)


def from_dump(path: str, ov: Overrides, checkpoint: str | None = None, trust: bool = False,
              loaded=None) -> WeightSource:
    """A debug dump's recorded weights and positions; ``checkpoint`` supplies settings and refs."""
    from aqr_cli.core.geometry import CameraRig
    from aqr_cli.io.checkpoint import load_dump

    loaded = loaded or load_dump(path)
    dump = loaded.dump
    _check_dump(path, dump)
    ck, head = (load_checkpoint_source(checkpoint) if checkpoint else (None, None))
    cfg, where = _dump_config(dump, ck, ov)
    t = dump.tensors
    lw, cw = t["lidar_weights"].float().clone(), t["camera_weights"].float().clone()
    pts_bev = t["pts_bev"].float().clone()
    h, w = cfg.bev_shape
    _warn_off_grid(pts_bev, (h, w))
    pts_idx = pts_bev[..., 0] * w + pts_bev[..., 1]
    notes: list[str] = []
    metas = dump.img_metas
    try:
        rig = CameraRig.from_img_metas(metas[0]) if metas else None
    except Exception as e:  # noqa: BLE001 - a dump with odd metas still renders its BEV part
        rig = None
        notes.append(f"camera rig unreadable from img_metas ({e}); camera re-render skipped")
    names = rig.camera_names if rig is not None else tuple(f"cam{i}" for i in range(cfg.pers_shape[0]))
    pts_pers, unseen = None, None
    if head is not None and rig is not None:
        pts_pers, unseen = _dump_pers_from_checkpoint(head, cfg, ov, metas, pts_bev, notes)
    elif rig is not None:
        notes.append("camera cells unknown: a dump stores no pts_pers; pass --checkpoint to "
                     "recompute them from its reference points (stored camera maps shown)")
    boxes, labels = _dump_boxes(dump)
    if float(lw.min()) >= 0 and float(cw.min()) < 0:
        warn_quirk("Q1", "recorded LiDAR weights are >= 0 while camera weights go negative: the "
                   "renderer clamped the LiDAR weights in place before the dump was written, so "
                   "negative LiDAR weights (suppression) never reached the BEV map",
                   lidar_min=float(lw.min()), camera_min=float(cw.min()))
    if lw.shape[1] > cfg.num_query:
        warn_quirk("Q19", f"{lw.shape[1] - cfg.num_query} of {lw.shape[1]} queries are denoising (DN) "
                   "queries; statistics mix them with the 900 matching queries",
                   num_dn=lw.shape[1] - cfg.num_query)
    return WeightSource(
        label=Path(path).name, kind="dump", cfg=cfg, lidar_weights=lw, camera_weights=cw,
        pts_bev=pts_bev, pts_idx=pts_idx, pts_pers=pts_pers, unseen=unseen, camera_names=names,
        bias_scale=_bias_scale(head), boxes=boxes, box_labels=labels,
        stored_maps=(t["weight_map_bev"].float(), t["weight_map_pers"].float()),
        features=_pair(t, "original_bev_features", "original_pers_features"),
        modulated=_pair(t, "modulated_bev_features", "modulated_pers_features"),
        head_state=head or {}, img_metas=metas, iteration=dump.iteration, notes=notes,
        settings_from=where, checkpoint_path=None if ck is None else str(ck.path),
        checkpoint_file=ck)


def _pair(t: dict, a: str, b: str):
    return (t[a].float(), t[b].float()) if a in t and b in t else None


def metas_for_batch(metas: list, batch_size: int) -> list:
    """One ``img_metas`` dict per sample: the first ``batch_size``, or the list repeated."""
    return metas[:batch_size] if len(metas) >= batch_size else metas * batch_size


_GENERATORS: dict = {}


def _projecting_generator(cfg, head: dict, ov: Overrides):
    """``build_generator`` for projections only, reused across the dumps of one checkpoint
    (the same loaded generator tensors, generator settings and shapes)."""
    tensors = tuple(v for k, v in sorted(head.items()) if k.startswith("aqr_weight_generator."))
    key = (tuple(id(t) for t in tensors), repr(sorted(cfg.aqr_config.items())),
           tuple(cfg.bev_shape), tuple(cfg.pers_shape), ov.seed, ov.activation, ov.honour_lam)
    hit = _GENERATORS.get(key)
    if hit is None or any(a is not b for a, b in zip(hit[0], tensors)):
        _GENERATORS.clear()  # the tensors are kept alive with it, so their ids stay theirs
        hit = _GENERATORS[key] = (tensors, build_generator(cfg, head, ov))
    return hit[1]


def _dump_pers_from_checkpoint(head, cfg, ov, metas, pts_bev, notes):
    """Camera cells of the dump's matching queries from the checkpoint's reference points."""
    gen = _projecting_generator(cfg, head, ov)
    ref = head.get("reference_points.weight")
    b, q = pts_bev.shape[:2]
    if ref is None or ref.shape[0] > q:
        notes.append("camera cells not recomputed: the checkpoint's reference points do not fit")
        return None, None
    n_dn = q - ref.shape[0]
    refs = ref[None].expand(b, -1, -1).float()
    metas = metas_for_batch(metas, b)
    with torch.no_grad():
        bev, pers, _, _, view = gen.project_with_views(refs, metas)
    if not torch.equal(bev, pts_bev[:, n_dn:]):
        bad = int((bev != pts_bev[:, n_dn:]).any(-1).sum())
        notes.append(f"warning: {bad} of {ref.shape[0]} BEV cells recomputed from the checkpoint's "
                     "reference points differ from the dump's pts_bev: the dump may come from "
                     "another checkpoint")
    if n_dn:
        notes.append(f"camera cells of the {n_dn} DN queries are unknown (not rendered)")
        fill = torch.full((b, n_dn, 3), -1.0)
        pers = torch.cat([fill, pers], dim=1)
        view = torch.cat([torch.full((b, n_dn), -1, dtype=view.dtype), view], dim=1)
    return pers, view < 0


def _dump_boxes(dump) -> tuple[list | None, list | None]:
    if not dump.gt_boxes or all(b is None for b in dump.gt_boxes):
        return None, None
    boxes, names = [], []
    for b, lab in zip(dump.gt_boxes, dump.gt_labels or [None] * len(dump.gt_boxes)):
        arr = np.zeros((0, 9), dtype=np.float32) if b is None else np.asarray(b, dtype=np.float32)
        boxes.append(arr)
        labs = [] if lab is None else [int(x) for x in np.asarray(lab).reshape(-1)]
        names.append([CLASS_NAMES[i] if 0 <= i < len(CLASS_NAMES) else str(i) for i in labs])
    return boxes, names


def from_features(dump_path: str, checkpoint, ov: Overrides, trust: bool = False) -> WeightSource:
    """``--features DUMP --checkpoint CKPT``: the checkpoint's generator on a dump's features."""
    from aqr_cli.core.geometry import CameraRig

    base = from_dump(dump_path, ov, checkpoint=checkpoint)
    if base.features is None:
        raise UserError(f"{dump_path}: the dump holds no original_*_features")
    bev, cam = base.features
    c = base.cfg.hidden_dim
    if bev.shape[1] != c or cam.shape[1] != c:
        raise UserError(f"{dump_path}: its features have {bev.shape[1]} channels (BEV) / {cam.shape[1]} "
                        f"(camera) but the generator expects {c}; the fixture-style dumps keep only "
                        "a slice of the channels, so the generator cannot be re-run on them")
    head = base.head_state
    ref = head["reference_points.weight"][None].expand(base.batch_size, -1, -1).float()
    if not base.img_metas:
        raise UserError(f"{dump_path}: the dump holds no img_metas (camera rig) to run the generator")
    metas = CameraRig.from_img_metas(base.img_metas[0]).img_metas(base.batch_size)
    gen = build_generator(base.cfg, head, ov)
    emb = build_embeddings(base.cfg, head, ov)
    lw, cw, info, query, pos = run_generator(gen, emb, ref, (bev, cam), metas, base.cfg)
    base.kind, base.lidar_weights, base.camera_weights = "features", lw, cw
    base.pts_bev, base.pts_idx, base.pts_pers = info["pts_bev"], info["pts_idx"], info["pts_pers"]
    base.unseen = info["first_valid_view"] < 0
    base.query_embed, base.pos_embed = query, pos
    base.notes.append("weights: the checkpoint's generator re-run on the dump's recorded features")
    return base


def sample_rig(src: WeightSource, sample: int):
    """The camera rig of one sample (its ``img_metas``), or None when the source has none."""
    from aqr_cli.core.geometry import CameraRig

    if not src.img_metas:
        return None
    try:
        return CameraRig.from_img_metas(metas_for_batch(src.img_metas, src.batch_size)[sample])
    except (AQRInputError, IndexError):
        return None
