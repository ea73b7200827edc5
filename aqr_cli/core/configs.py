"""The two upstream reference configurations (spec section 8), as constructor keyword dicts.

Each ``ReferenceConfig`` holds the ``pts_bbox_head`` AQR dicts exactly as the upstream config
files write them, minus ``type`` (so ``WeightRenderer(**cfg.renderer_config)`` works), plus the
head-level values the AQR path reads.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

POINT_CLOUD_RANGE = [-54.0, -54.0, -5.0, 54.0, 54.0, 3.0]


def encoder_config(attention_type: str = "PETRMultiheadFlashAttention") -> dict:
    """The AQR encoder config of both reference configs, with the given attention type."""
    return dict(
        type="PETRTransformerDecoder",
        return_intermediate=True,
        num_layers=1,
        transformerlayers=dict(
            type="PETRTransformerDecoderLayer",
            with_cp=False,
            attn_cfgs=[dict(type=attention_type, embed_dims=256, num_heads=4, dropout=0.1)],
            ffn_cfgs=dict(type="FFN", embed_dims=256, feedforward_channels=1024, num_fcs=2,
                          ffn_drop=0.1, act_cfg=dict(type="ReLU", inplace=True)),
            feedforward_channels=1024,
            operation_order=("cross_attn", "norm", "ffn", "norm"),
        ),
    )


@dataclass
class ReferenceConfig:
    """Head-level settings and the four AQR component configs of one resolution."""

    name: str
    bev_shape: tuple[int, int]
    pers_shape: tuple[int, int, int]
    img_shape: tuple[int, int]
    grid_size: tuple[int, int, int]
    voxel_size: tuple[float, float, float]
    aqr_config: dict
    renderer_config: dict
    modulator_config: dict
    attention_bias_config: dict
    pc_range: list = field(default_factory=lambda: list(POINT_CLOUD_RANGE))
    hidden_dim: int = 256
    num_query: int = 900
    depth_num: int = 64
    downsample_scale: int = 8
    decoder_num_heads: int = 8

    def copy(self) -> "ReferenceConfig":
        return copy.deepcopy(self)

    @property
    def num_features(self) -> int:
        """Memory length F = H*W + V*h*w."""
        v, h, w = self.pers_shape
        return self.bev_shape[0] * self.bev_shape[1] + v * h * w


def _modulator() -> dict:
    return dict(modulation_type="element_wise", normalize_weights=False, residual_connection=True,
                residual_weight=0.7, learnable_modulation=False, activation="none")


def _config_800x320() -> ReferenceConfig:
    bev, pers = (128, 128), (6, 20, 50)
    return ReferenceConfig(
        name="800x320", bev_shape=bev, pers_shape=pers, img_shape=(320, 800),
        grid_size=(1024, 1024, 40), voxel_size=(0.1, 0.1, 0.2),
        aqr_config=dict(embed_dims=256, window_sizes=[8, 5], use_type_embed=True,
                        bev_feature_shape=bev, pers_feature_shape=pers,
                        encoder_config=encoder_config()),
        renderer_config=dict(render_method="gaussian", gaussian_sigma=1.0, bilinear_radius=1.5,
                             distance_decay=0.8, min_weight_threshold=0.01,
                             bev_feature_shape=bev, pers_feature_shape=pers,
                             normalize_weights=True),
        modulator_config=_modulator(),
        attention_bias_config=dict(bev_feature_shape=bev, pers_feature_shape=pers, window_size=8,
                                   bias_scale=2.5, learnable_scale=True, min_scale=0.5,
                                   max_scale=5.0, use_local_bias=True, use_gaussian_window=False,
                                   gaussian_sigma=2.0, debug_print=True, print_interval=1000,
                                   fp16=True),
    )


def _config_1600x640() -> ReferenceConfig:
    bev, pers = (180, 180), (6, 40, 100)
    return ReferenceConfig(
        name="1600x640", bev_shape=bev, pers_shape=pers, img_shape=(640, 1600),
        grid_size=(1440, 1440, 40), voxel_size=(0.075, 0.075, 0.2),
        aqr_config=dict(embed_dims=256, window_sizes=[15, 5], use_type_embed=True,
                        bev_feature_shape=bev, pers_feature_shape=pers,
                        encoder_config=encoder_config()),
        renderer_config=dict(render_method="gaussian", gaussian_sigma=2.0, bilinear_radius=2.0,
                             distance_decay=0.8, min_weight_threshold=0.01,
                             bev_feature_shape=bev, pers_feature_shape=pers,
                             normalize_weights=True),
        modulator_config=_modulator(),
        attention_bias_config=dict(bev_feature_shape=bev, pers_feature_shape=pers, window_size=15,
                                   bias_scale=2.5, learnable_scale=True, min_scale=0.5,
                                   max_scale=5.0, use_local_bias=True, use_gaussian_window=False,
                                   gaussian_sigma=2.5, debug_print=True, print_interval=1000,
                                   fp16=True),
    )


REFERENCE_CONFIGS = {"800x320": _config_800x320, "1600x640": _config_1600x640}


def reference_config(name: str = "800x320") -> ReferenceConfig:
    """A fresh copy of a reference configuration (``"800x320"`` or ``"1600x640"``)."""
    try:
        return REFERENCE_CONFIGS[name]()
    except KeyError:
        raise KeyError(f"unknown reference config {name!r}; choose from {sorted(REFERENCE_CONFIGS)}") from None


# CmtHead._init_aqr_components defaults (spec Q40), applied where a user config leaves keys out.
HEAD_DEFAULTS = dict(
    aqr_config=dict(embed_dims=256, window_sizes=[15, 5], use_type_embed=True,
                    pc_range=list(POINT_CLOUD_RANGE), bev_feature_shape=(180, 180),
                    pers_feature_shape=(6, 40, 100),
                    encoder_config=encoder_config("MultiFheadFlashAttention")),
    renderer_config=dict(render_method="gaussian", gaussian_sigma=2.0, bilinear_radius=1.5,
                         distance_decay=0.8, min_weight_threshold=0.01,
                         bev_feature_shape=(180, 180), pers_feature_shape=(6, 40, 100),
                         normalize_weights=True, max_weight_clamp=1.5),
    modulator_config=dict(modulation_type="element_wise", normalize_weights=True,
                          residual_connection=True, residual_weight=0.1,
                          learnable_modulation=False, activation="none"),
    attention_bias_config=dict(bev_feature_shape=(180, 180), pers_feature_shape=(6, 40, 100),
                               window_size=15, bias_scale=2.5, learnable_scale=True,
                               min_scale=0.5, max_scale=5.0, use_local_bias=True,
                               use_gaussian_window=False, gaussian_sigma=2.5, debug_print=True,
                               print_interval=1000, fp16=True),
)

CAMERA_NAMES = ("CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT",
                "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT")
"""Data order of the six views (spec 8.3)."""

CAMERA_GRID = (("CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT"),
               ("CAM_BACK_LEFT", "CAM_BACK", "CAM_BACK_RIGHT"))
"""Figure layout of the six views, whatever order the data stores them in."""

CLASS_NAMES = ("car", "truck", "construction_vehicle", "bus", "trailer", "barrier",
               "motorcycle", "bicycle", "pedestrian", "traffic_cone")
SMALL_CLASSES = frozenset({"pedestrian", "traffic_cone", "bicycle", "motorcycle"})
