"""Exceptions and structured warnings raised by the AQR core."""

from __future__ import annotations

import warnings


class AQRInputError(ValueError):
    """Bad input to a core component: wrong shape, NaN/Inf, out-of-grid, or an impossible config.

    The message always names the offending argument and what was expected, e.g.
    ``pts_bev: expected shape [B, Q, 2] = [1, 900, 2], got [1, 900, 3]``.
    """


class QuirkWarning(UserWarning):
    """An upstream quirk (spec section 9) that affected this computation.

    ``quirk_id`` is the spec id (``"Q1"``, ``"Q3"``, ...); ``detail`` is a dict of numbers a
    command can show (counts, ranges). Commands collect these with
    ``warnings.catch_warnings(record=True)`` and report them.
    """

    def __init__(self, quirk_id: str, message: str, **detail):
        super().__init__(f"{quirk_id}: {message}")
        self.quirk_id = quirk_id
        self.message = message
        self.detail = detail


def warn_quirk(quirk_id: str, message: str, stacklevel: int = 3, **detail) -> None:
    """Emit a :class:`QuirkWarning` for ``quirk_id``."""
    warnings.warn(QuirkWarning(quirk_id, message, **detail), stacklevel=stacklevel)
