"""The additive bias in sparse form: :class:`WindowBias` (per-query window entries, never the
dense ``[B, Q, F]`` tensor), added to a chunk's logits with one ``index_add_``
(:func:`add_bias`), and the attention mass on each query's window (:func:`window_mass`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from aqr_cli.core.errors import AQRInputError

@dataclass
class WindowBias:
    """Per-query window entries of an additive bias: no dense ``[B, Q, F]`` tensor.

    ``indices [B, Q, K]`` int64 dense columns (BEV first, camera from ``num_bev``), ``values``
    ``[B, Q, K]`` float32 logits, ``valid [B, Q, K]`` bool. Invalid slots are ignored; valid
    columns of one row must be distinct. ``is_global``: K = 2 segment values (slot 0 on all BEV
    columns, slot 1 on all camera columns), upstream's ``use_local_bias=False``.
    """

    indices: torch.Tensor
    values: torch.Tensor
    valid: torch.Tensor
    is_global: bool = False
    num_bev: int | None = None

    def __post_init__(self):
        for name in ("indices", "values", "valid"):
            t = getattr(self, name)
            if not isinstance(t, torch.Tensor) or t.dim() != 3:
                got = list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise AQRInputError(f"bias.{name}: expected shape [B, Q, K], got {got}")
        if not (self.indices.shape == self.values.shape == self.valid.shape):
            raise AQRInputError(f"bias: indices {list(self.indices.shape)}, values "
                                f"{list(self.values.shape)} and valid {list(self.valid.shape)} "
                                f"must have the same shape [B, Q, K]")
        self.indices = self.indices.detach().long()
        self.valid = self.valid.detach().bool()
        # detached: a learnable bias_scale would otherwise carry autograd into every chunk
        self.values = torch.where(self.valid, self.values.detach().float(), 0.0)
        if self.is_global and self.values.shape[-1] != 2:
            raise AQRInputError("bias: a global bias needs K = 2 (BEV, camera segment values)")

    @classmethod
    def from_sparse(cls, sparse, values: torch.Tensor | None = None,
                    round_to_dtype: bool = True) -> "WindowBias":
        """From a ``SparseBias`` (``aqr_cli.core.bias``) or an ``(indices, values, valid)`` triple.

        ``values`` replaces the stored values (e.g. the unscaled ones). With ``round_to_dtype``
        the values are rounded to the SparseBias' dense dtype (float16 for ``fp16=True``), as the
        decoder sees upstream's fp16 bias cast back to float32 logits (spec 5.7, Q17).
        """
        if isinstance(sparse, WindowBias):
            return sparse if values is None else cls(sparse.indices, values, sparse.valid,
                                                     sparse.is_global, sparse.num_bev)
        if isinstance(sparse, tuple):
            if len(sparse) != 3:
                raise AQRInputError("bias: expected a SparseBias or an (indices, values, valid) triple")
            idx, vals, valid = sparse
            return cls(idx, vals if values is None else values, valid)
        vals = sparse.values if values is None else values
        if round_to_dtype and getattr(sparse, "dtype", torch.float32) != torch.float32:
            vals = vals.to(sparse.dtype).float()
        return cls(sparse.indices, vals, sparse.mask, bool(sparse.is_global),
                   int(sparse.num_bev_features))

    def rows(self, start: int, stop: int) -> "WindowBias":
        return WindowBias(self.indices[:, start:stop], self.values[:, start:stop],
                          self.valid[:, start:stop], self.is_global, self.num_bev)

    def with_values(self, values: torch.Tensor) -> "WindowBias":
        return WindowBias(self.indices, values, self.valid, self.is_global, self.num_bev)

    def to_dense(self, num_keys: int, num_bev: int | None = None) -> torch.Tensor:
        """Dense ``[B, Q, F]`` float32 (tests and small cases only)."""
        b, q, _ = self.values.shape
        out = torch.zeros(b, q, num_keys)
        if self.is_global:
            hw = self.num_bev if num_bev is None else num_bev
            out[..., :hw] = self.values[..., :1]
            out[..., hw:] = self.values[..., 1:]
            return out
        out.scatter_add_(2, self.indices.clamp(0, num_keys - 1), self.values)
        return out


def as_window_bias(bias) -> WindowBias | None:
    """``bias`` (SparseBias, WindowBias, triple or None) as a :class:`WindowBias` or None."""
    return None if bias is None else WindowBias.from_sparse(bias)


def add_bias(logits: torch.Tensor, bias: WindowBias, num_bev: int) -> None:
    """Add the window bias ``[B, n, K]`` to every head of ``logits [B, h, n, F]`` in place."""
    b, h, n, f = logits.shape
    if bias.is_global:
        logits[..., :num_bev] += bias.values[:, None, :, 0:1]
        logits[..., num_bev:] += bias.values[:, None, :, 1:2]
        return
    k = bias.indices.shape[-1]
    base = (torch.arange(b * h).view(b, h, 1, 1) * n + torch.arange(n).view(1, 1, n, 1)) * f
    flat = (base + bias.indices.clamp(0, f - 1).unsqueeze(1)).reshape(-1)
    logits.view(-1).index_add_(0, flat, bias.values.unsqueeze(1).expand(b, h, n, k).reshape(-1))


def window_mass(p: torch.Tensor, window: WindowBias | None) -> torch.Tensor:
    """Mass of ``p [B, n, F]`` on each query's window cells: ``[B, n]`` (NaN without a window)."""
    if window is None:
        return torch.full(p.shape[:2], float("nan"))
    if window.is_global:
        return p.sum(-1)
    got = p.gather(2, window.indices.clamp(0, p.shape[-1] - 1))
    return torch.where(window.valid, got, 0.0).sum(-1)
