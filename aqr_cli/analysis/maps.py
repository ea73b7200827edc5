"""The renderer and the bias generator of a source, as upstream builds them: the weight maps and
the sparse attention bias that ``render-weights``, ``compare-modes`` and the readings share."""

from __future__ import annotations

import torch

from aqr_cli.analysis.sources import WeightSource


def build_renderer(src: WeightSource, method: str):
    """``WeightRenderer`` of the source's config with ``method``; the checkpoint kernel if stored."""
    from aqr_cli.core.renderer import WeightRenderer

    kw = {k: v for k, v in src.cfg.renderer_config.items() if k != "type"}
    kw["render_method"] = method
    renderer = WeightRenderer(**kw)
    kernel = src.head_state.get("weight_renderer.gaussian_kernel")
    if method == "gaussian" and kernel is not None and kernel.shape == renderer.gaussian_kernel.shape:
        renderer.load_state_dict({"gaussian_kernel": kernel.float()}, strict=True)
    return renderer


def render_maps(src: WeightSource, method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(bev [B, H, W], pers [B, V, h, w]) of one renderer method.

    Without camera cells (a dump read without its checkpoint) the camera maps are the dump's
    stored ones (``summary['maps']['camera_source']`` says so), else zeros.
    """
    renderer = build_renderer(src, method)
    with torch.no_grad():
        bev = renderer.render_bev_weights(src.lidar_weights, src.pts_bev)
        if src.pts_pers is not None:
            pers = renderer.render_perspective_weights(src.camera_weights, src.pts_pers)
        elif src.stored_maps is not None:   # camera cells unknown: the dump's own camera maps
            pers = src.stored_maps[1].clone()
        else:
            pers = torch.zeros(src.batch_size, *src.cfg.pers_shape)
    return bev, pers


def build_bias_generator(src: WeightSource, scale: float | None = None):
    """``AttentionBiasGenerator`` of the config; stored checkpoint buffers when they fit."""
    from aqr_cli.core.bias import AttentionBiasGenerator

    kw = {k: v for k, v in src.cfg.attention_bias_config.items() if k != "type"}
    sub = {k[len("attention_bias_generator."):]: v for k, v in src.head_state.items()
           if k.startswith("attention_bias_generator.")}
    window_matches = "y_offsets" in sub and sub["y_offsets"].numel() == kw.get("window_size", 15) ** 2
    gen = AttentionBiasGenerator.from_state_dict(sub, **kw) if window_matches else AttentionBiasGenerator(**kw)
    if not window_matches and "bias_scale" in sub:
        gen.bias_scale.data.copy_(sub["bias_scale"].reshape(1).float())
    if scale is not None:
        gen.bias_scale.data.fill_(float(scale))
    return gen


def sparse_bias(src: WeightSource, scale: float | None = None):
    """(SparseBias, generator). Without camera cells the camera weights are zeroed (BEV only)."""
    gen = build_bias_generator(src, scale)
    pers = src.pts_pers
    cw = src.camera_weights
    if pers is None:
        pers = torch.zeros(src.batch_size, src.num_queries, 3)
        cw = torch.zeros_like(cw)
    else:
        cw = torch.where(pers[..., 0] < 0, torch.zeros_like(cw), cw)
        pers = pers.clamp(min=0)
    with torch.no_grad():
        return gen.forward_sparse(src.lidar_weights, cw, src.pts_idx, pers), gen
