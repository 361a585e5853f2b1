"""The pre-norm ViT block of CAV-MAE with per-modality layer norms (spec §1.1).

Sub-module names (``norm1``, ``norm1_a``, ``norm1_v``, ``attn.qkv``, ``attn.proj``, ``norm2``,
``norm2_a``, ``norm2_v``, ``mlp.fc1``, ``mlp.fc2``) equal the upstream ones, so a block's 20
state-dict keys load without renaming.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from timm.layers import Mlp
from torch import nn

from cavkit.errors import UsageError

AttnImpl = Literal["sdpa", "eager"]


class Attention(nn.Module):
    """Multi-head self-attention, ``[B, N, D] -> [B, N, D]``; qkv laid out as [q | k | v].

    :param attn_impl: ``sdpa`` uses :func:`torch.nn.functional.scaled_dot_product_attention`
        (flash / memory-efficient kernels where available); ``eager`` is the plain
        softmax(q kᵀ · scale) v used upstream, kept as a baseline for benchmarks.
    """

    def __init__(self, dim: int, num_heads: int, *, qkv_bias: bool = True, attn_impl: AttnImpl = "sdpa"):
        super().__init__()
        if dim % num_heads:
            raise UsageError(
                f"attention width {dim} is not divisible by {num_heads} heads; choose num_heads dividing the width "
                "(e.g. model.encoder.num_heads / model.decoder.num_heads)"
            )
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.attn_impl = attn_impl
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if self.attn_impl == "sdpa":
            x = F.scaled_dot_product_attention(q, k, v)
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)
            x = attn.softmax(dim=-1) @ v
        return self.proj(x.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-norm transformer block; ``forward(x [B,N,D], modality)`` picks the layer norms.

    ``modality=None`` uses ``norm1``/``norm2``; ``'a'`` uses ``norm1_a``/``norm2_a``; ``'v'`` uses
    ``norm1_v``/``norm2_v``. Attention and MLP weights are shared whichever norms are chosen; this is
    how the joint layer runs three passes with one set of weights (spec §2.1 step 4). LayerNorm eps
    is PyTorch's 1e-5 as upstream (spec §10.3); GELU is exact (erf).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, *, attn_impl: AttnImpl = "sdpa"):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.norm1_a = nn.LayerNorm(dim)
        self.norm1_v = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, attn_impl=attn_impl)
        self.norm2 = nn.LayerNorm(dim)
        self.norm2_a = nn.LayerNorm(dim)
        self.norm2_v = nn.LayerNorm(dim)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU)

    def forward(self, x: torch.Tensor, modality: str | None = None) -> torch.Tensor:
        if modality is None:
            n1, n2 = self.norm1, self.norm2
        elif modality == "a":
            n1, n2 = self.norm1_a, self.norm2_a
        elif modality == "v":
            n1, n2 = self.norm1_v, self.norm2_v
        else:
            raise ValueError(f"modality must be None, 'a' or 'v', got {modality!r}")
        x = x + self.attn(n1(x))
        return x + self.mlp(n2(x))


def set_attn_impl(module: nn.Module, attn_impl: AttnImpl) -> None:
    """Switch every :class:`Attention` inside ``module`` to ``sdpa`` or ``eager``."""
    for sub in module.modules():
        if isinstance(sub, Attention):
            sub.attn_impl = attn_impl


def init_linear_and_norm(module: nn.Module) -> None:
    """Upstream ``_init_weights`` (spec §1.4): Xavier-uniform Linear weights, zero biases; LayerNorm 1/0."""
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            nn.init.xavier_uniform_(sub.weight)
            if sub.bias is not None:
                nn.init.zeros_(sub.bias)
        elif isinstance(sub, nn.LayerNorm):
            nn.init.ones_(sub.weight)
            nn.init.zeros_(sub.bias)
