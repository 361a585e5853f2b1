"""Patchify and unpatchify images and fbanks, and spread token masks over pixels (spec §1.5, §1.2).

Thin shape-checking wrappers over :mod:`cavkit.nn.patchify` (the models' own patchify) plus the
mask expansion the pictures need.

Images ``[B,3,H,W]`` become ``[B,(H/p)(W/p),p·p·3]`` with tokens row-major and the in-patch order
(row p, column q, channel c), channel fastest (MAE convention, like ``decoder_pred_v``). Fbanks
``[B,T,F]`` are viewed as ``[B,1,F,T]`` (height = frequency, width = time) and become
``[B,(F/p)(T/p),p·p]``: tokens frequency-major, in-patch order (frequency row, time column).
"""

from __future__ import annotations

import math

import torch

from cavkit.nn.patchify import fbank_to_picture, patchify, unpatchify


def patchify_image(images: torch.Tensor, patch: int) -> torch.Tensor:
    """``[B,C,H,W] -> [B,(H/patch)(W/patch),patch·patch·C]``."""
    return patchify(images, patch)


def unpatchify_image(tokens: torch.Tensor, grid: tuple[int, int], channels: int = 3) -> torch.Tensor:
    """Inverse of :func:`patchify_image`: ``[B,gh·gw,p·p·C] -> [B,C,gh·p,gw·p]``."""
    _, n, d = tokens.shape
    patch = math.isqrt(d // channels)
    if grid[0] * grid[1] != n or patch * patch * channels != d:
        raise ValueError(
            f"cannot unpatchify {tuple(tokens.shape)} onto a {grid[0]}x{grid[1]} grid with {channels} channels"
        )
    return unpatchify(tokens, patch, grid, channels)


def patchify_fbank(fbank: torch.Tensor, patch: int = 16) -> torch.Tensor:
    """``[B,T,F] -> [B,(F/patch)(T/patch),patch·patch]``, frequency-major tokens (spec §1.5)."""
    return patchify(fbank_to_picture(fbank), patch)


def unpatchify_fbank(tokens: torch.Tensor, frames: int, mel_bins: int = 128) -> torch.Tensor:
    """Inverse of :func:`patchify_fbank`: ``[B,La,p·p] -> [B,T,F]`` with ``T = frames``."""
    _, n, d = tokens.shape
    patch = math.isqrt(d)
    grid = (mel_bins // patch, frames // patch)
    if grid[0] * grid[1] != n or patch * patch != d:
        raise ValueError(f"cannot unpatchify {tuple(tokens.shape)} into a [{frames},{mel_bins}] fbank")
    return unpatchify(tokens, patch, grid, 1)[:, 0].transpose(1, 2)


def image_grid(num_tokens: int, height: int, width: int) -> tuple[int, int]:
    """The (rows, columns) patch grid of an ``height × width`` image cut into ``num_tokens`` square patches."""
    patch = math.isqrt(height * width // num_tokens)
    if patch == 0 or (height // patch) * (width // patch) != num_tokens:
        raise ValueError(f"{num_tokens} tokens do not tile a {height}x{width} image with square patches")
    return height // patch, width // patch


def image_mask_to_pixels(mask: torch.Tensor, grid: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """Token mask ``[B,L]`` (1 = removed) -> pixel mask ``[B,1,H,W]`` by nearest repetition."""
    b = mask.shape[0]
    gh, gw = grid
    h, w = size
    m = mask.reshape(b, 1, gh, gw).to(torch.float32)
    return m.repeat_interleave(h // gh, dim=2).repeat_interleave(w // gw, dim=3)


def fbank_mask_to_bins(mask: torch.Tensor, frames: int, mel_bins: int = 128) -> torch.Tensor:
    """Audio token mask ``[B,La]`` (frequency-major) -> per-bin mask ``[B,T,F]``."""
    b, n = mask.shape
    patch = math.isqrt(frames * mel_bins // n)
    gf, gt = mel_bins // patch, frames // patch
    m = mask.reshape(b, gf, gt).to(torch.float32)
    m = m.repeat_interleave(patch, dim=1).repeat_interleave(patch, dim=2)  # [B,F,T]
    return m.transpose(1, 2)
