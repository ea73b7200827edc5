"""Turn a checkpoint, a debug dump or a synthetic scene into per-query AQR weights and positions.

Every source ends as a :class:`WeightSource`: weights ``[B, Q]``, BEV/camera cells, the settings
in effect (a :class:`ReferenceConfig`, from :mod:`aqr_cli.inputs.settings`), GT boxes when known,
and the features the weights were computed on (for ``compare-modes``). The builders take opened
files (:mod:`aqr_cli.inputs.opened`; a path is opened here). Commands render and compare these;
nothing here draws.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
# loaded with this module, before a command makes its output folder, not on the first
# np.random use in a synthetic scene: a Ctrl-C landing in the lazy import of its Cython
# modules was swallowed there and the run went on (exit 0; seen under load)
import numpy.random  # noqa: F401
import torch

from aqr_cli.core.configs import CLASS_NAMES, ReferenceConfig
from aqr_cli.core.errors import AQRInputError, warn_quirk
from aqr_cli.inputs.opened import OpenedCheckpoint, OpenedDump, Source, open_checkpoint, open_dump
from aqr_cli.analysis.memory import memory_bytes, release_free_memory
from aqr_cli.inputs.settings import Overrides, SettingsError, dump_settings, reference_settings
from aqr_cli.io.errors import LoadError


@dataclass(frozen=True)
class SourceOptions:
    """What the source commands share of their options: the drawing choices and the settings a
    source was loaded with (named in the figures' captions). The defaults are the commands'."""

    method: str | None = None          # renderer method ('all': render-weights' four); None: the config's
    bias_scale: float | None = None    # raw bias scale instead of the checkpoint's (clamped)
    sample: int = 0                    # the sample the figures draw
    bias_range: str = "fixed"          # colour range of the bias heatmaps: fixed or auto
    activation: str | None = None
    lam: str | None = None
    sigma: float | None = None
    bias_window: int | None = None
    rig: str | None = None
    checkpoint: str | None = None
    seed: int = 0
    weights: str = "generator"


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
    memory: torch.Tensor | None = None   # [F, B, C] decoder memory of `features` when the builder
                                         # made it; `features` are then views of it (one copy)
    modulated: tuple | None = None       # dumps: recorded FeatureModulator outputs
    query_embed: torch.Tensor | None = None   # [B, Q, C] query position embeddings
    pos_embed: torch.Tensor | None = None     # [F, B, C] key position embeddings
    head_state: dict = field(default_factory=dict)   # pts_bbox_head.* of a checkpoint
    img_metas: list | None = None        # per-sample upstream-style metas (rig)
    iteration: int | None = None
    notes: list[str] = field(default_factory=list)
    settings_from: str = "reference 800x320"
    checkpoint_path: str | None = None   # the checkpoint that gave settings/weights, if any
    checkpoint_file: OpenedCheckpoint | None = None   # that checkpoint as opened (not opened twice)

    @property
    def batch_size(self) -> int:
        return int(self.lidar_weights.shape[0])

    @property
    def num_queries(self) -> int:
        return int(self.lidar_weights.shape[1])


def rig_for(cfg: ReferenceConfig, rig_path: str | None):
    """The camera rig: ``--rig`` file, else the bundled 800x320 rig scaled to the config's image."""
    from aqr_cli.io.rig import default_rig, load_rig

    rig = load_rig(rig_path) if rig_path else default_rig()
    if rig.num_views != cfg.pers_shape[0]:
        raise SettingsError(f"rig has {rig.num_views} cameras but the config expects {cfg.pers_shape[0]}")
    if not rig_path and tuple(rig.img_shape) != tuple(cfg.img_shape):
        rig = rig.scaled_to(cfg.img_shape)
    return rig


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
            raise SettingsError("the checkpoint holds no aqr_weight_generator.* weights")
        try:
            gen.load_state_dict(sub, strict=True)
        except RuntimeError as e:
            first = str(e).strip().splitlines()
            raise SettingsError("aqr_weight_generator weights do not fit the config: "
                            + " ".join(first[1:3] if len(first) > 1 else first)) from None
    return gen.eval()


def build_embeddings(cfg: ReferenceConfig, head: dict | None, ov: Overrides):
    """``CMTEmbeddings`` from the checkpoint, or a seeded PyTorch-default init."""
    from aqr_cli.core.embeddings import CMTEmbeddings

    if head and "bev_embedding.0.weight" in head:
        return CMTEmbeddings.from_state_dict(head, pc_range=cfg.pc_range, depth_num=cfg.depth_num).eval()
    torch.manual_seed(ov.seed + 1)
    return CMTEmbeddings(cfg.num_query, cfg.hidden_dim, cfg.depth_num, cfg.pc_range).eval()


def run_generator(gen, emb, ref_points, features, img_metas, cfg,
                  memory: torch.Tensor | None = None) -> tuple:
    """Run the AQR chain of ``CmtHead``: embeddings, memory, generator. Returns weights and info.

    ``memory``: the features' decoder memory ``[F, B, C]`` when the caller already built it."""
    from aqr_cli.core.embeddings import build_memory

    bev, cam = features
    with torch.no_grad():
        qb, qr = emb.query_embed(ref_points, img_metas)
        query = qb + qr                                           # [B, Q, C]
        pos = emb.pos_embed(cfg.bev_shape, cfg.pers_shape, img_metas)
        if memory is None:
            memory = build_memory(bev, cam)
        release_free_memory(memory.numel() * memory.element_size())
        lw, cw, _, info = gen(query.transpose(0, 1), memory, pos, ref_points, img_metas)
    return lw, cw, info, query, pos


def split_memory(memory: torch.Tensor, bev_shape, cam_shape) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of ``build_memory`` for batch-first memory ``[B, F, C]``: views (bev [B, C, H, W],
    cam [B*V, C, h, w])."""
    b, c, h, w = bev_shape
    bn, _, ph, pw = cam_shape
    hw = h * w
    bev = memory[:, :hw].transpose(1, 2).reshape(b, c, h, w)
    cam = memory[:, hw:].reshape(b, bn // b, ph, pw, c).permute(0, 1, 4, 2, 3).reshape(bn, c, ph, pw)
    return bev, cam


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
    from aqr_cli.core.embeddings import build_memory

    release_free_memory(memory_bytes(cfg, ov.batch_size))
    scene = make_scene(cfg, rig.lidar2img, rig.img_shape, batch_size=ov.batch_size, seed=ov.seed,
                       channels=cfg.hidden_dim, num_query=cfg.num_query)
    if ref_points is not None:
        scene.ref_points = ref_points.detach().float().expand(ov.batch_size, -1, -1).clone()
    metas = rig.img_metas(ov.batch_size)
    gen = build_generator(cfg, head, ov)
    emb = build_embeddings(cfg, head, ov)
    # The features are kept as views of their decoder memory, which the generator and
    # compare-modes read: one copy of them instead of two (58 MB at 1600x640).
    memory = build_memory(scene.bev_features, scene.cam_features)
    feats = split_memory(memory.transpose(0, 1), scene.bev_features.shape, scene.cam_features.shape)
    scene.bev_features, scene.cam_features = feats
    lw, cw, info, query, pos = run_generator(gen, emb, scene.ref_points, feats, metas, cfg, memory)
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
        bias_scale=_bias_scale(head), boxes=boxes, box_labels=names, features=feats, memory=memory,
        query_embed=query, pos_embed=pos, head_state=head or {}, img_metas=metas, notes=notes)


def _checkpoint(checkpoint: OpenedCheckpoint | Source | None) -> OpenedCheckpoint | None:
    if checkpoint is None or isinstance(checkpoint, OpenedCheckpoint):
        return checkpoint
    return open_checkpoint(checkpoint)


def from_checkpoint(checkpoint: OpenedCheckpoint | Source, ov: Overrides,
                    rig_path: str | None) -> WeightSource:
    """The checkpoint's reference points, embeddings and generator on a synthetic scene's features."""
    ck = _checkpoint(checkpoint)
    assert ck is not None
    head = ck.require_generator()
    cfg = ck.settings.with_overrides(ov).reference()
    rig = rig_for(cfg, rig_path)
    ref = head["reference_points.weight"][None] if "reference_points.weight" in head else None
    src = from_scene(cfg, rig, ov, head, label=ck.name, kind="checkpoint", ref_points=ref)
    src.settings_from = ck.settings.where
    src.checkpoint_path, src.checkpoint_file = str(ck.path), ck
    src.notes.append("features: synthetic scene (a checkpoint holds no features); "
                     "reference points, embeddings and generator from the checkpoint")
    return src


def synthetic(ov: Overrides, rig_path: str | None,
              checkpoint: OpenedCheckpoint | Source | None = None) -> WeightSource:
    """``--synthetic``: seeded scene, generator with random or ``checkpoint`` weights."""
    ck = _checkpoint(checkpoint)
    head = None if ck is None else ck.require_generator()
    settings = reference_settings(ov.reference) if ck is None else ck.settings
    cfg = settings.with_overrides(ov).reference()
    rig = rig_for(cfg, rig_path)
    label = f"synthetic-seed{ov.seed}"
    src = from_scene(cfg, rig, ov, head, label=label, kind="synthetic")
    src.settings_from = settings.where
    if ck is not None:
        src.checkpoint_path, src.checkpoint_file = str(ck.path), ck
    if head is None and ov.weights == "generator":
        src.notes.append(f"generator: upstream random init with seed {ov.seed}: its weights "
                         "carry no learned structure (try --checkpoint or --weights scene)")
    return src


def _dump_config(od: OpenedDump, ck: OpenedCheckpoint | None, ov: Overrides
                 ) -> tuple[ReferenceConfig, str]:
    """Settings for a dump: the checkpoint's config, else the reference whose shapes match."""
    bev_hw, pers = od.map_shapes()
    settings = dump_settings(bev_hw, pers, None if ck is None else ck.settings, ov.reference)
    lw = od.tensors["lidar_weights"]
    cfg = settings.with_overrides(ov).reference(batch=int(lw.shape[0]), num_query=int(lw.shape[1]))
    return cfg, settings.where


def _warn_off_grid(pts_bev: torch.Tensor, hw: tuple[int, int]) -> None:
    h, w = hw
    rows, cols = pts_bev[..., 0], pts_bev[..., 1]
    off = int((~((rows >= 0) & (rows < h) & (cols >= 0) & (cols < w))).sum())
    if off:
        warn_quirk("Q2", f"{off} queries sit off the {h}x{w} BEV grid (hard-coded +-54 m mapping, "
                   "drifted reference points): the renderer skips them", count=off)


def from_dump(dump: OpenedDump | Source, ov: Overrides,
              checkpoint: OpenedCheckpoint | Source | None = None) -> WeightSource:
    """A debug dump's recorded weights and positions; ``checkpoint`` supplies settings and refs."""
    from aqr_cli.core.geometry import CameraRig

    od = dump if isinstance(dump, OpenedDump) else open_dump(dump)
    od.require_maps()
    ck = _checkpoint(checkpoint)
    head = None if ck is None else ck.require_generator()
    cfg, where = _dump_config(od, ck, ov)
    dump = od.dump
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
        label=od.name, kind="dump", cfg=cfg, lidar_weights=lw, camera_weights=cw,
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


def from_features(dump: OpenedDump | Source, checkpoint: OpenedCheckpoint | Source,
                  ov: Overrides) -> WeightSource:
    """``--features DUMP --checkpoint CKPT``: the checkpoint's generator on a dump's features."""
    from aqr_cli.core.geometry import CameraRig

    od = dump if isinstance(dump, OpenedDump) else open_dump(dump)
    dump_path = od.path
    base = from_dump(od, ov, checkpoint=checkpoint)
    if base.features is None:
        raise LoadError(dump_path, "the dump holds no original_*_features")
    bev, cam = base.features
    c = base.cfg.hidden_dim
    if bev.shape[1] != c or cam.shape[1] != c:
        raise LoadError(dump_path, f"its features have {bev.shape[1]} channels (BEV) / {cam.shape[1]} "
                        f"(camera) but the generator expects {c}; the fixture-style dumps keep only "
                        "a slice of the channels, so the generator cannot be re-run on them")
    head = base.head_state
    ref = head["reference_points.weight"][None].expand(base.batch_size, -1, -1).float()
    if not base.img_metas:
        raise LoadError(dump_path, "the dump holds no img_metas (camera rig) to run the generator")
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
