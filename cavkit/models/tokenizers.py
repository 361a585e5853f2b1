"""Patch tokenizers: audio fbank and image to tokens with fixed sin-cos positions (spec §1.2, §1.3).

Each tokenizer owns its patch convolution (``proj``), its position embedding ``pos_embed``
``[1, L, D]`` and its modality embedding ``modality`` ``[1, 1, D]``; ``forward`` returns
``proj(x) + pos_embed + modality`` as upstream. ``grid`` is the token grid (rows, cols) in
row-major token order, and ``patchify``/``unpatchify`` produce and invert the MAE targets
(:class:`cavkit.interfaces.Tokenizer`).
"""

from __future__ import annotations

import torch
from torch import nn

from cavkit.errors import UsageError
from cavkit.nn.patchify import fbank_to_picture, patchify, unpatchify
from cavkit.nn.pos_embed import sincos_pos_embed_2d


class _PatchTokenizer(nn.Module):
    def __init__(self, in_chans: int, embed_dim: int, patch_size: int, grid: tuple[int, int], trainable_pos: bool):
        super().__init__()
        self.patch_size = patch_size
        self.in_chans = in_chans
        self.grid = grid
        self.num_patches = grid[0] * grid[1]
        self.embed_dim = embed_dim
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches, embed_dim), requires_grad=trainable_pos)
        self.modality = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.reset_parameters()

    @property
    def patch_dim(self) -> int:
        """Values per patch in the MAE target (p·p·C)."""
        return self.patch_size * self.patch_size * self.in_chans

    def reset_parameters(self) -> None:
        """Upstream init (spec §1.4): Xavier on the conv viewed 2-D (default conv bias), N(0, .02) modality."""
        pos = torch.from_numpy(sincos_pos_embed_2d(self.embed_dim, *self.grid)).unsqueeze(0)
        with torch.no_grad():
            self.pos_embed.copy_(pos)
        w = self.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.modality, std=0.02)

    def _embed(self, pictures: torch.Tensor) -> torch.Tensor:
        x = self.proj(pictures).flatten(2).transpose(1, 2)
        return x + self.pos_embed + self.modality


class AudioPatchTokenizer(_PatchTokenizer):
    """Fbank ``[B, T, F]`` to tokens ``[B, (F/p)·(T/p), D]``, frequency-major (token k ↔ f = k // (T/p)).

    :param audio_length: T, fixed at construction because the position embedding is sized for it
        (spec §10.36: other lengths are rejected with a :class:`~cavkit.errors.UsageError`).
    """

    def __init__(
        self,
        *,
        embed_dim: int = 768,
        audio_length: int = 1024,
        num_mel_bins: int = 128,
        patch_size: int = 16,
        trainable_pos: bool = False,
    ):
        for name, value in (("audio_length", audio_length), ("num_mel_bins", num_mel_bins)):
            if value % patch_size:
                raise UsageError(f"audio tokenizer: {name}={value} must be a multiple of the patch size {patch_size}")
        self.audio_length = audio_length
        self.num_mel_bins = num_mel_bins
        super().__init__(
            1, embed_dim, patch_size, (num_mel_bins // patch_size, audio_length // patch_size), trainable_pos
        )

    def check(self, fbank: torch.Tensor) -> None:
        if fbank.dim() != 3 or fbank.shape[1:] != (self.audio_length, self.num_mel_bins):
            raise UsageError(
                f"audio input has shape {list(fbank.shape)}, expected [B, {self.audio_length}, {self.num_mel_bins}] "
                f"(fbank frames x mel bins; this model was built for audio_length={self.audio_length})"
            )

    def forward(self, fbank: torch.Tensor) -> torch.Tensor:
        self.check(fbank)
        return self._embed(fbank_to_picture(fbank))

    def patchify(self, fbank: torch.Tensor) -> torch.Tensor:
        """MAE target ``[B, L, p·p]`` in token order."""
        return patchify(fbank_to_picture(fbank), self.patch_size)

    def unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        """``[B, L, p·p] -> [B, 1, F, T]`` (frequency rows, time columns)."""
        return unpatchify(patches, self.patch_size, self.grid, 1)


class ImagePatchTokenizer(_PatchTokenizer):
    """Image ``[B, C, H, W]`` to tokens ``[B, (H/p)·(W/p), D]``, row-major."""

    def __init__(
        self,
        *,
        embed_dim: int = 768,
        image_size: int = 224,
        in_chans: int = 3,
        patch_size: int = 16,
        trainable_pos: bool = False,
    ):
        if image_size % patch_size:
            raise UsageError(
                f"image tokenizer: image_size={image_size} must be a multiple of the patch size {patch_size}"
            )
        self.image_size = image_size
        side = image_size // patch_size
        super().__init__(in_chans, embed_dim, patch_size, (side, side), trainable_pos)

    def check(self, image: torch.Tensor) -> None:
        expected = (self.in_chans, self.image_size, self.image_size)
        if image.dim() != 4 or tuple(image.shape[1:]) != expected:
            raise UsageError(
                f"image input has shape {list(image.shape)}, expected [B, {', '.join(map(str, expected))}] "
                f"(this model was built for image_size={self.image_size})"
            )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        self.check(image)
        return self._embed(image)

    def patchify(self, image: torch.Tensor) -> torch.Tensor:
        """MAE target ``[B, L, p·p·C]``, channel fastest."""
        return patchify(image, self.patch_size)

    def unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        return unpatchify(patches, self.patch_size, self.grid, self.in_chans)


def build_audio_patch(
    config, *, embed_dim: int = 768, audio_length: int = 1024, trainable_pos: bool = False
) -> AudioPatchTokenizer:
    """Factory for ``audio_patch`` (the audio slot's context: width, fbank frames, trainable positions)."""
    return AudioPatchTokenizer(
        embed_dim=embed_dim,
        audio_length=audio_length,
        num_mel_bins=config.num_mel_bins,
        patch_size=config.patch_size,
        trainable_pos=trainable_pos,
    )


def build_image_patch(
    config, *, embed_dim: int = 768, image_size: int = 224, trainable_pos: bool = False
) -> ImagePatchTokenizer:
    """Factory for ``image_patch`` (the visual slot's context: width, image side, trainable positions)."""
    return ImagePatchTokenizer(
        embed_dim=embed_dim,
        image_size=image_size,
        in_chans=config.in_chans,
        patch_size=config.patch_size,
        trainable_pos=trainable_pos,
    )
