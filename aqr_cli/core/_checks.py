"""Argument checks shared by the core components; all raise :class:`AQRInputError`."""

from __future__ import annotations

from typing import Literal, Sequence, overload

import torch

from .errors import AQRInputError


def check_tensor(name: str, value, ndim: int | None = None) -> torch.Tensor:
    """Return ``value`` if it is a tensor (of ``ndim`` dims when given), else raise."""
    if not isinstance(value, torch.Tensor):
        raise AQRInputError(f"{name}: expected a torch.Tensor, got {type(value).__name__}")
    if ndim is not None and value.dim() != ndim:
        raise AQRInputError(
            f"{name}: expected a {ndim}-D tensor, got shape {list(value.shape)}")
    return value


def check_shape(name: str, value, expected: Sequence, labels: str | None = None) -> torch.Tensor:
    """Check ``value.shape`` against ``expected`` (ints must match, ``None`` matches anything).

    ``labels`` is the symbolic shape shown in the message, e.g. ``"[B, Q, 2]"``.
    """
    check_tensor(name, value)
    shape = tuple(value.shape)
    ok = len(shape) == len(expected) and all(e is None or e == s for e, s in zip(expected, shape))
    if not ok:
        want = "[" + ", ".join("*" if e is None else str(e) for e in expected) + "]"
        sym = f"{labels} = " if labels else ""
        raise AQRInputError(f"{name}: expected shape {sym}{want}, got {list(shape)}")
    return value


def check_finite(name: str, value: torch.Tensor) -> torch.Tensor:
    """Raise if ``value`` holds NaN or Inf (floating tensors only)."""
    if value.is_floating_point() and value.numel() and not bool(torch.isfinite(value).all()):
        n_nan = int(torch.isnan(value).sum())
        n_inf = int(torch.isinf(value).sum())
        raise AQRInputError(
            f"{name}: contains {n_nan} NaN and {n_inf} Inf values of {value.numel()}")
    return value


@overload
def check_positive_shape(name: str, shape: Sequence[int], length: Literal[2]) -> tuple[int, int]:
    ...


@overload
def check_positive_shape(name: str, shape: Sequence[int], length: Literal[3]
                         ) -> tuple[int, int, int]:
    ...


@overload
def check_positive_shape(name: str, shape: Sequence[int], length: int) -> tuple[int, ...]:
    ...


def check_positive_shape(name: str, shape: Sequence[int], length: int) -> tuple[int, ...]:
    """Validate a feature-shape config tuple like ``(H, W)`` or ``(V, h, w)``."""
    try:
        out = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise AQRInputError(f"{name}: expected {length} positive integers, got {shape!r}") from None
    if len(out) != length or any(s <= 0 for s in out) or any(float(s) != float(t) for s, t in zip(out, shape)):
        raise AQRInputError(f"{name}: expected {length} positive integers, got {tuple(shape)!r}")
    return out
