"""Frame aggregators: a clip's per-frame features ``[B,K,W]`` to one clip feature ``[B,W]``.

The ``aggregator`` component kind. A factory is called as ``factory(config, *, dim)`` with the
frame-feature width ``W``; the module maps ``[B,K,W] -> [B,out_dim]`` and exposes ``out_dim`` so
the classifier can size its head. Clips must not influence each other (no batch statistics).

* ``mean``: the average over frames;
* ``attention``: what the Sync dev fine-tuning code's ``self_attention_cls`` intends (spec §5.5):
  a learned query token prepended to the K frame features, ``depth`` pre-norm transformer blocks,
  a LayerNorm, and the query's output. Here the width is the frame-feature width throughout, so
  the shapes agree for any K and any modality (the dev sketch's other heads do not, §10.28).
  No frame-position embedding is added (the dev code adds none); LayerNorm eps is 1e-5 as in the
  rest of the model (spec §10.3).
"""

from __future__ import annotations

import torch
from timm.models.vision_transformer import Block
from torch import nn

from cavkit.errors import UsageError
from cavkit.nn.blocks import init_linear_and_norm


class MeanAggregator(nn.Module):
    """``[B,K,W] -> [B,W]``: mean over the frame axis."""

    def __init__(self, dim: int):
        super().__init__()
        self.out_dim = dim

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return frames.mean(dim=1)


class AttentionAggregator(nn.Module):
    """``[B,K,W] -> [B,W]``: a learned query token attends over the frames (spec §5.5).

    :param dim: frame-feature width W (768, or 1536 for concatenated audio+visual at ViT-B size).
    :param depth: transformer blocks (dev: 2).
    :param num_heads: attention heads (dev: 12).
    """

    def __init__(self, dim: int, *, depth: int = 2, num_heads: int = 12, mlp_ratio: float = 4.0):
        super().__init__()
        if dim % num_heads:
            raise UsageError(
                f"the attention aggregator's width {dim} is not divisible by {num_heads} heads; "
                "set model.aggregator.num_heads to a divisor of the frame-feature width"
            )
        self.out_dim = dim
        self.query = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = nn.ModuleList(
            Block(dim, num_heads, mlp_ratio, qkv_bias=True, norm_layer=nn.LayerNorm) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        init_linear_and_norm(self)  # upstream _init_weights covers these layers too (spec §1.4)
        nn.init.normal_(self.query, std=0.02)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.query.expand(frames.shape[0], -1, -1), frames], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x[:, 0])


def build_mean(config, *, dim: int = 768) -> MeanAggregator:
    """Factory of the ``mean`` aggregator (context: the frame-feature width ``dim``)."""
    return MeanAggregator(dim)


def build_attention(config, *, dim: int = 768) -> AttentionAggregator:
    """Factory of the ``attention`` aggregator (context: the frame-feature width ``dim``)."""
    return AttentionAggregator(dim, depth=config.depth, num_heads=config.num_heads, mlp_ratio=config.mlp_ratio)
