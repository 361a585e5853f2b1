"""Sound-prompted localization of one clip: per-frame maps from a model, pictures, and scores.

A clip item holds one frame (``audio [T,128]``, ``image [3,H,W]``) or K frames with their audio
(``audio [K,L,128]``, ``image [K,3,H,W]``: Sync retrieval mode). Each frame is embedded unmasked
(:meth:`model.embed`), and the frame's audio embedding is compared with every visual patch token
(:func:`cavkit.pictures.heatmap.similarity_maps`), by default after subtracting the mean audio
embedding of the clips drawn (:func:`mean_audio` says why).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

from cavkit.errors import UsageError
from cavkit.pictures.heatmap import frame_to_uint8, normalize_maps, overlay, similarity_maps, upsample_maps
from cavkit.pictures.patches import image_grid

AudioEmbedding = Literal["auto", "global", "pooled"]


@dataclass
class ClipEmbedding:
    """One clip's frames, embedded.

    :ivar audio: ``[K,D]`` audio embedding per frame (global token or pooled patches).
    :ivar visual_patches: ``[K,Lv,D]`` visual patch tokens; :ivar grid: their (rows, columns).
    :ivar frames: K uint8 RGB frames ``[H,W,3]``; :ivar frame_index: their numbers within the clip.
    :ivar object_mask: ``[K,H,W]`` bool ground truth when the dataset has it, else ``None``.
    :ivar embedding: which audio embedding was used (``global`` or ``pooled``).
    """

    clip_id: str
    audio: torch.Tensor
    visual_patches: torch.Tensor
    grid: tuple[int, int]
    frames: list[Any]
    frame_index: list[int]
    object_mask: torch.Tensor | None
    embedding: str

    @property
    def size(self) -> tuple[int, int]:
        return self.frames[0].shape[0], self.frames[0].shape[1]


def _frames_of(item: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, list[int], torch.Tensor | None]:
    audio, image = torch.as_tensor(item["audio"]), torch.as_tensor(item["image"])
    mask = item.get("object_mask")
    mask = torch.as_tensor(mask).bool() if mask is not None else None
    frame = item.get("frame", 0)
    if image.dim() == 3:
        return audio[None], image[None], [int(frame)], (mask[None] if mask is not None else None)
    if image.dim() == 4 and audio.dim() == 3 and audio.shape[0] == image.shape[0]:
        frames = (
            [int(f) for f in torch.as_tensor(frame).reshape(-1).tolist()]
            if frame is not None
            else list(range(image.shape[0]))
        )
        return audio, image, frames, mask
    raise UsageError(
        f"clip {item.get('clip_id')!r}: cannot pair audio {tuple(audio.shape)} with image {tuple(image.shape)}; "
        "expected [T,128] with [3,H,W], or [K,L,128] with [K,3,H,W]"
    )


def pick_audio(emb: Any, embedding: AudioEmbedding) -> tuple[torch.Tensor, str]:
    """The audio vector ``[K,D]`` to prompt with: the Sync global token, or the mean of the patch tokens."""
    if embedding == "auto":
        embedding = "global" if emb.audio_global is not None else "pooled"
    vector = emb.audio_global if embedding == "global" else emb.audio_pooled
    if vector is None:
        raise UsageError(f"this model gives no {embedding} audio embedding; use --embedding pooled")
    return vector, embedding


@torch.no_grad()
def embed_clip(
    model: Any,
    item: dict[str, Any],
    *,
    embedding: AudioEmbedding = "auto",
    device: Any = "cpu",
    image_mean: tuple[float, ...],
    image_std: tuple[float, ...],
) -> ClipEmbedding:
    """Embed every frame of ``item`` (unmasked) with its own audio."""
    audio, image, frames, mask = _frames_of(item)
    emb = model.embed(audio.to(device), image.to(device))
    if emb.visual_patches is None:
        raise UsageError("this model gives no visual patch tokens; localization needs them")
    vector, chosen = pick_audio(emb, embedding)
    h, w = image.shape[-2:]
    return ClipEmbedding(
        clip_id=str(item.get("clip_id", "")),
        audio=vector.float().cpu(),
        visual_patches=emb.visual_patches.float().cpu(),
        grid=image_grid(emb.visual_patches.shape[1], h, w),
        frames=[frame_to_uint8(image[k], image_mean, image_std) for k in range(image.shape[0])],
        frame_index=frames,
        object_mask=mask,
        embedding=chosen,
    )


def mean_audio(clips: list[ClipEmbedding]) -> torch.Tensor:
    """The mean L2-normalised audio embedding ``[D]`` over every frame of ``clips``.

    Why subtract it: the published visual→audio InfoNCE scores each visual against all audios with
    a softmax over the audios, which is unchanged when every (normalised) audio embedding moves by
    one shared vector. That shared part is never trained to mean anything, yet it dominates the plain
    cosine map; removing it leaves the part of the audio embedding that tells clips apart.
    """
    return mean_normalised(torch.cat([c.audio for c in clips]))


def mean_normalised(audio: torch.Tensor) -> torch.Tensor:
    """The mean ``[D]`` of L2-normalised audio embeddings ``[N,D]`` (:func:`mean_audio` for bare vectors)."""
    return F.normalize(audio, dim=-1).mean(dim=0)


def clip_maps(
    clip: ClipEmbedding, audio_offset: torch.Tensor | None = None, size: tuple[int, int] | None = None
) -> torch.Tensor:
    """``[K,H,W]`` maps: cosine of each visual patch token with the normalised audio embedding minus
    ``audio_offset`` (see :func:`mean_audio`; ``None``: the plain cosine similarity), upsampled bilinearly
    to ``size`` (default: the frame size)."""
    audio = F.normalize(clip.audio, dim=-1)
    if audio_offset is not None:
        audio = audio - audio_offset
    return upsample_maps(similarity_maps(audio, clip.visual_patches, clip.grid), size or clip.size)


def clip_pictures(
    clip: ClipEmbedding, maps: torch.Tensor, *, alpha: float = 0.5, cmap: str = "jet", scale: int = 1
) -> list[Any]:
    """One PIL overlay per frame (each map min-max scaled on its own), enlarged ``scale`` times (nearest)."""
    from PIL import Image

    heat = normalize_maps(maps).numpy()
    out = []
    for k, frame in enumerate(clip.frames):
        picture = overlay(frame, heat[k], alpha=alpha, cmap=cmap)
        if scale != 1:
            picture = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)
        out.append(picture)
    return out


def scored_frames(clip: ClipEmbedding) -> torch.Tensor:
    """Indices of the frames that can be scored: the sounding object is in view (non-empty mask)."""
    if clip.object_mask is None:
        return torch.zeros(0, dtype=torch.long)
    return torch.nonzero(clip.object_mask.flatten(1).any(dim=1)).flatten()
