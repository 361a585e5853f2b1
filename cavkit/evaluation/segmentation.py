"""Sound-prompted segmentation: score audio-to-patch similarity maps against binary object masks.

Protocol (docs/evaluation.md, "Sound-prompted segmentation"):

1. For each (image, mask, audio) triple the model embeds image and audio unmasked; the map is the
   cosine of the audio embedding (Sync global token, or the mean of the audio patch tokens) with
   each visual patch token, optionally after subtracting the mean normalised audio embedding of the
   whole set (``centre="audio"``, as ``cavkit localize``), upsampled bilinearly to the mask
   (:func:`cavkit.pictures.localize.clip_maps`).
2. **mAP**: per image, the average precision of the pixel scores against the mask
   (:func:`cavkit.evaluation.classification.average_precision`, scikit-learn's definition, tied
   scores one threshold), averaged over images.
3. **mIoU at the best global threshold**: each map is min-max scaled to [0, 1]; for every threshold
   ``t`` of :data:`THRESHOLDS` (0, 0.01, ..., 1) the prediction is ``map >= t`` and IoU is taken per
   image; the reported mIoU is the largest mean IoU over ``t``, chosen on the evaluated set itself,
   reported with that ``t``.
4. Images whose mask is empty have no AP and are left out of both means (counted).

The centre prior (a Gaussian bump in the middle, :func:`cavkit.pictures.localization.centre_prior`)
is scored by the same protocol. Scores are accumulated image by image, so nothing of size
``images x pixels`` is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import attrs
import torch

from cavkit.errors import UsageError
from cavkit.evaluation.classification import average_precision
from cavkit.pictures.heatmap import normalize_maps

#: thresholds on min-max scaled maps for the mIoU search: 0, 0.01, ..., 1.
THRESHOLDS = torch.linspace(0.0, 1.0, 101, dtype=torch.float64)


def pixel_average_precision(score_map: torch.Tensor, mask: torch.Tensor) -> float:
    """AP of pixel scores ``[H,W]`` against a bool mask ``[H,W]`` (NaN when the mask is empty)."""
    if score_map.shape != mask.shape:
        raise UsageError(f"map {tuple(score_map.shape)} and mask {tuple(mask.shape)} differ in shape")
    return float(average_precision(score_map.reshape(-1, 1), mask.reshape(-1, 1).double())[0])


def iou_per_threshold(
    score_map: torch.Tensor, mask: torch.Tensor, thresholds: torch.Tensor = THRESHOLDS
) -> torch.Tensor:
    """IoU ``[T]`` of ``minmax(map) >= t`` with ``mask`` for each threshold ``t`` (1 where both are empty).

    Counts come from one pass: each pixel's bucket among the sorted thresholds gives how many
    thresholds it passes, so ``T`` need not be materialised per pixel.
    """
    if score_map.shape != mask.shape:
        raise UsageError(f"map {tuple(score_map.shape)} and mask {tuple(mask.shape)} differ in shape")
    scaled = normalize_maps(score_map[None].double())[0].reshape(-1)
    gt = mask.reshape(-1).bool()
    # passed[i] = number of thresholds <= scaled[i]; the pixel is predicted at threshold j iff j < passed[i]
    passed = torch.bucketize(scaled, thresholds, right=True)
    n = len(thresholds)

    def at_least(selected: torch.Tensor) -> torch.Tensor:
        counts = torch.bincount(passed[selected], minlength=n + 1).double()
        return counts.flip(0).cumsum(0).flip(0)[1:]  # [T]: pixels predicted at each threshold

    predicted, true_positive = at_least(torch.ones_like(gt)), at_least(gt)
    union = gt.sum().double() + predicted - true_positive
    return torch.where(union > 0, true_positive / union.clamp_min(1), torch.ones_like(union))


@attrs.frozen
class SegmentationScores:
    """mAP and mIoU at the best global threshold over ``images`` images with an object."""

    mean_ap: float
    miou: float
    threshold: float
    images: int
    images_without_object: int

    def as_dict(self) -> dict[str, float | int]:
        return {
            "mAP": self.mean_ap,
            "mIoU": self.miou,
            "threshold": self.threshold,
            "images": self.images,
            "images_without_object": self.images_without_object,
        }


class SegmentationTally:
    """Accumulates per-image AP and IoU curves; :meth:`scores` gives the protocol's numbers."""

    def __init__(self, thresholds: torch.Tensor = THRESHOLDS):
        self.thresholds = thresholds
        self.aps: list[float] = []
        self.ious: list[torch.Tensor] = []
        self.empty = 0

    def add(self, score_map: torch.Tensor, mask: torch.Tensor) -> None:
        """Score one map ``[H,W]`` against its bool mask ``[H,W]``."""
        if not bool(mask.any()):
            self.empty += 1
            return
        self.aps.append(pixel_average_precision(score_map, mask))
        self.ious.append(iou_per_threshold(score_map, mask, self.thresholds))

    def scores(self) -> SegmentationScores:
        if not self.aps:
            raise UsageError(f"no image with a non-empty mask to score ({self.empty} empty masks)")
        curve = torch.stack(self.ious).mean(dim=0)
        best = int(torch.argmax(curve))
        return SegmentationScores(
            mean_ap=float(torch.tensor(self.aps, dtype=torch.float64).mean()),
            miou=float(curve[best]),
            threshold=float(self.thresholds[best]),
            images=len(self.aps),
            images_without_object=self.empty,
        )


def score_segmentation(maps: Sequence[torch.Tensor], masks: Sequence[torch.Tensor]) -> SegmentationScores:
    """The protocol's scores of maps against masks (pairs of ``[H,W]``; sizes may differ between pairs)."""
    tally = SegmentationTally()
    for score_map, mask in zip(maps, masks, strict=True):
        tally.add(score_map, mask)
    return tally.scores()


# -- the runner ---------------------------------------------------------------------------------------
Centre = Literal["audio", "none"]


def _items(dataset: Any, count: int, num_workers: int):
    """The first ``count`` items, unbatched, decoded by ``num_workers`` DataLoader workers (0: here)."""
    from torch.utils.data import DataLoader, Subset

    return DataLoader(Subset(dataset, range(count)), batch_size=None, shuffle=False, num_workers=num_workers)


def audio_centre(model: Any, dataset: Any, *, embedding: str, device: Any, count: int) -> torch.Tensor:
    """Mean normalised audio embedding ``[D]`` of the first ``count`` items (the offset of ``centre="audio"``).

    Uses ``dataset.audio_only(index)`` when the dataset has it (no image or mask decoding).
    """
    from cavkit.pictures.localize import mean_normalised, pick_audio

    audio_only = getattr(dataset, "audio_only", None)
    vectors = []
    with torch.no_grad():
        for index in range(count):
            audio = audio_only(index) if callable(audio_only) else dataset[index]["audio"]
            audio = torch.as_tensor(audio)[None].to(device)
            vector, _ = pick_audio(model.embed(audio, None), embedding)
            vectors.append(vector.float().cpu())
    return mean_normalised(torch.cat(vectors))


def evaluate_segmentation(
    model: Any,
    dataset: Any,
    *,
    centre: Centre = "audio",
    embedding: str = "auto",
    device: Any = "cpu",
    limit: int | None = None,
    num_workers: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Score ``model``'s maps on a segmentation ``dataset`` next to the centre prior (module docstring).

    :returns: ``{"images", "centre", "embedding", "model": scores, "centre_prior": scores}`` (scores as
        :meth:`SegmentationScores.as_dict`).
    """
    from cavkit.pictures.inpaint import IMAGE_MEAN, IMAGE_STD
    from cavkit.pictures.localization import centre_prior
    from cavkit.pictures.localize import clip_maps, embed_clip

    count = len(dataset) if limit is None else min(limit, len(dataset))
    if centre == "audio" and count < 2:
        raise UsageError(
            "--centre audio subtracts the mean audio embedding of the set: give 2 or more images, or use --centre none"
        )
    offset = (
        audio_centre(model, dataset, embedding=embedding, device=device, count=count) if centre == "audio" else None
    )
    ours, prior = SegmentationTally(), SegmentationTally()
    chosen = embedding
    for index, item in enumerate(_items(dataset, count, num_workers)):
        mask = torch.as_tensor(item["object_mask"]).bool()
        clip = embed_clip(model, item, embedding=embedding, device=device, image_mean=IMAGE_MEAN, image_std=IMAGE_STD)
        chosen = clip.embedding
        ours.add(clip_maps(clip, offset, size=tuple(mask.shape))[0], mask)
        prior.add(centre_prior(1, *mask.shape)[0], mask)
        if progress is not None:
            progress(index + 1, count)
    return {
        "images": count,
        "centre": centre,
        "embedding": chosen,
        "model": ours.scores().as_dict(),
        "centre_prior": prior.scores().as_dict(),
    }


def format_segmentation(summary: dict[str, Any]) -> list[str]:
    """Lines of the printed table: model and centre prior, mAP, mIoU and the threshold."""
    kind = "audio-centred" if summary["centre"] == "audio" else "plain cosine"
    model = summary["model"]
    lines = [
        f"sound-prompted segmentation: {model['images']} images with an object"
        + (f" ({model['images_without_object']} without, not scored)" if model["images_without_object"] else "")
        + f"; {kind} maps, {summary['embedding']} audio embedding",
        f"{'':>14}   mAP    mIoU  (best threshold)",
    ]
    for name, key in (("model", "model"), ("centre prior", "centre_prior")):
        s = summary[key]
        lines.append(f"{name:>14}  {s['mAP']:.3f}  {s['mIoU']:.3f}  ({s['threshold']:.2f})")
    return lines
