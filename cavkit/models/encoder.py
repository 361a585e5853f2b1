"""The CAV-MAE / CAV-MAE Sync encoder (spec §2.1, §5.1, §5.2).

Inputs are patch tokens already embedded (and, in pretraining, masked). Data flow:

1. optional global token prepended (Sync ``cls_token_a``/``cls_token_v``) and register tokens
   appended (``register_tokens`` rows 0..R-1 audio, R..2R-1 visual); neither gets position or
   modality embeddings nor masking;
2. ``blocks_a`` / ``blocks_v`` with the plain norms, then the registers are dropped;
3. the shared joint blocks ``blocks_u`` run as three passes with one set of weights:
   the joint pass over [audio patches; visual patches] (global tokens excluded) then ``norm``,
   feeding the decoder; and the per-modality passes (``'a'``/``'v'`` norms, global token included),
   then optional contrastive heads, then ``norm_a``/``norm_v``, feeding the contrastive losses.

With more than one joint block each pass chains block to block; upstream fed the original tokens
into every block of the per-modality passes (spec §10.1). Both agree at ``joint_depth=1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cavkit.nn.blocks import AttnImpl, Block, init_linear_and_norm


@dataclass
class EncoderOutput:
    """:ivar joint: ``[B, na+nv, D]`` after ``norm`` (``None`` if not asked for);
    :ivar audio / visual: patch latents ``[B, na, D]`` / ``[B, nv, D]`` after ``norm_a`` / ``norm_v``;
    :ivar audio_global / visual_global: ``[B, D]`` after the same norms, or ``None``."""

    joint: torch.Tensor | None
    audio: torch.Tensor | None
    visual: torch.Tensor | None
    audio_global: torch.Tensor | None = None
    visual_global: torch.Tensor | None = None


class CAVEncoder(nn.Module):
    """Modality-specific stacks plus the shared joint layer; see the module docstring.

    :param embed_dim: width D.
    :param depth: modality-specific blocks per modality.
    :param joint_depth: shared blocks.
    :param global_tokens: learn one global token per modality (Sync).
    :param num_register_tokens: register tokens per modality (Sync).
    :param contrastive_head_depth: plain blocks per modality after the per-modality passes (Sync option).
    """

    def __init__(
        self,
        *,
        embed_dim: int = 768,
        depth: int = 11,
        joint_depth: int = 1,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        global_tokens: bool = False,
        num_register_tokens: int = 0,
        contrastive_head_depth: int = 0,
        attn_impl: AttnImpl = "sdpa",
    ):
        super().__init__()
        self.embed_dim = embed_dim
        self.num_register_tokens = num_register_tokens

        def blocks(n: int) -> nn.ModuleList:
            return nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, attn_impl=attn_impl) for _ in range(n))

        self.blocks_a = blocks(depth)
        self.blocks_v = blocks(depth)
        self.blocks_u = blocks(joint_depth)
        self.norm_a = nn.LayerNorm(embed_dim)
        self.norm_v = nn.LayerNorm(embed_dim)
        self.norm = nn.LayerNorm(embed_dim)
        self.register_tokens = (
            nn.Parameter(torch.zeros(2 * num_register_tokens, embed_dim)) if num_register_tokens else None
        )
        self.cls_token_a = nn.Parameter(torch.zeros(1, 1, embed_dim)) if global_tokens else None
        self.cls_token_v = nn.Parameter(torch.zeros(1, 1, embed_dim)) if global_tokens else None
        self.contrastive_head_audio = blocks(contrastive_head_depth) if contrastive_head_depth else None
        self.contrastive_head_visual = blocks(contrastive_head_depth) if contrastive_head_depth else None
        self.reset_parameters()

    @property
    def has_global_tokens(self) -> bool:
        return self.cls_token_a is not None

    def reset_parameters(self) -> None:
        """Upstream init (spec §1.4): Xavier Linear, unit LayerNorm, N(0,.02) global tokens, N(0,1) registers."""
        init_linear_and_norm(self)
        if self.cls_token_a is not None:
            nn.init.normal_(self.cls_token_a, std=0.02)
            nn.init.normal_(self.cls_token_v, std=0.02)
        if self.register_tokens is not None:
            nn.init.normal_(self.register_tokens, std=1.0)

    # -- modality-specific stacks -------------------------------------------------------------
    def _stack(self, x: torch.Tensor, blocks: nn.ModuleList, cls: torch.Tensor | None, registers: torch.Tensor | None):
        b = x.shape[0]
        parts = [x]
        if cls is not None:
            parts.insert(0, cls.expand(b, -1, -1))
        if registers is not None:
            parts.append(registers.unsqueeze(0).expand(b, -1, -1))
        x = torch.cat(parts, dim=1) if len(parts) > 1 else x
        for blk in blocks:
            x = blk(x)
        if registers is not None:
            x = x[:, : x.shape[1] - registers.shape[0]]
        return x

    def _registers(self, modality: str) -> torch.Tensor | None:
        if self.register_tokens is None:
            return None
        r = self.num_register_tokens
        return self.register_tokens[:r] if modality == "a" else self.register_tokens[r:]

    def stack_audio(self, a: torch.Tensor) -> torch.Tensor:
        """``[B, na, D] -> [B, g+na, D]`` through ``blocks_a`` (g = 1 with a global token at index 0)."""
        return self._stack(a, self.blocks_a, self.cls_token_a, self._registers("a"))

    def stack_visual(self, v: torch.Tensor) -> torch.Tensor:
        """``[B, nv, D] -> [B, g+nv, D]`` through ``blocks_v``."""
        return self._stack(v, self.blocks_v, self.cls_token_v, self._registers("v"))

    def strip_global(self, x: torch.Tensor) -> torch.Tensor:
        """Patch tokens only (drops the global token at index 0 if this encoder has one)."""
        return x[:, 1:] if self.has_global_tokens else x

    # -- the shared joint layer -----------------------------------------------------------------
    def joint(self, x: torch.Tensor) -> torch.Tensor:
        """Joint pass: ``blocks_u`` with the plain norms, then ``norm``."""
        for blk in self.blocks_u:
            x = blk(x)
        return self.norm(x)

    def modality_pass(self, x: torch.Tensor, modality: str) -> torch.Tensor:
        """Per-modality pass: ``blocks_u`` with the ``'a'``/``'v'`` norms, contrastive heads, ``norm_a``/``norm_v``."""
        for blk in self.blocks_u:
            x = blk(x, modality)
        heads = self.contrastive_head_audio if modality == "a" else self.contrastive_head_visual
        if heads is not None:
            for blk in heads:
                x = blk(x)
        return (self.norm_a if modality == "a" else self.norm_v)(x)

    def forward(self, audio: torch.Tensor | None, visual: torch.Tensor | None, *, joint: bool = True) -> EncoderOutput:
        """Encode patch tokens ``[B, na, D]`` and ``[B, nv, D]`` (either may be ``None``; the joint
        pass needs both and is skipped with ``joint=False``)."""
        a = self.stack_audio(audio) if audio is not None else None
        v = self.stack_visual(visual) if visual is not None else None
        x = None
        if joint and a is not None and v is not None:
            x = self.joint(torch.cat([self.strip_global(a), self.strip_global(v)], dim=1))
        out = EncoderOutput(joint=x, audio=None, visual=None)
        if a is not None:
            ca = self.modality_pass(a, "a")
            out.audio = self.strip_global(ca)
            out.audio_global = ca[:, 0] if self.has_global_tokens else None
        if v is not None:
            cv = self.modality_pass(v, "v")
            out.visual = self.strip_global(cv)
            out.visual_global = cv[:, 0] if self.has_global_tokens else None
        return out


def build_encoder(config, *, embed_dim: int = 768, **_: object) -> CAVEncoder:
    return CAVEncoder(
        embed_dim=embed_dim,
        depth=config.depth,
        joint_depth=config.joint_depth,
        num_heads=config.num_heads,
        mlp_ratio=config.mlp_ratio,
        global_tokens=config.global_tokens,
        num_register_tokens=config.num_register_tokens,
        contrastive_head_depth=config.contrastive_head_depth,
        attn_impl=config.attn_impl,
    )
