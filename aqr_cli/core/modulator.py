"""``FeatureModulator``: multiply feature maps by rendered weight maps (spec section 4, Q27).

Reproduces upstream ``feature_modulator.py``: optional min-max normalisation of each map (per
sample for BEV, per (sample, view) for cameras; a constant map becomes 0.5), an optional
learnable affine, an activation, then element_wise / channel_wise / adaptive modulation and the
residual ``out = modulated + residual_weight * features``. With element_wise modulation this is
``features * (m + r)``, not the convex blend the upstream design notes describe (Q27);
:meth:`FeatureModulator.gain` returns that per-cell factor.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from ._checks import check_tensor
from .errors import AQRInputError

MODULATION_TYPES = ("element_wise", "channel_wise", "adaptive")
ACTIVATIONS = ("none", "sigmoid", "tanh", "relu")
FEATURE_TYPES = ("bev", "perspective")
ADAPTIVE_MIX = (0.7, 0.3)  # upstream's fixed element_wise / channel_wise blend


class FeatureModulator(nn.Module):
    """Modulate BEV ``[B, C, H, W]`` or camera ``[B*V, C, h, w]`` features by weight maps.

    Constructor arguments and defaults are upstream's (``FeatureModulator(**modulator_config)``).
    With ``learnable_modulation`` the parameters ``modulation_scale [1]`` (init 1) and
    ``modulation_bias [1]`` (init 0) exist, under upstream's state_dict names.
    """

    def __init__(self, modulation_type: str = "element_wise", normalize_weights: bool = True,
                 residual_connection: bool = True, residual_weight: float = 0.1,
                 learnable_modulation: bool = False, activation: str = "none"):
        super().__init__()
        if modulation_type not in MODULATION_TYPES:
            raise AQRInputError(f"modulation_type: expected one of {list(MODULATION_TYPES)}, "
                                f"got {modulation_type!r}")
        if activation not in ACTIVATIONS:
            raise AQRInputError(
                f"activation: expected one of {list(ACTIVATIONS)}, got {activation!r}")
        try:
            residual_weight = float(residual_weight)
        except (TypeError, ValueError):
            raise AQRInputError(
                f"residual_weight: expected a number, got {residual_weight!r}") from None
        if not math.isfinite(residual_weight):
            raise AQRInputError(f"residual_weight: expected a finite number, got {residual_weight}")
        self.modulation_type = modulation_type
        self.normalize_weights = bool(normalize_weights)
        self.residual_connection = bool(residual_connection)
        self.residual_weight = residual_weight
        self.learnable_modulation = bool(learnable_modulation)
        self.activation = activation
        if self.learnable_modulation:
            self.modulation_scale = nn.Parameter(torch.ones(1))
            self.modulation_bias = nn.Parameter(torch.zeros(1))

    def extra_repr(self) -> str:
        return (f"modulation_type={self.modulation_type!r}, "
                f"normalize_weights={self.normalize_weights}, "
                f"residual_connection={self.residual_connection}, "
                f"residual_weight={self.residual_weight}, "
                f"learnable_modulation={self.learnable_modulation}, activation={self.activation!r}")

    def forward(self, features: torch.Tensor, weight_maps: torch.Tensor,
                feature_type: str = "bev") -> torch.Tensor:
        """Return modulated features with the shape of ``features``.

        ``'bev'``: features ``[B, C, H, W]``, weight_maps ``[B, H, W]``.
        ``'perspective'``: features ``[B*V, C, h, w]`` (sample-major), weight_maps ``[B, V, h, w]``.
        """
        maps = self._flat_maps(features, weight_maps, feature_type)
        processed = self.preprocess_weight_maps(maps)
        out = self._modulate(features, processed)
        if self.residual_connection:
            out = out + self.residual_weight * features
        return out

    def gain(self, weight_maps: torch.Tensor, feature_type: str = "bev") -> torch.Tensor:
        """Return the per-cell factor ``g`` with ``forward(f, maps) == f * g`` (up to rounding).

        Shape of ``weight_maps``: ``[B, H, W]`` (``'bev'``) or ``[B, V, h, w]`` (``'perspective'``).
        element_wise: ``m + r``; channel_wise: ``mean(m) + r``; adaptive:
        ``0.7*m + 0.3*mean(m) + r``; ``m`` the processed map, ``r`` the residual weight (0 when
        the residual connection is off), the mean over each map's cells.
        """
        self._check_maps(weight_maps, feature_type)
        m = self.preprocess_weight_maps(weight_maps)
        mean = m.mean(dim=(-2, -1), keepdim=True).expand_as(m)
        if self.modulation_type == "element_wise":
            g = m
        elif self.modulation_type == "channel_wise":
            g = mean
        else:
            g = ADAPTIVE_MIX[0] * m + ADAPTIVE_MIX[1] * mean
        if self.residual_connection:
            g = g + self.residual_weight
        return g

    def preprocess_weight_maps(self, weight_maps: torch.Tensor) -> torch.Tensor:
        """Return processed maps ``[..., H, W]``: min-max per map, learnable affine, activation.

        Each ``[H, W]`` map is normalised on its own (per sample for BEV ``[B, H, W]``, per
        (sample, view) for cameras ``[B, V, h, w]``). Never modifies ``weight_maps``.
        """
        m = weight_maps
        if self.normalize_weights:
            lo = m.amin(dim=(-2, -1), keepdim=True)
            hi = m.amax(dim=(-2, -1), keepdim=True)
            span = hi - lo
            scaled = (m - lo) / torch.where(span > 0, span, torch.ones_like(span))
            m = torch.where(span > 0, scaled, torch.full_like(m, 0.5))
        if self.learnable_modulation:
            m = m * self.modulation_scale + self.modulation_bias
        return self._activate(m)

    def _activate(self, m: torch.Tensor) -> torch.Tensor:
        """Apply the configured activation out of place (upstream's ReLU is in place on a copy)."""
        if self.activation == "sigmoid":
            return torch.sigmoid(m)
        if self.activation == "tanh":
            return torch.tanh(m)
        if self.activation == "relu":
            return torch.relu(m)
        return m

    def _modulate(self, features: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """Return ``features [N, C, H, W]`` modulated by processed maps ``m [N, H, W]``."""
        if self.modulation_type == "element_wise":
            return features * m.unsqueeze(1)
        n, _, h, w = features.shape
        channel = features * m.reshape(n, 1, h * w).mean(dim=2, keepdim=True).view(n, 1, 1, 1)
        if self.modulation_type == "channel_wise":
            return channel
        return ADAPTIVE_MIX[0] * (features * m.unsqueeze(1)) + ADAPTIVE_MIX[1] * channel

    @staticmethod
    def _check_maps(weight_maps, feature_type: str) -> None:
        """Validate ``feature_type`` and the rank of ``weight_maps``."""
        if feature_type not in FEATURE_TYPES:
            raise AQRInputError(
                f"feature_type: expected one of {list(FEATURE_TYPES)}, got {feature_type!r}")
        check_tensor("weight_maps", weight_maps)
        ndim, sym = (3, "[B, H, W]") if feature_type == "bev" else (4, "[B, V, h, w]")
        if weight_maps.dim() != ndim:
            raise AQRInputError(f"weight_maps: expected shape {sym} for {feature_type!r}, "
                                f"got {list(weight_maps.shape)}")

    def _flat_maps(self, features, weight_maps, feature_type: str) -> torch.Tensor:
        """Check shapes and return the maps as ``[N, H, W]`` matching ``features [N, C, H, W]``."""
        self._check_maps(weight_maps, feature_type)
        check_tensor("features", features)
        sym = "[B, C, H, W]" if feature_type == "bev" else "[B*V, C, h, w]"
        if features.dim() != 4:
            raise AQRInputError(f"features: expected shape {sym}, got {list(features.shape)}")
        n, _, h, w = features.shape
        want: tuple[int, ...]
        if feature_type == "bev":
            want = (n, h, w)
        else:
            b, v = weight_maps.shape[:2]
            if n != b * v:
                raise AQRInputError(
                    f"features: expected shape {sym} with B*V = {b}*{v} = {b * v} from "
                    f"weight_maps {list(weight_maps.shape)}, got {list(features.shape)}")
            want = (b, v, h, w)
        if tuple(weight_maps.shape) != want:
            raise AQRInputError(f"weight_maps: expected shape {list(want)} to match features "
                                f"{list(features.shape)}, got {list(weight_maps.shape)}")
        return weight_maps.reshape(n, h, w)
