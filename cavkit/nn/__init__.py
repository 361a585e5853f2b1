"""Shared neural-network layers: transformer blocks, sin-cos position embeddings, patchify."""

from cavkit.nn.blocks import Attention, Block
from cavkit.nn.patchify import patchify, unpatchify
from cavkit.nn.pos_embed import sincos_pos_embed_2d

__all__ = ["Attention", "Block", "patchify", "sincos_pos_embed_2d", "unpatchify"]
