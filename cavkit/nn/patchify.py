"""Patchify / unpatchify for MAE targets (spec §1.5).

Audio fbanks ``[B, T, F]`` are first viewed as one-channel pictures ``[B, 1, F, T]`` (height =
frequency, width = time) by :func:`fbank_to_picture`; images are ``[B, 3, H, W]``. Patches follow
the row-major token order of the patch embedding; inside a patch values are ordered (row p,
column q, channel c), channel fastest (MAE convention).
"""

from __future__ import annotations

import torch


def fbank_to_picture(fbank: torch.Tensor) -> torch.Tensor:
    """``[B, T, F] -> [B, 1, F, T]``."""
    return fbank.unsqueeze(1).transpose(2, 3)


def patchify(pictures: torch.Tensor, patch: int) -> torch.Tensor:
    """``[B, C, H, W] -> [B, (H/p)·(W/p), p·p·C]``."""
    b, c, height, width = pictures.shape
    h, w = height // patch, width // patch
    x = pictures.reshape(b, c, h, patch, w, patch)
    x = torch.einsum("nchpwq->nhwpqc", x)
    return x.reshape(b, h * w, patch * patch * c)


def unpatchify(patches: torch.Tensor, patch: int, grid: tuple[int, int], channels: int) -> torch.Tensor:
    """Inverse of :func:`patchify`: ``[B, h·w, p·p·C] -> [B, C, h·p, w·p]`` for ``grid = (h, w)``."""
    h, w = grid
    b = patches.shape[0]
    x = patches.reshape(b, h, w, patch, patch, channels)
    x = torch.einsum("nhwpqc->nchpwq", x)
    return x.reshape(b, channels, h * patch, w * patch)
