"""The AQR model in pure torch: geometry, embeddings, generator, renderer, modulator, bias.

Names mirror the upstream modules so that a user's mmdet3d config dicts work unchanged, e.g.
``WeightRenderer(**renderer_config)`` (minus ``type``). Submodules are imported on first use.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "AQRInputError": "errors",
    "QuirkWarning": "errors",
    "ReferenceConfig": "configs",
    "reference_config": "configs",
    "CAMERA_NAMES": "configs",
    "CAMERA_GRID": "configs",
    "CameraRig": "geometry",
    "pos2embed": "embeddings",
    "inverse_sigmoid": "embeddings",
    "coords_bev": "embeddings",
    "CMTEmbeddings": "embeddings",
    "build_memory": "embeddings",
    "build_pos_embed": "embeddings",
    "project_points_to_cameras": "geometry",
    "AQRWeightGenerator": "generator",
    "WeightRenderer": "renderer",
    "FeatureModulator": "modulator",
    "AttentionBiasGenerator": "bias",
    "SparseBias": "bias",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
