"""The MAE decoder of CAV-MAE and Sync (spec §2.3).

``decoder(joint [B, ka+kv, D], ids_restore_a [B, La], ids_restore_v [B, Lv], num_audio_kept)``
returns ``(pred_a [B, La, pa], pred_v [B, Lv, pv])``: the visible latents are projected to the
decoder width, completed with the shared ``mask_token``, un-shuffled, given decoder position and
modality embeddings, run jointly through the blocks and projected per modality.
"""

from __future__ import annotations

import torch
from torch import nn

from cavkit.nn.blocks import AttnImpl, Block, init_linear_and_norm
from cavkit.nn.pos_embed import sincos_pos_embed_2d


class MAEDecoder(nn.Module):
    """Implements :class:`cavkit.interfaces.Decoder`; see the module docstring."""

    def __init__(
        self,
        *,
        encoder_dim: int = 768,
        embed_dim: int = 512,
        depth: int = 8,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        audio_grid: tuple[int, int] = (8, 64),
        visual_grid: tuple[int, int] = (14, 14),
        audio_patch_dim: int = 256,
        visual_patch_dim: int = 768,
        attn_impl: AttnImpl = "sdpa",
    ):
        super().__init__()
        self.audio_grid = tuple(audio_grid)
        self.visual_grid = tuple(visual_grid)
        self.num_audio = audio_grid[0] * audio_grid[1]
        self.num_visual = visual_grid[0] * visual_grid[1]
        self.embed_dim = embed_dim
        self.embed = nn.Linear(encoder_dim, embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.modality_a = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.modality_v = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed_a = nn.Parameter(torch.zeros(1, self.num_audio, embed_dim), requires_grad=False)
        self.pos_embed_v = nn.Parameter(torch.zeros(1, self.num_visual, embed_dim), requires_grad=False)
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, attn_impl=attn_impl) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim)
        self.pred_a = nn.Linear(embed_dim, audio_patch_dim)
        self.pred_v = nn.Linear(embed_dim, visual_patch_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.pos_embed_a.copy_(torch.from_numpy(sincos_pos_embed_2d(self.embed_dim, *self.audio_grid)).unsqueeze(0))
            self.pos_embed_v.copy_(
                torch.from_numpy(sincos_pos_embed_2d(self.embed_dim, *self.visual_grid)).unsqueeze(0)
            )
        init_linear_and_norm(self)
        for p in (self.mask_token, self.modality_a, self.modality_v):
            nn.init.normal_(p, std=0.02)

    def _unshuffle(self, visible: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        b, k, d = visible.shape
        masked = self.mask_token.expand(b, ids_restore.shape[1] - k, -1)
        x = torch.cat([visible, masked], dim=1)
        return torch.gather(x, 1, ids_restore.unsqueeze(-1).expand(-1, -1, d))

    def forward(
        self, joint: torch.Tensor, ids_restore_a: torch.Tensor, ids_restore_v: torch.Tensor, num_audio_kept: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.embed(joint)
        a = self._unshuffle(y[:, :num_audio_kept], ids_restore_a)
        v = self._unshuffle(y[:, num_audio_kept:], ids_restore_v)
        x = torch.cat([a, v], dim=1) + torch.cat([self.pos_embed_a, self.pos_embed_v], dim=1)
        modality = torch.cat(
            [self.modality_a.expand(-1, self.num_audio, -1), self.modality_v.expand(-1, self.num_visual, -1)], dim=1
        )
        x = x + modality
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)
        return self.pred_a(x[:, : self.num_audio]), self.pred_v(x[:, self.num_audio :])


def build_decoder(
    config,
    *,
    encoder_dim: int = 768,
    audio_grid=(8, 64),
    visual_grid=(14, 14),
    audio_patch_dim: int = 256,
    visual_patch_dim: int = 768,
) -> MAEDecoder:
    """Factory for ``mae_decoder``; the keyword arguments come from the model (its tokenizers' grids
    and patch sizes, the encoder width)."""
    return MAEDecoder(
        encoder_dim=encoder_dim,
        embed_dim=config.embed_dim,
        depth=config.depth,
        num_heads=config.num_heads,
        mlp_ratio=config.mlp_ratio,
        audio_grid=audio_grid,
        visual_grid=visual_grid,
        audio_patch_dim=audio_patch_dim,
        visual_patch_dim=visual_patch_dim,
        attn_impl=config.attn_impl,
    )
