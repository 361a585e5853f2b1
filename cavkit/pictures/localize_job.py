"""Sound-prompted localization over several clips: draw the maps and score them against ground truth.

:func:`localize_clips` is what ``cavkit localize`` runs: every clip is embedded
(:func:`cavkit.pictures.localize.embed_clip`), mapped twice (plain cosine and after subtracting the
mean audio embedding of the drawn clips), drawn (PNG per frame, animation per clip) and, where the
dataset has ``object_mask`` ground truth, scored with the pointing game and IoU next to a
centre-prior baseline (:mod:`cavkit.pictures.localization`).
"""

from __future__ import annotations

from typing import Any, Callable, Literal

import attrs
import torch

from cavkit.errors import UsageError
from cavkit.io import join, write_bytes_atomic
from cavkit.pictures.heatmap import animation_bytes, png_bytes
from cavkit.pictures.inpaint import IMAGE_MEAN, IMAGE_STD
from cavkit.pictures.localization import centre_prior, score_maps
from cavkit.pictures.localize import clip_maps, clip_pictures, embed_clip, mean_audio, scored_frames
from cavkit.pictures.sources import safe_file_stem


@attrs.frozen(kw_only=True)
class LocalizeOptions:
    """What ``cavkit localize`` draws and how it scores.

    :ivar embedding: audio embedding to prompt with (``auto``: Sync global token when present, else pooled).
    :ivar animation: ``gif``, ``apng`` or ``none``; :ivar frame_ms: animation frame duration.
    :ivar alpha: heatmap opacity; :ivar cmap: matplotlib colour map; :ivar scale: picture enlargement.
    :ivar threshold: IoU threshold on the per-frame min-max scaled map.
    :ivar score_only: write ``scores.json`` only, no pictures.
    :ivar centre: ``audio`` draws the audio-centred map (needs 2+ clips), ``none`` the plain one.
    """

    embedding: Literal["auto", "global", "pooled"] = "auto"
    animation: Literal["gif", "apng", "none"] = "gif"
    frame_ms: int = 250
    alpha: float = 0.5
    cmap: str = "jet"
    scale: int = 1
    threshold: float = 0.5
    score_only: bool = False
    centre: Literal["audio", "none"] = "audio"


def localize_clips(
    model: Any,
    items: list[dict[str, Any]],
    options: LocalizeOptions,
    *,
    out_dir: str,
    device: torch.device,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Draw and score the maps of ``items`` (dataset items in retrieval mode); write pictures under ``out_dir``.

    :returns: the summary written to ``scores.json`` by the caller: embedding, clip count, threshold,
        the drawn variant and, with ground truth only, ``plain``/``audio_centred``/``centre_prior`` scores.
    :raises UsageError: ``centre="audio"`` with fewer than two clips.
    """
    if options.centre == "audio" and len(items) < 2:
        raise UsageError(
            "--centre audio subtracts the mean audio embedding of the drawn clips: "
            "draw 2 or more clips, or use --centre none"
        )
    clips = [
        embed_clip(model, item, embedding=options.embedding, device=device, image_mean=IMAGE_MEAN, image_std=IMAGE_STD)
        for item in items
    ]
    variants = {"plain": None, "audio_centred": mean_audio(clips)}
    drawn = "audio_centred" if options.centre == "audio" else "plain"
    scored: dict[str, list[torch.Tensor]] = {name: [] for name in variants}
    masks = []
    for clip in clips:
        maps = {name: clip_maps(clip, offset) for name, offset in variants.items()}
        keep = scored_frames(clip)
        if len(keep):
            masks.append(clip.object_mask[keep])
            for name in variants:
                scored[name].append(maps[name][keep])
        if not options.score_only:
            _write_clip_pictures(clip, maps[drawn], options, out_dir, echo)
    summary: dict[str, Any] = {
        "embedding": clips[0].embedding,
        "clips": len(clips),
        "threshold": options.threshold,
        "drawn": drawn,
    }
    if not masks:  # no ground truth (object_mask) in this dataset: pictures only
        return summary
    threshold = options.threshold
    gt = torch.cat(masks)
    prior = score_maps(centre_prior(gt.shape[0], *gt.shape[-2:]), gt, threshold)
    summary["centre_prior"] = prior.as_dict()
    for name in variants:
        result = score_maps(torch.cat(scored[name]), gt, threshold)
        summary[name] = result.as_dict()
        echo(
            f"{name:>13}: pointing game {result.pointing:.3f}, IoU@{threshold:g} {result.iou:.3f} "
            f"over {result.frames} frames with the object in view"
        )
    echo(f" centre prior: pointing game {prior.pointing:.3f}, IoU@{threshold:g} {prior.iou:.3f}")
    return summary


def _write_clip_pictures(clip: Any, maps: torch.Tensor, options: LocalizeOptions, out_dir: str, echo) -> None:
    stem = safe_file_stem(clip.clip_id or "clip")
    pictures = clip_pictures(clip, maps, alpha=options.alpha, cmap=options.cmap, scale=options.scale)
    for frame, picture in zip(clip.frame_index, pictures):
        write_bytes_atomic(join(out_dir, stem, f"frame_{frame:02d}.png"), png_bytes(picture))
    if options.animation != "none":
        suffix = "gif" if options.animation == "gif" else "png"
        write_bytes_atomic(
            join(out_dir, f"{stem}.{suffix}"),
            animation_bytes(pictures, options.animation, frame_ms=options.frame_ms),
        )
    echo(f"wrote {len(pictures)} frame(s) of {clip.clip_id} to {join(out_dir, stem)}")
