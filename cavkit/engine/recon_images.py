"""Reconstruction pictures for TensorBoard (``trainer.image_every``): the first clip's predicted patches.

The model's ``reconstruct(output) -> (audio [B, C, H, W], image [B, C, H, W])`` (CAV-MAE's
unpatchified predictions, spec §3) is drawn min-max scaled; a one-channel spectrogram is flipped so
that low frequencies sit at the bottom.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def to_picture(x: torch.Tensor) -> torch.Tensor:
    """The first item of ``x [B, C, H, W]`` as an ``[H, W, C]`` picture scaled to ``[0, 1]``."""
    x = x[0].float()
    x = (x - x.min()) / (x.max() - x.min() + 1e-8)
    return x.permute(1, 2, 0).flip(0) if x.shape[0] == 1 else x.permute(1, 2, 0)


def log_reconstructions(model: nn.Module, output: Any, logger: Any, step: int) -> None:
    """Log ``recon/audio`` and ``recon/image`` when the model can turn ``output`` into pictures."""
    reconstruct = getattr(model, "reconstruct", None)
    if output is None or output.pred_audio is None or reconstruct is None:
        return
    try:
        audio, image = reconstruct(output)
    except Exception:  # noqa: BLE001 -- a model whose predictions are not pictures
        return
    logger.image(step, "recon/audio", to_picture(audio).cpu().numpy())
    logger.image(step, "recon/image", to_picture(image).cpu().numpy())
