"""Sound-prompted localization maps: where in the frame the model "hears" the sound.

For one frame, the audio embedding ``a [D]`` (Sync global token, or the mean of the audio patch
tokens) is compared with every visual patch token ``v_k [D]`` by cosine similarity; the
``gh × gw`` map is upsampled bilinearly to the frame and drawn as a heatmap over it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def similarity_maps(audio: torch.Tensor, visual_patches: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Cosine similarity between each audio vector and each visual patch token.

    :param audio: ``[B,D]``; :param visual_patches: ``[B,Lv,D]`` with ``Lv = gh·gw`` (row-major).
    :returns: ``[B,gh,gw]`` in [-1, 1].
    """
    a = F.normalize(audio.float(), dim=-1)
    v = F.normalize(visual_patches.float(), dim=-1)
    sim = torch.einsum("bd,bld->bl", a, v)
    return sim.reshape(sim.shape[0], *grid)


def upsample_maps(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``[B,gh,gw] -> [B,H,W]`` by bilinear interpolation (align_corners=False)."""
    return F.interpolate(maps[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]


def normalize_maps(maps: torch.Tensor) -> torch.Tensor:
    """Min-max scale each map of ``[B,H,W]`` to [0, 1] (a constant map becomes all zeros)."""
    flat = maps.reshape(maps.shape[0], -1)
    low = flat.min(dim=1, keepdim=True).values
    span = flat.max(dim=1, keepdim=True).values - low
    scaled = (flat - low) / span.clamp_min(1e-12)
    return scaled.reshape(maps.shape)


def overlay(frame: np.ndarray, heat: np.ndarray, *, alpha: float = 0.5, cmap: str = "jet") -> Image.Image:
    """Blend a heatmap over a frame.

    :param frame: ``[H,W,3]`` uint8 RGB; :param heat: ``[H,W]`` float in [0, 1] (already upsampled).
    :param alpha: heatmap opacity; :param cmap: a matplotlib colormap name.
    """
    import matplotlib

    colours = matplotlib.colormaps[cmap](np.clip(heat, 0.0, 1.0))[..., :3]
    blended = (1.0 - alpha) * frame.astype(np.float32) / 255.0 + alpha * colours
    return Image.fromarray(np.round(blended * 255.0).clip(0, 255).astype(np.uint8), mode="RGB")


def frame_to_uint8(image: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """A normalised frame ``[3,H,W]`` -> ``[H,W,3]`` uint8 RGB."""
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    rgb = (image.detach().float().cpu() * s + m).clamp(0, 1).permute(1, 2, 0).numpy()
    return np.round(rgb * 255.0).astype(np.uint8)


def png_bytes(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def animation_bytes(pictures: Sequence[Image.Image], fmt: str, *, frame_ms: int = 250) -> bytes:
    """An endlessly looping animation over ``pictures``: ``fmt`` is ``gif`` or ``apng``."""
    if not pictures:
        raise ValueError("an animation needs at least one picture")
    buffer = io.BytesIO()
    first, rest = pictures[0], list(pictures[1:])
    if fmt == "gif":
        first.save(buffer, format="GIF", save_all=True, append_images=rest, duration=frame_ms, loop=0, optimize=False)
    elif fmt == "apng":
        first.save(buffer, format="PNG", save_all=True, append_images=rest, duration=frame_ms, loop=0)
    else:
        raise ValueError(f"unknown animation format {fmt!r}; use 'gif' or 'apng'")
    return buffer.getvalue()
