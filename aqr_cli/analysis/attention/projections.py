"""The cross-attention projections: :class:`CrossAttentionWeights` (the packed in-projection of
the first decoder cross-attention, or an identity fallback) and :func:`align_width`, which brings
memory of another width to the embedding width.

:class:`CrossAttentionWeights` holds ``transformer.decoder.layers.0.attentions.1.attn.in_proj_*``
when a checkpoint has it, else an identity fallback (q = query input, k = memory + key position
embedding), with the head count stated (8, as the decoder). The value projection and
``out_proj`` do not change attention maps and are not used for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch

from aqr_cli.core.errors import AQRInputError

DECODER_CROSS_ATTN = "transformer.decoder.layers.0.attentions.1.attn."


DEFAULT_NUM_HEADS = 8


WIDTH_MODES = ("zero_pad", "orthogonal", "skip")


@dataclass
class CrossAttentionWeights:
    """Packed in-projection of one cross-attention: ``in_proj_weight [3C, C]``, ``in_proj_bias [3C]``.

    Rows 0..C-1 project queries, C..2C-1 keys, 2C..3C-1 values (``nn.MultiheadAttention``
    layout). ``source`` is ``'checkpoint'`` or ``'fallback'``; ``key`` the state-dict prefix
    used; ``note`` one sentence for the output.
    """

    in_proj_weight: torch.Tensor
    in_proj_bias: torch.Tensor
    num_heads: int = DEFAULT_NUM_HEADS
    source: str = "fallback"
    key: str | None = None
    note: str = ""
    is_identity: bool = False

    def __post_init__(self):
        w, b = self.in_proj_weight, self.in_proj_bias
        if not isinstance(w, torch.Tensor) or w.dim() != 2 or w.shape[0] != 3 * w.shape[1]:
            got = list(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__
            raise AQRInputError(f"in_proj_weight: expected shape [3C, C], got {got}")
        c = w.shape[1]
        if not isinstance(b, torch.Tensor) or tuple(b.shape) != (3 * c,):
            got = list(b.shape) if isinstance(b, torch.Tensor) else type(b).__name__
            raise AQRInputError(f"in_proj_bias: expected shape [{3 * c}], got {got}")
        if not isinstance(self.num_heads, int) or self.num_heads < 1 or c % self.num_heads:
            raise AQRInputError(f"num_heads: expected a positive divisor of the embedding width "
                                f"{c}, got {self.num_heads!r}")
        self.in_proj_weight = w.detach().float()
        self.in_proj_bias = b.detach().float()

    @property
    def embed_dims(self) -> int:
        return int(self.in_proj_weight.shape[1])

    @property
    def head_dim(self) -> int:
        return self.embed_dims // self.num_heads

    @classmethod
    def identity(cls, embed_dims: int = 256, num_heads: int = DEFAULT_NUM_HEADS) -> "CrossAttentionWeights":
        """The documented fallback: q = query input, k = key input, v = value input, no bias."""
        eye = torch.eye(embed_dims)
        return cls(torch.cat([eye, eye, eye]), torch.zeros(3 * embed_dims), num_heads,
                   source="fallback", is_identity=True,
                   note=(f"no decoder cross-attention weights in the source: identity projections "
                         f"(q = query position embedding, k = memory + key position embedding), "
                         f"{num_heads} heads of width {embed_dims // num_heads}"))

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, torch.Tensor], num_heads: int = DEFAULT_NUM_HEADS,
                        prefix: str | None = None) -> "CrossAttentionWeights":
        """The first decoder cross-attention of a head state_dict (any key prefix).

        Looks for ``...transformer.decoder.layers.0.attentions.1.attn.in_proj_weight`` and
        ``...in_proj_bias`` (``prefix`` overrides the search). Raises :class:`AQRInputError`
        when they are absent or malformed. The head count is not stored in checkpoints: 8 for
        both reference configs.
        """
        if prefix is None:
            hits = sorted(k[: -len("in_proj_weight")] for k in state_dict
                          if k.endswith(DECODER_CROSS_ATTN + "in_proj_weight"))
            if not hits:
                raise AQRInputError(f"state_dict: no '*{DECODER_CROSS_ATTN}in_proj_weight' key "
                                    f"(first decoder cross-attention)")
            prefix = hits[0]
        try:
            w, b = state_dict[prefix + "in_proj_weight"], state_dict[prefix + "in_proj_bias"]
        except KeyError as exc:
            raise AQRInputError(f"state_dict: missing {exc.args[0]!r}") from None
        out = cls(w, b, num_heads, source="checkpoint", key=prefix)
        out.note = (f"first decoder cross-attention from the checkpoint ({prefix}in_proj_*), "
                    f"{num_heads} heads of width {out.head_dim}; decoder target taken as zero "
                    f"(q = W_q query_pos + b_q)")
        return out

    @classmethod
    def resolve(cls, state_dict: Mapping[str, torch.Tensor] | None, embed_dims: int = 256,
                num_heads: int = DEFAULT_NUM_HEADS) -> "CrossAttentionWeights":
        """Checkpoint weights when ``state_dict`` has them (and they fit ``embed_dims``), else identity."""
        if state_dict is not None:
            try:
                found = cls.from_state_dict(state_dict, num_heads)
            except AQRInputError:
                found = None
            if found is not None and found.embed_dims == embed_dims:
                return found
            if found is not None:
                out = cls.identity(embed_dims, num_heads)
                out.note += (f" (the checkpoint's cross-attention has width {found.embed_dims}, "
                             f"the embeddings {embed_dims})")
                return out
        return cls.identity(embed_dims, num_heads)

    def _project(self, x: torch.Tensor, part: int) -> torch.Tensor:
        if self.is_identity:
            return x.float()
        c = self.embed_dims
        w = self.in_proj_weight[part * c:(part + 1) * c]
        return torch.addmm(self.in_proj_bias[part * c:(part + 1) * c], x.reshape(-1, c).float(),
                           w.t()).view(*x.shape[:-1], c)

    def project_query(self, x: torch.Tensor) -> torch.Tensor:
        """``W_q x + b_q`` for ``x [..., C]``."""
        return self._project(x, 0)

    def project_key(self, x: torch.Tensor) -> torch.Tensor:
        """``W_k x + b_k`` for ``x [..., C]``."""
        return self._project(x, 1)

    def project_value(self, x: torch.Tensor) -> torch.Tensor:
        """``W_v x + b_v`` for ``x [..., C]`` (not needed for attention maps)."""
        return self._project(x, 2)

    def describe(self) -> dict:
        return dict(source=self.source, key=self.key, num_heads=self.num_heads,
                    head_dim=self.head_dim, embed_dims=self.embed_dims, note=self.note)


def align_width(memory: torch.Tensor, width: int, mode: str = "zero_pad",
                seed: int = 0) -> tuple[torch.Tensor | None, dict]:
    """Memory ``[B, F, c]`` brought to the embedding width ``C``: ``(tensor or None, info)``.

    Modes (used only when c != C; otherwise the memory is returned unchanged):

    - ``zero_pad``: channels 0..c-1 kept, the rest zero (c < C), or the first C kept (c > C).
      For the fixture dumps, which keep the first 16 of 256 channels, this is exactly the
      memory with the dropped channels set to zero.
    - ``orthogonal``: ``memory @ P`` with a fixed seeded matrix ``P [c, C]`` with orthonormal
      rows (c <= C, norms and inner products preserved) or orthonormal columns (c > C).
    - ``skip``: no tensor; ``info['status'] == 'skipped'``.

    ``info``: mode, from, to, status (``'unchanged'``, ``'projected'``, ``'skipped'``), note.
    """
    if mode not in WIDTH_MODES:
        raise AQRInputError(f"width_mode: expected one of {list(WIDTH_MODES)}, got {mode!r}")
    c = int(memory.shape[-1])
    info = dict(mode=mode, **{"from": c, "to": int(width)})
    if c == width:
        return memory, dict(info, status="unchanged", note="feature width equals embedding width")
    if mode == "skip":
        return None, dict(info, status="skipped",
                          note=f"feature width {c} != embedding width {width}; attention skipped")
    if mode == "zero_pad":
        if c < width:
            out = torch.nn.functional.pad(memory.float(), (0, width - c))
            note = f"features zero-padded from {c} to {width} channels"
        else:
            out = memory[..., :width].float()
            note = f"first {width} of {c} feature channels kept"
        return out, dict(info, status="projected", note=note)
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(max(c, width), min(c, width), generator=gen, dtype=torch.float64)
    qmat, r = torch.linalg.qr(a)
    qmat = qmat * torch.sign(torch.diagonal(r)).unsqueeze(0)
    proj = (qmat.t() if c < width else qmat).float()                     # [c, C]
    note = f"features projected {c} -> {width} channels by a seeded orthogonal matrix (seed {seed})"
    return memory.float() @ proj, dict(info, status="projected", note=note, seed=seed)
