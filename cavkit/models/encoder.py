"""The CAV-MAE / CAV-MAE Sync encoder (spec §2.1, §5.1, §5.2).

Inputs are patch tokens already embedded (and, in pretraining, masked). Data flow:

1. optional global token prepended (Sync ``cls_token_a``/``cls_token_v``) and register tokens
   appended (``register_tokens`` rows 0..R-1 audio, R..2R-1 visual); neither gets position or
   modality embeddings nor masking;
2. ``blocks_a`` / ``blocks_v`` with the plain norms, then the registers are dropped (unless
   ``keep_register_tokens``, below);
3. the shared joint blocks ``blocks_u`` run as three passes with one set of weights:
   the joint pass over [audio patches; visual patches] (global tokens excluded) then ``norm``,
   feeding the decoder; and the per-modality passes (``'a'``/``'v'`` norms, global token included),
   then optional contrastive heads, then ``norm_a``/``norm_v``, feeding the contrastive losses.

With more than one joint block each pass chains block to block; upstream fed the original tokens
into every block of the per-modality passes (spec §10.1). Both agree at ``joint_depth=1``.

``keep_register_tokens`` (published Sync option, off in the release): the registers stay for the
joint layer. The joint stream is ``[audio patches, audio registers, visual patches, visual
registers]`` and each per-modality pass sees ``[global, patches, registers]``; every output then
loses its registers again, so the registers only act through attention. Upstream removes them from
the joint stream with the *unmasked* audio token count ``La`` as offset (``x[:, :La] ++ x[:, La+R:-R]``),
which under masking hands the decoder the audio register outputs as the first R visual tokens and
drops R visible visual tokens; and its ``forward_feat`` never removes them. We fix both by default
(``register_slicing: exact``: offset = the visible audio count, embeddings without registers) and
reproduce them with ``register_slicing: published`` (for parity with the published code). Same
policy as the other training-only bugs of spec §10 (fix, keep an opt-in compatibility flag).
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from torch import nn

from cavkit.errors import UsageError
from cavkit.interfaces import EncoderOutput
from cavkit.models.configs import RegisterSlicing
from cavkit.nn.blocks import AttnImpl, Block, init_linear_and_norm

__all__ = ["CAVEncoder", "EncoderOutput", "build_encoder"]


class CAVEncoder(nn.Module):
    """Modality-specific stacks plus the shared joint layer; see the module docstring. Implements
    :class:`cavkit.interfaces.Encoder`.

    :param embed_dim: width D.
    :param depth: modality-specific blocks per modality.
    :param joint_depth: shared blocks.
    :param global_tokens: learn one global token per modality (Sync).
    :param num_register_tokens: register tokens per modality (Sync).
    :param contrastive_head_depth: plain blocks per modality after the per-modality passes (Sync option).
    :param keep_register_tokens: keep the registers through the joint layer (see the module docstring).
    :param register_slicing: ``exact`` or ``published`` removal of kept registers (module docstring).
    """

    #: unmasked audio token count ``La``: the offset of ``register_slicing="published"``; the MAE
    #: model sets it from its audio tokenizer (:class:`cavkit.models.cav_mae.CAVMAE`).
    audio_patch_count: int | None = None

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
        keep_register_tokens: bool = False,
        register_slicing: RegisterSlicing = "exact",
        attn_impl: AttnImpl = "sdpa",
    ):
        super().__init__()
        if register_slicing not in ("exact", "published"):
            raise UsageError(f"register_slicing must be 'exact' or 'published', got {register_slicing!r}")
        self.embed_dim = embed_dim
        self.num_register_tokens = num_register_tokens
        self.keep_register_tokens = keep_register_tokens and num_register_tokens > 0
        self.register_slicing = register_slicing

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
    def _stack(
        self,
        x: torch.Tensor,
        blocks: nn.ModuleList,
        cls: torch.Tensor | None,
        registers: torch.Tensor | None,
        keep_registers: bool = False,
    ):
        b = x.shape[0]
        parts = [x]
        if cls is not None:
            parts.insert(0, cls.expand(b, -1, -1))
        if registers is not None:
            parts.append(registers.unsqueeze(0).expand(b, -1, -1))
        x = torch.cat(parts, dim=1) if len(parts) > 1 else x
        for blk in blocks:
            x = blk(x)
        if registers is not None and not keep_registers:
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
        pass needs both and is skipped with ``joint=False``, the embedding path, upstream ``forward_feat``)."""
        if self.keep_register_tokens:
            return self._forward_keeping_registers(audio, visual, joint=joint)
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

    def _forward_keeping_registers(
        self, audio: torch.Tensor | None, visual: torch.Tensor | None, *, joint: bool
    ) -> EncoderOutput:
        """``keep_register_tokens``: the registers (R per modality) reach the joint layer (module docstring)."""
        r = self.num_register_tokens
        published = self.register_slicing == "published"
        a = v = None
        if audio is not None:
            a = self._stack(audio, self.blocks_a, self.cls_token_a, self._registers("a"), keep_registers=True)
        if visual is not None:
            v = self._stack(visual, self.blocks_v, self.cls_token_v, self._registers("v"), keep_registers=True)
        x = None
        if joint and a is not None and v is not None:
            x = self.joint(torch.cat([self.strip_global(a), self.strip_global(v)], dim=1))
            offset = audio.shape[1]
            if published:
                if self.audio_patch_count is None:
                    raise UsageError(
                        "register_slicing 'published' needs the unmasked audio token count (encoder.audio_patch_count); "
                        "the MAE model sets it from its audio tokenizer"
                    )
                offset = self.audio_patch_count
            x = torch.cat([x[:, :offset], x[:, offset + r : x.shape[1] - r]], dim=1)
        # upstream forward_feat (our joint=False embedding path) keeps the registers in its outputs
        drop = 0 if published and not joint else r
        out = EncoderOutput(joint=x, audio=None, visual=None)
        if a is not None:
            ca = self.modality_pass(a, "a")
            out.audio = self.strip_global(ca[:, : ca.shape[1] - drop])
            out.audio_global = ca[:, 0] if self.has_global_tokens else None
        if v is not None:
            cv = self.modality_pass(v, "v")
            out.visual = self.strip_global(cv[:, : cv.shape[1] - drop])
            out.visual_global = cv[:, 0] if self.has_global_tokens else None
        return out


def encoder_params(config) -> dict[str, Any]:
    """The fields of an encoder config (:class:`~cavkit.models.configs.EncoderConfig`, its Sync variant
    or the audio-only one), which are :class:`CAVEncoder`'s keyword arguments of the same names."""
    return attrs.asdict(config, recurse=False)


def build_encoder(config, *, embed_dim: int = 768) -> CAVEncoder:
    """Factory for ``cav_mae_encoder`` and ``sync_encoder``; ``embed_dim`` comes from the model."""
    return CAVEncoder(embed_dim=embed_dim, **encoder_params(config))
