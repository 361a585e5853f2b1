"""Scoring localization maps against ground-truth object masks: pointing game and IoU.

Maps are ``[N,H,W]`` (any real values; higher = more likely the sounding object), masks are
``[N,H,W]`` booleans (True on the sounding object). The centre prior, a Gaussian bump in the
middle of the frame, is the baseline a model has to beat: objects in photos sit near the centre.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cavkit.pictures.heatmap import normalize_maps


def pointing_hits(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Pointing game per map: 1 when the maximum of the map lies on the object, else 0.

    When several pixels share the maximum (a flat map, the 4 middle pixels of a centred bump),
    the score is the fraction of those pixels that lie on the object, so ties cannot favour the
    top-left corner. :returns: ``[N]`` float in [0, 1].
    """
    flat = maps.reshape(maps.shape[0], -1).float()
    gt = masks.reshape(masks.shape[0], -1).bool()
    top = flat == flat.max(dim=1, keepdim=True).values
    return (top & gt).sum(dim=1).float() / top.sum(dim=1).float()


def threshold_iou(maps: torch.Tensor, masks: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """IoU between the map thresholded at ``threshold`` (after min-max scaling to [0, 1]) and the mask.

    :returns: ``[N]``; a frame whose prediction and mask are both empty scores 1.
    """
    pred = normalize_maps(maps.float()) >= threshold
    gt = masks.bool()
    inter = (pred & gt).reshape(pred.shape[0], -1).sum(dim=1).float()
    union = (pred | gt).reshape(pred.shape[0], -1).sum(dim=1).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def centre_prior(count: int, height: int, width: int, sigma: float = 0.25) -> torch.Tensor:
    """``[count,H,W]`` Gaussian bump centred in the frame; ``sigma`` is a fraction of each side."""
    ys = (torch.arange(height, dtype=torch.float32) + 0.5) / height - 0.5
    xs = (torch.arange(width, dtype=torch.float32) + 0.5) / width - 0.5
    bump = torch.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / (2 * sigma**2))
    return bump.expand(count, height, width).clone()


@dataclass(frozen=True)
class LocalizationScores:
    """Mean pointing-game accuracy and IoU over ``frames`` maps."""

    pointing: float
    iou: float
    frames: int

    def as_dict(self) -> dict[str, float]:
        return {"pointing_game": self.pointing, "iou": self.iou, "frames": self.frames}


def score_maps(maps: torch.Tensor, masks: torch.Tensor, threshold: float = 0.5) -> LocalizationScores:
    """Pointing-game accuracy and mean IoU of ``maps [N,H,W]`` against ``masks [N,H,W]``."""
    if maps.shape != masks.shape:
        raise ValueError(f"maps {tuple(maps.shape)} and masks {tuple(masks.shape)} differ in shape")
    return LocalizationScores(
        pointing=float(pointing_hits(maps, masks).mean()),
        iou=float(threshold_iou(maps, masks, threshold).mean()),
        frames=int(maps.shape[0]),
    )
